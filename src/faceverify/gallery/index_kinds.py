"""One class per index kind (see :mod:`faceverify.gallery.index` for when each is used).

Each adds to :class:`~faceverify.gallery.index_base.FaceIndex` only what differs: how its
vectors are kept and searched, its files and its memory. ``exact`` and ``pq`` keep every
float32 vector as a matrix by position (``pq`` re-scores its candidates on it); ``ivf``
and ``hnsw`` keep them inside one faiss index.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from faceverify.errors import GalleryError
from faceverify.gallery.codes import CodeShards, Rows, shard_count
from faceverify.gallery.index_base import FaceIndex, Progress, register_kind, top_k
from faceverify.gallery.index_sizing import (
    HNSW_EF_CONSTRUCTION,
    HNSW_EF_SEARCH,
    HNSW_M,
    IVF_TRAIN_ITERATIONS,
    IVF_TRAIN_PER_LIST,
    ivf_lists,
    ivf_probes,
    rerank_candidates,
    tombstone_fetch,
)
from faceverify.paths import open_private


class ExactIndex(FaceIndex):
    """``exact``: every face scored by one matrix product; never saved (it rebuilds from
    SQLite faster than it would load)."""

    kind = "exact"
    saves = False

    def __init__(self, dim: int, kind: str | None = None, shards: int | None = None) -> None:
        super().__init__(dim, kind, shards)
        self._rows = Rows(dim)

    def _append(self, vectors: np.ndarray, first: int, progress: Progress | None) -> None:
        self._rows.append(vectors)

    def _erase(self, positions: np.ndarray) -> None:
        self._rows.zero(positions)

    def _vectors(self) -> np.ndarray:
        return self._rows.view

    def _nearest(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores = self._rows.view @ query[0]
        if self.size == self.ids.size:
            top = top_k(scores, k)
            return top, scores[top]
        live = np.flatnonzero(self.alive)
        scores = scores[live]
        top = top_k(scores, k)
        return live[top], scores[top]

    def best_owners(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` owners with the best face for ``query``, each over all their faces."""
        people, best = self.best_per_owner(query)
        top = top_k(best, k)
        return people[top], best[top]

    def _extra_bytes_per_face(self) -> int:
        return 0


