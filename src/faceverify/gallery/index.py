"""The embedded gallery's vector index: exact search for small galleries, HNSW above.

Below :data:`HNSW_MIN_FACES` faces a matrix product over every face is both exact and
fast (a few milliseconds at 50,000 × 320). Above it, faiss's HNSW graph answers in well
under a millisecond at a small recall cost, measured by ``benchmarks/gallery_search.py``.
The index is a cache: SQLite stays the source of truth and the index is rebuilt from it
whenever it is missing or stale. Removed faces are tombstoned at once (never returned
again) and dropped for good at the next rebuild.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: Galleries with at least this many faces use HNSW; smaller ones search exactly.
HNSW_MIN_FACES = 50_000
#: HNSW graph degree and build/search breadth: recall@1 above 0.99 on 320-dim faces.
#: The search breadth serves pgvector's HNSW index too (``hnsw.ef_search``).
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 100, 128
#: Rebuild once this share of the indexed faces has been removed.
REBUILD_TOMBSTONE_SHARE = 0.2


class FaceIndex:
    """Face vectors with their face ids and owners (person ids), searchable by cosine.

    Args:
        dim: embedding dimension.
        hnsw: build an HNSW graph (approximate) instead of keeping a plain matrix (exact).
    """

    def __init__(self, dim: int, *, hnsw: bool) -> None:
        self.dim = dim
        self.hnsw = hnsw
        self.ids = np.empty(0, dtype=np.int64)
        self.owners = np.empty(0, dtype=np.int64)
        self.alive = np.empty(0, dtype=bool)
        self._matrix = np.empty((0, dim), dtype=np.float32)
        self._graph = _new_graph(dim) if hnsw else None
        self._groups: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def kind(self) -> str:
        return "hnsw" if self.hnsw else "exact"

    @property
    def size(self) -> int:
        return int(self.alive.sum())

    @property
    def max_id(self) -> int:
        return int(self.ids[-1]) if self.ids.size else 0

    def add(self, ids: np.ndarray, owners: np.ndarray, vectors: np.ndarray) -> None:
        """Append faces whose ids are all above :attr:`max_id` (ids stay sorted)."""
        if ids.size == 0:
            return
        self.ids = np.r_[self.ids, ids.astype(np.int64)]
        self.owners = np.r_[self.owners, owners.astype(np.int64)]
        self.alive = np.r_[self.alive, np.ones(ids.size, dtype=bool)]
        self._groups = None
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self._graph is not None:
            self._graph.add_with_ids(vectors, ids.astype(np.int64))
        else:
            self._matrix = np.concatenate([self._matrix, vectors])

    def remove(self, ids: np.ndarray) -> None:
        """Tombstone faces: searches never return them again."""
        positions = np.searchsorted(self.ids, ids)
        inside = positions < self.ids.size
        positions, ids = positions[inside], ids[inside]
        self.alive[positions[self.ids[positions] == ids]] = False
        self._groups = None

    @property
    def tombstone_share(self) -> float:
        return 0.0 if self.ids.size == 0 else 1.0 - self.size / self.ids.size

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``k`` live faces nearest to ``query``: (owners, scores), best first."""
        if self.size == 0:
            return np.empty(0, dtype=np.int64), np.empty(0)
        q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        if self._graph is None:
            owners, scores = self.all_scores(q[0])
            top = top_k(scores, k)
            return owners[top], scores[top]
        return self._search_graph(q, k)

    def best_per_owner(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact index only: each owner's best face score (owners ascending, scores).

        ``query`` is one ``[D]`` vector (scores ``[owners]``) or ``[Q, D]`` vectors (scores
        ``[Q, owners]``).
        """
        owners, scores = self.all_scores(query)
        if self._groups is None:
            # group faces by owner once per index version; reduceat then takes each maximum
            order = np.argsort(owners, kind="stable")
            ordered = owners[order]
            starts = np.r_[0, np.flatnonzero(np.diff(ordered)) + 1] if ordered.size else np.empty(0, np.int64)
            self._groups = (order, starts, ordered[starts])
        order, starts, unique = self._groups
        if unique.size == 0:
            return unique, np.empty((*scores.shape[:-1], 0), dtype=np.float32)
        return unique, np.maximum.reduceat(scores[..., order], starts, axis=-1)

    def all_scores(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact index only: every live face's owner and score, unsorted (``[Q, faces]``
        for ``[Q, D]`` queries)."""
        scores = (self._matrix @ np.asarray(query, dtype=np.float32).T).T
        if self.size == self.ids.size:
            return self.owners, scores
        return self.owners[self.alive], scores[..., self.alive]

    def _search_graph(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        assert self._graph is not None
        dead = self.ids.size - self.size
        fetch = min(self.ids.size, k + dead if dead < 4 * k else 4 * k + dead)
        import faiss

        # present at run time, missing from the stubs faiss ships
        params = faiss.SearchParametersHNSW(efSearch=max(HNSW_EF_SEARCH, fetch))  # type: ignore[attr-defined]
        scores, ids = self._graph.search(q, fetch, params=params)
        found = ids[0] >= 0
        ids, scores = ids[0][found], scores[0][found].astype(np.float64)
        positions = np.searchsorted(self.ids, ids)
        keep = self.alive[positions]
        return self.owners[positions[keep]][:k], scores[keep][:k]

    def save(self, path: Path) -> None:
        """Persist an HNSW index (exact ones rebuild from SQLite faster than they load)."""
        if self._graph is None:
            return
        import faiss

        path.parent.mkdir(parents=True, exist_ok=True)
        graph_tmp, arrays_tmp = path.with_name(f".{path.name}.tmp"), path.with_name(f".{path.stem}.tmp.npz")
        faiss.write_index(self._graph, str(graph_tmp))
        np.savez(arrays_tmp, ids=self.ids, owners=self.owners, alive=self.alive)
        arrays_tmp.replace(path.with_suffix(".npz"))
        graph_tmp.replace(path)

    @classmethod
    def load(cls, path: Path, dim: int) -> FaceIndex | None:
        """A saved HNSW index, or None when absent or unreadable (then it is rebuilt)."""
        arrays = path.with_suffix(".npz")
        if not path.is_file() or not arrays.is_file():
            return None
        import faiss

        try:
            graph = faiss.read_index(str(path))
            with np.load(arrays) as data:
                ids, owners, alive = data["ids"], data["owners"], data["alive"]
        except (RuntimeError, OSError, ValueError, KeyError):
            return None
        if graph.d != dim or graph.ntotal != ids.size:
            return None
        index = cls(dim, hnsw=True)
        index._graph, index.ids, index.owners, index.alive = graph, ids, owners, alive
        return index


def unit_centroids(owners: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each owner's mean face direction, for centroid matching: (owners ascending, unit rows)."""
    people = np.unique(owners)
    sums = np.zeros((people.size, vectors.shape[1]), dtype=np.float64)
    np.add.at(sums, np.searchsorted(people, owners), vectors)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return people, (sums / np.maximum(norms, 1e-12)).astype(np.float32)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` highest scores, best first, without sorting them all."""
    if k >= scores.size:
        return np.argsort(-scores, kind="stable")
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


def _new_graph(dim: int):  # type: ignore[no-untyped-def]  # faiss ships no type hints
    import faiss

    graph = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    graph.hnsw.efSearch = HNSW_EF_SEARCH
    return faiss.IndexIDMap2(graph)