class PQIndex(FaceIndex):
    """``pq``: every face's 4-bit code scanned in shards (:class:`CodeShards`), the best
    candidates re-scored exactly on the float32 vectors kept beside them."""

    kind = "pq"
    trains = True

    def __init__(self, dim: int, kind: str | None = None, shards: int | None = None) -> None:
        super().__init__(dim, kind, shards)
        self.shards = shards
        self._rows = Rows(dim)
        self._codes: CodeShards | None = None

    @property
    def shard_count(self) -> int:
        return self._codes.shards if self._codes is not None else 0

    def _trained(self) -> CodeShards:
        if self._codes is None:
            raise GalleryError("the pq index holds no codes before its first faces train them")
        return self._codes

    def _train(self, vectors: np.ndarray) -> None:
        self._codes = CodeShards(self.dim, self.shards or shard_count(len(vectors)))
        self._codes.train(vectors)

    def _append(self, vectors: np.ndarray, first: int, progress: Progress | None) -> None:
        self._rows.append(vectors)
        self._in_chunks(vectors, first, progress, self._trained().add)

    def _erase(self, positions: np.ndarray) -> None:
        self._rows.zero(positions)
        self._trained().drop(positions, self._rows.view)

    def _vectors(self) -> np.ndarray:
        return self._rows.view

    def _nearest(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        wanted = rerank_candidates(k, self.tombstone_share, self.ids.size)
        positions = self._trained().search(query, wanted)
        positions = positions[self.alive[positions]]
        scores = (self._rows.view[positions] @ query[0]).astype(np.float64)
        best = top_k(scores, k)
        return positions[best], scores[best]

    def _extra_bytes_per_face(self) -> int:
        return self._codes.code_bytes() if self._codes is not None else 0

    def _write_files(self, stem: Path, written: list[Path]) -> None:
        written.extend(self._trained().save(stem))
        written.append(stem.with_suffix(".npy"))
        self._rows.save(written[-1])

    def _read_files(self, stem: Path, faces: int, live: int) -> bool:
        # codes: only the live faces (an index saved before removals dropped codes is
        # rebuilt, which erases what it kept)
        self._rows = Rows.load(stem.with_suffix(".npy"), self.dim)
        self._codes = CodeShards.load(stem, self.dim, self.shards or 1)
        return self._rows.count == faces and sum(self._codes.sizes()) == live

    @classmethod
    def scrub_files(cls, stem: Path, arrays: dict[str, np.ndarray], positions: np.ndarray) -> bool:
        """Zero the faces' rows of the saved vectors in place and write the code shards
        holding them again without them."""
        vectors = np.load(stem.with_suffix(".npy"), mmap_mode="r+")
        vectors[positions] = 0.0
        vectors.flush()
        codes = CodeShards.load(stem, int(arrays["dim"]), max(int(arrays["shards"]), 1))
        codes.drop(positions, vectors)
        codes.save(stem)
        del vectors
        return True


class _FaissIndex(FaceIndex):
    """A kind kept in one faiss index labelled by position, saved as ``<stem>.faiss``."""

    def __init__(self, dim: int, kind: str | None = None, shards: int | None = None) -> None:
        super().__init__(dim, kind, shards)
        self._ann: Any = None

    def _search_params(self, fetch: int) -> Any:
        """Faiss search parameters for a query fetching ``fetch`` faces."""
        raise NotImplementedError

    def _scores(self, values: np.ndarray) -> np.ndarray:
        """Cosines from the values faiss returns."""
        raise NotImplementedError

    def _held(self, faces: int, live: int) -> int:
        """Vectors the faiss index holds for ``faces`` faces, ``live`` of them not removed."""
        raise NotImplementedError

    def _nearest(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        fetch = tombstone_fetch(k, self.ids.size, self.ids.size - self.size)
        distances, labels = self._ann.search(query, fetch, params=self._search_params(fetch))
        found = labels[0] >= 0
        positions, scores = labels[0][found], self._scores(distances[0][found].astype(np.float64))
        keep = self.alive[positions]
        return positions[keep][:k], scores[keep][:k]

    def _write_files(self, stem: Path, written: list[Path]) -> None:
        import faiss

        written.append(stem.with_suffix(".faiss"))
        open_private(written[-1]).close()  # faiss keeps the mode of the file it truncates
        faiss.write_index(self._ann, str(written[-1]))

    def _read_files(self, stem: Path, faces: int, live: int) -> bool:
        import faiss

        self._ann = faiss.read_index(str(stem.with_suffix(".faiss")))
        return bool(self._ann.d == self.dim and self._ann.ntotal == self._held(faces, live))


class IVFIndex(_FaissIndex):
    """``ivf``: faiss ``IndexIVFFlat`` on unit vectors, centroids trained on a sample; a
    share of the lists (:attr:`probe_share`) is scanned per query."""

    kind = "ivf"
    trains = True

    def _train(self, vectors: np.ndarray) -> None:
        import faiss

        lists = ivf_lists(len(vectors))
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(self.dim), self.dim, lists)
        index.cp.niter = IVF_TRAIN_ITERATIONS
        index.cp.min_points_per_centroid = 1  # small galleries: fewer points per list, no warning
        index.cp.max_points_per_centroid = IVF_TRAIN_PER_LIST
        # a fixed sample: the same gallery trains the same centroids
        sample = np.random.default_rng(0).choice(
            len(vectors), min(len(vectors), IVF_TRAIN_PER_LIST * lists), replace=False
        )
        index.train(vectors[np.sort(sample)])
        self._ann = index

    def _append(self, vectors: np.ndarray, first: int, progress: Progress | None) -> None:
        # labelled explicitly: removals lower ntotal, so positions cannot be implied
        self._in_chunks(vectors, first, progress, self._ann.add_with_ids)

    def _erase(self, positions: np.ndarray) -> None:
        import faiss

        self._ann.remove_ids(faiss.IDSelectorArray(positions))

    def _search_params(self, fetch: int) -> Any:
        import faiss

        # present at run time, missing from the stubs faiss ships
        return faiss.SearchParametersIVF(nprobe=ivf_probes(self._ann.nlist, self.probe_share))  # type: ignore[call-arg]

    def _scores(self, values: np.ndarray) -> np.ndarray:
        return 1.0 - values / 2.0  # squared L2 distances between unit vectors

    def _held(self, faces: int, live: int) -> int:
        return live  # the lists drop removed faces

    def _extra_bytes_per_face(self) -> int:
        return 8  # its label in the lists


class HNSWIndex(_FaissIndex):
    """``hnsw``: a faiss HNSW graph over inner products; removed faces stay in the graph
    with their vectors zeroed (a graph cannot drop a node)."""

    kind = "hnsw"

    def __init__(self, dim: int, kind: str | None = None, shards: int | None = None) -> None:
        import faiss

        super().__init__(dim, kind, shards)
        self._ann = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        self._ann.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        self._ann.hnsw.efSearch = HNSW_EF_SEARCH

    def _append(self, vectors: np.ndarray, first: int, progress: Progress | None) -> None:
        self._in_chunks(vectors, first, progress, self._add_chunk)

    def _add_chunk(self, vectors: np.ndarray, positions: np.ndarray) -> None:
        self._ann.add(vectors)  # a graph numbers faces itself, in the order they come

    def _erase(self, positions: np.ndarray) -> None:
        import faiss

        storage = faiss.downcast_index(self._ann.storage)
        xb = storage.get_xb()  # type: ignore[attr-defined]  # IndexFlat has it; the stubs type it as Index
        rows = faiss.rev_swig_ptr(xb, storage.ntotal * storage.d).reshape(storage.ntotal, storage.d)
        rows[positions] = 0.0

    def _search_params(self, fetch: int) -> Any:
        import faiss

        # present at run time, missing from the stubs faiss ships
        return faiss.SearchParametersHNSW(efSearch=max(HNSW_EF_SEARCH, fetch))  # type: ignore[attr-defined]

    def _scores(self, values: np.ndarray) -> np.ndarray:
        return values  # inner products of unit vectors

    def _held(self, faces: int, live: int) -> int:
        return faces  # removed faces keep their (zeroed) nodes

    def _extra_bytes_per_face(self) -> int:
        return 2 * HNSW_M * 4  # its links


KIND_CLASSES: dict[str, type[FaceIndex]] = {
    kind.kind: register_kind(kind) for kind in (ExactIndex, PQIndex, IVFIndex, HNSWIndex)
}
