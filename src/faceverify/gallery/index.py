"""The embedded gallery's vector index: exact search for small galleries, compressed codes above.

Kinds (``FaceIndex.kind``), chosen by :func:`choose_kind` from the gallery's size:

* ``exact``: a matrix product over every face. Exact, nothing to build, a few
  milliseconds up to :data:`INDEX_MIN_FACES` faces.
* ``pq`` (the default from :data:`INDEX_MIN_FACES` faces on): every face as a 4-bit
  product-quantisation code, all scanned in one shard per core, the best candidates
  re-scored exactly on the float32 vectors (:mod:`faceverify.gallery.codes` says why).
  At 1M × 320 on this project's 2-core machine it built in 4 s and answered in 3.2-3.7 ms
  (p50) with the exact best face for all 300 probes measured, 35× faster than exact
  search; at 10k faces 0.2 ms against 2.1 ms. The scores are exact cosines.
  Memory per face: 4 bytes × dims of vectors, 20 bytes of code at 320 dims, 33 of ids.
* ``ivf``, only when asked for: faiss ``IndexIVFFlat`` (L2 on unit vectors, which ranks
  like cosine; L2 k-means does not care that face embeddings share one mean direction). Its
  :func:`ivf_lists` centroids are trained on a sample, so a million faces index in
  minutes (218 s at 1M × 320 on a shared, overloaded 2-core machine), not the quarter
  of an hour or more an HNSW graph takes; new faces are appended to their lists without
  retraining. :data:`IVF_PROBE_SHARE` of the lists are scanned per query: on crowded
  face-like vectors (:mod:`faceverify.gallery.synthetic`, probes that are another photo
  of an enrolled person) half the lists were needed for recall@1 ≥ 0.99 against exact
  search (0.995 at 100k, 1.000 at 1M; a quarter gave 0.955-0.97, an eighth 0.87-0.93),
  so it buys recall first and a speed-up of about 1.5-2× over exact search at best;
  a store can trade recall for speed with ``probe_share``. Vectors are kept in float32
  (4 bytes × dims per face, plus 25 bytes of ids) so the scores are exact.
* ``hnsw``: faiss HNSW graph, only when asked for: it did not earn the default (at 100k
  face-like faces it built in 626 s on the same loaded machine, 6× slower than IVF, yet
  found the exact nearest face for 78.5% of probes at ``efSearch`` 128).

``pq`` and ``ivf`` train on the gallery they are built from (codebooks, centroids); new
faces are encoded with what was trained, until the gallery outgrows it.

The index is a cache: SQLite stays the source of truth. Removed faces are tombstoned at
once (never returned again) and erased: their vectors zeroed and their codes dropped, in
memory and in the saved files (:func:`scrub_saved`); their slots go at the next rebuild.
:meth:`FaceIndex.drift` says when a rebuild pays (many tombstones, or codes trained on a far smaller gallery);
the store then rebuilds in the background while searches go on with this index.
Saved indexes are written beside the database as ``index-<token>*`` files (faiss
indexes; the ``pq`` kind's codes per shard and its vectors as ``.npy``) plus
``index.npz``, whose atomic replacement is the commit point: a kill at any moment
leaves the old index or the new one, never a mix.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from faceverify.errors import GalleryError
from faceverify.gallery.codes import CodeShards, Rows, shard_count
from faceverify.paths import file_lock, open_private

KINDS = ("exact", "pq", "ivf", "hnsw")
#: Galleries with at least this many faces get the ``pq`` index; smaller ones search exactly
#: (at 10k × 320 exact search took 2.1 ms, ``pq`` 0.2 ms at recall 1.000, and 0.9 s to build).
INDEX_MIN_FACES = 20_000
#: ``pq``: candidates re-scored exactly per search, beyond twice the faces asked for.
RERANK_EXTRA = 32
#: Share of the IVF lists scanned per query (at least :data:`IVF_MIN_PROBES` lists).
IVF_PROBE_SHARE, IVF_MIN_PROBES = 1 / 2, 8
#: Training points per IVF list (the sample, not the gallery, sets the training time).
IVF_TRAIN_PER_LIST, IVF_TRAIN_ITERATIONS = 32, 10
#: HNSW graph degree and build/search breadth (used when ``hnsw`` is asked for).
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 100, 128
#: Rebuild once this share of the indexed faces has been removed...
REBUILD_TOMBSTONE_SHARE = 0.2
#: ...or once the gallery holds this many times the faces its codebooks or centroids were
#: trained on (a ``pq`` index then also gets the shards its new size calls for).
REBUILD_GROWTH = 4.0
#: Faces handed to faiss per call while building (one progress step each).
BUILD_CHUNK = 50_000
#: The saved index: its arrays (the commit point) and its data files.
INDEX_ARRAYS, INDEX_GLOB, INDEX_LOCK = "index.npz", "index-*", "index.lock"

#: ``progress(stage, done, total)``, called while an index is read or built.
Progress = Callable[[str, int, int], None]


def choose_kind(count: int, min_faces: int = INDEX_MIN_FACES) -> str:
    """The index kind for a gallery of ``count`` faces: ``exact`` below ``min_faces``, else ``pq``."""
    return "exact" if count < min_faces else "pq"


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise GalleryError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS)} (or auto)")
    return kind


def ivf_lists(count: int) -> int:
    """IVF list count for ``count`` faces: the power of two nearest √count (at most 4096),
    and never so many that a list would hold fewer than 8 faces on average.

    On face-like vectors the recall depends on the *share* of lists scanned, not on their
    number, and the query cost on the share of faces scanned; fewer lists make the build
    (k-means training and assignment, both ∝ lists) cheaper at no cost per query."""
    wanted = 2 ** round(math.log2(max(math.sqrt(max(count, 1)), 1)))
    return int(max(1, min(4096, wanted, count // 8)))


class FaceIndex:
    """Face vectors with their face ids and owners (person ids), searchable by cosine.

    Faiss labels are positions in :attr:`ids` (faces are only ever appended), so the
    arrays here map a hit to its face and owner without a second lookup.

    Args:
        dim: embedding dimension.
        kind: ``exact``, ``pq``, ``ivf`` or ``hnsw`` (see the module docstring).
        shards: ``pq`` only: shards searched in parallel (None: one per core, for the size
            of the first faces added).
    """

    def __init__(self, dim: int, kind: str = "exact", shards: int | None = None) -> None:
        self.dim = dim
        self.kind = check_kind(kind)
        self.ids = np.empty(0, dtype=np.int64)
        self.owners = np.empty(0, dtype=np.int64)
        self.alive = np.empty(0, dtype=bool)
        self.trained_on = 0  # faces in the gallery when the codebooks or centroids were trained
        self.saved_size = 0  # faces in the saved copy (0: not saved)
        self.probe_share = IVF_PROBE_SHARE  # IVF: more lists scanned, higher recall, slower
        self.shards = shards
        self._rows = Rows(dim)  # exact and pq: the float32 vectors (pq re-scores on them)
        self._codes: CodeShards | None = None
        self._ann: Any = _new_hnsw(dim) if kind == "hnsw" else None
        self._groups: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @classmethod
    def build(
        cls,
        dim: int,
        kind: str,
        ids: np.ndarray,
        owners: np.ndarray,
        vectors: np.ndarray,
        progress: Progress | None = None,
        shards: int | None = None,
    ) -> FaceIndex:
        """A new index of ``kind`` over these faces (codebooks or centroids trained on a sample)."""
        index = cls(dim, kind, shards)
        index.add(ids, owners, vectors, progress)
        return index

    @property
    def size(self) -> int:
        return int(np.count_nonzero(self.alive))  # a bool sum would cast a million faces to int

    @property
    def max_id(self) -> int:
        return int(self.ids[-1]) if self.ids.size else 0

    @property
    def tombstone_share(self) -> float:
        return 0.0 if self.ids.size == 0 else 1.0 - self.size / self.ids.size

    def drift(self, count: int, wanted_kind: str) -> str | None:
        """Why this index should be rebuilt for a gallery of ``count`` faces, or None."""
        if wanted_kind != self.kind:
            return f"the gallery now holds {count:,} faces, which calls for the {wanted_kind} index"
        if self.tombstone_share > REBUILD_TOMBSTONE_SHARE:
            return f"{self.tombstone_share:.0%} of its faces were removed"
        if self.kind in ("pq", "ivf") and count > REBUILD_GROWTH * max(self.trained_on, 1):
            return f"it was trained on {self.trained_on:,} faces and the gallery now holds {count:,}"
        return None

    def add(
        self, ids: np.ndarray, owners: np.ndarray, vectors: np.ndarray, progress: Progress | None = None
    ) -> None:
        """Append faces whose ids are all above :attr:`max_id` (ids stay sorted).

        The first faces added to an empty ``pq`` or IVF index train its codebooks or centroids.
        """
        if ids.size == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.kind in ("pq", "ivf") and self._ann is None and self._codes is None:
            if progress is not None:
                progress("training", 0, 1)
            self._train(vectors)
            if progress is not None:
                progress("training", 1, 1)
        if self.kind in ("exact", "pq"):
            self._rows.append(vectors)
        if self._ann is not None or self._codes is not None:
            first = self.ids.size
            for start in range(0, len(vectors), BUILD_CHUNK):
                chunk = vectors[start : start + BUILD_CHUNK]
                positions = np.arange(first + start, first + start + len(chunk))
                if self._codes is not None:
                    self._codes.add(chunk, positions)
                elif self.kind == "ivf":  # labelled explicitly: removals lower ntotal
                    self._ann.add_with_ids(chunk, positions)
                else:  # an HNSW graph numbers faces itself, and never drops one
                    self._ann.add(chunk)
                if progress is not None:
                    progress("indexing", min(start + BUILD_CHUNK, len(vectors)), len(vectors))
        self.ids = np.r_[self.ids, ids.astype(np.int64)]
        self.owners = np.r_[self.owners, owners.astype(np.int64)]
        self.alive = np.r_[self.alive, np.ones(ids.size, dtype=bool)]
        self._groups = None

    def _train(self, vectors: np.ndarray) -> None:
        self.trained_on = len(vectors)
        if self.kind == "ivf":
            self._ann = _train_ivf(vectors)
            return
        self._codes = CodeShards(self.dim, self.shards or shard_count(len(vectors)))
        self._codes.train(vectors)

    def remove(self, ids: np.ndarray) -> None:
        """Tombstone faces (searches never return them again) and erase what the index holds
        of them: their vectors are zeroed and their codes dropped, so no later save of this
        index carries them."""
        positions = live_positions(self.ids, self.alive, ids)
        self.alive[positions] = False
        self._groups = None
        if positions.size == 0:
            return
        if self.kind in ("exact", "pq"):
            self._rows.zero(positions)
        if self._codes is not None:
            self._codes.drop(positions, self._rows.view)
        elif self.kind == "ivf" and self._ann is not None:
            import faiss

            self._ann.remove_ids(faiss.IDSelectorArray(positions))
        elif self.kind == "hnsw":
            _zero_hnsw_rows(self._ann, positions)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``k`` live faces nearest to ``query``: (owners, cosine scores), best first."""
        if self.size == 0:
            return np.empty(0, dtype=np.int64), np.empty(0)
        q = np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32)
        if self.kind == "exact":
            owners, scores = self.all_scores(q[0])
            top = top_k(scores, k)
            return owners[top], scores[top]
        if self._codes is not None:
            wanted = rerank_candidates(k, self.tombstone_share, self.ids.size)
            return self._rescored(q[0], self._codes.search(q, wanted), k)
        dead = self.ids.size - self.size
        fetch = min(self.ids.size, k + dead if dead < 4 * k else 4 * k + dead)
        distances, labels = self._ann.search(q, fetch, params=self._search_params(fetch))
        found = labels[0] >= 0
        positions, values = labels[0][found], distances[0][found].astype(np.float64)
        # unit vectors: IVF returns squared L2 distances, HNSW inner products
        scores = 1.0 - values / 2.0 if self.kind == "ivf" else values
        keep = self.alive[positions]
        return self.owners[positions[keep]][:k], scores[keep][:k]

    def _rescored(self, query: np.ndarray, positions: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best live faces among candidate positions, by their exact cosine."""
        positions = positions[self.alive[positions]]
        scores = (self._rows.view[positions] @ query).astype(np.float64)
        best = top_k(scores, k)
        return self.owners[positions[best]], scores[best]

    def _search_params(self, fetch: int) -> Any:
        import faiss

        # present at run time, missing from the stubs faiss ships
        if self.kind == "hnsw":
            return faiss.SearchParametersHNSW(efSearch=max(HNSW_EF_SEARCH, fetch))  # type: ignore[attr-defined]
        return faiss.SearchParametersIVF(nprobe=ivf_probes(self._ann.nlist, self.probe_share))  # type: ignore[call-arg]

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
        scores = (self._rows.view @ np.asarray(query, dtype=np.float32).T).T
        if self.size == self.ids.size:
            return self.owners, scores
        return self.owners[self.alive], scores[..., self.alive]

    def memory_bytes(self) -> int:
        """Approximate resident size: vectors, the id arrays, and per kind the codes and
        their labels, the IVF lists' ids or the HNSW graph's links."""
        codes = self._codes.code_bytes() if self._codes is not None else 0
        extra = {"exact": 0, "pq": codes, "ivf": 8, "hnsw": 2 * HNSW_M * 4}[self.kind]
        per_face = 4 * self.dim + 8 + 8 + 1 + extra
        return int(self.ids.size * per_face)

    def save(self, folder: Path, uuid: str, *, erased: Callable[[], np.ndarray | None] | None = None) -> None:
        """Persist a ``pq``, IVF or HNSW index atomically (exact ones rebuild from SQLite
        faster than they load), owner-only, marked with its gallery's ``uuid``. Raises
        OSError when the folder cannot be written.

        ``erased`` is asked, under the lock that removals scrub under, for every face id
        removed from the gallery (None: the folder holds another gallery now, nothing is
        saved): an index built from an older snapshot drops them before it is written, so
        no save ever brings back what a removal scrubbed."""
        if self.kind == "exact":
            return
        with file_lock(folder / INDEX_LOCK):
            removed = erased() if erased is not None else np.empty(0, np.int64)
            if removed is None:
                return
            self.remove(removed)
            self._save(folder, uuid)

    def _save(self, folder: Path, uuid: str) -> None:
        import faiss

        token = secrets.token_hex(8)
        stem, arrays = folder / f"index-{token}", folder / f".index-{token}.tmp.npz"
        written: list[Path] = [arrays]
        try:
            if self._codes is not None:
                written += self._codes.save(stem)
                written.append(stem.with_suffix(".npy"))
                self._rows.save(written[-1])
            else:
                written.append(stem.with_suffix(".faiss"))
                open_private(written[-1]).close()  # faiss keeps the mode of the file it truncates
                faiss.write_index(self._ann, str(written[-1]))
            _save_arrays(
                arrays,
                ids=self.ids,
                owners=self.owners,
                alive=self.alive,
                kind=np.array(self.kind),
                dim=np.array(self.dim),
                trained_on=np.array(self.trained_on),
                token=np.array(token),
                uuid=np.array(uuid),
                shards=np.array(self._codes.shards if self._codes is not None else 0),
            )
            os.replace(arrays, folder / INDEX_ARRAYS)  # the commit point
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise
        self.saved_size = int(self.ids.size)
        _drop_unreferenced(folder, keep=token)

    @classmethod
    def load(cls, folder: Path, dim: int, uuid: str) -> FaceIndex | None:
        """The saved index, or None when absent, unreadable, of another dimension or of
        another gallery (one deleted and made again under the same name)."""
        try:
            with np.load(folder / INDEX_ARRAYS) as saved:
                ids, owners, alive = saved["ids"], saved["owners"], saved["alive"]
                kind, token = str(saved["kind"]), str(saved["token"])
                saved_dim, trained_on = int(saved["dim"]), int(saved["trained_on"])
                shards = int(saved["shards"]) if "shards" in saved else 0
                same_gallery = "uuid" in saved and str(saved["uuid"]) == uuid
            if saved_dim != dim or kind not in KINDS[1:] or not same_gallery:
                return None
            index = cls(dim, kind, shards or None)
            if not index._read_data(folder / f"index-{token}", ids.size, int(np.count_nonzero(alive))):
                return None
        except (RuntimeError, OSError, ValueError, KeyError, EOFError):
            return None
        index.ids, index.owners, index.alive = ids, owners, alive
        index.trained_on, index.saved_size = trained_on, int(ids.size)
        return index

    def _read_data(self, stem: Path, faces: int, live: int) -> bool:
        """Read the saved codes and vectors (``pq``) or faiss index; False when they do
        not hold ``faces`` faces of this dimension (codes: only the ``live`` ones; an index
        saved before removals dropped codes is rebuilt, which erases what it kept)."""
        if self.kind == "pq":
            self._rows = Rows.load(stem.with_suffix(".npy"), self.dim)
            self._codes = CodeShards.load(stem, self.dim, self.shards or 1)
            return self._rows.count == faces and sum(self._codes.sizes()) == live
        import faiss

        self._ann = faiss.read_index(str(stem.with_suffix(".faiss")))
        held = live if self.kind == "ivf" else faces  # IVF lists drop removed faces, a graph cannot
        return bool(self._ann.d == self.dim and self._ann.ntotal == held)


def rerank_candidates(k: int, tombstone_share: float, faces: int) -> int:
    """Candidates a ``pq`` search re-scores for ``k`` faces: twice ``k`` plus
    :data:`RERANK_EXTRA`, scaled up for the share of removed faces among them (tombstones
    are spread evenly over the codes; counting them one by one would ask faiss for 200,000
    candidates after 20% of a million faces were removed)."""
    live_share = max(1.0 - tombstone_share, 0.05)
    return min(faces, math.ceil((2 * k + RERANK_EXTRA) / live_share))


def ivf_probes(lists: int, share: float = IVF_PROBE_SHARE) -> int:
    """Lists scanned per query for an IVF index of ``lists`` lists."""
    return int(min(lists, max(IVF_MIN_PROBES, math.ceil(share * lists))))


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


def _train_ivf(vectors: np.ndarray) -> Any:
    import faiss

    lists = ivf_lists(len(vectors))
    index = faiss.IndexIVFFlat(faiss.IndexFlatL2(vectors.shape[1]), vectors.shape[1], lists)
    index.cp.niter = IVF_TRAIN_ITERATIONS
    index.cp.min_points_per_centroid = 1  # small galleries: fewer points per list, no warning
    index.cp.max_points_per_centroid = IVF_TRAIN_PER_LIST
    # a fixed sample: the same gallery trains the same centroids
    sample = np.random.default_rng(0).choice(
        len(vectors), min(len(vectors), IVF_TRAIN_PER_LIST * lists), replace=False
    )
    index.train(vectors[np.sort(sample)])
    return index


def live_positions(ids: np.ndarray, alive: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Positions in the sorted ``ids`` of the ``wanted`` face ids that are still alive."""
    positions = np.searchsorted(ids, wanted)
    inside = positions < ids.size
    positions, wanted = positions[inside], wanted[inside]
    positions = positions[ids[positions] == wanted]
    return positions[alive[positions]]


def scrub_saved(folder: Path, face_ids: np.ndarray, uuid: str) -> bool:
    """Erase faces from the index saved in ``folder``: their rows of the ``pq`` vectors are
    zeroed in place, the code shards holding them written again without them, and the
    arrays mark them removed; a saved IVF or HNSW index is deleted instead (the next
    process rebuilds it from SQLite). False when nothing saved held them."""
    with file_lock(folder / INDEX_LOCK):
        try:
            with np.load(folder / INDEX_ARRAYS) as saved:
                arrays = {key: saved[key] for key in saved.files}
        except FileNotFoundError:
            return False
        except (OSError, ValueError, EOFError) as exc:
            raise GalleryError(f"gallery '{folder}': its saved index cannot be read ({exc})") from exc
        if "uuid" in arrays and str(arrays["uuid"]) != uuid:  # another gallery's: not our faces
            return False
        positions = live_positions(arrays["ids"], arrays["alive"], face_ids)
        if positions.size == 0:
            return False
        stem = folder / f"index-{arrays['token']}"
        if str(arrays["kind"]) != "pq" or "uuid" not in arrays:  # (no uuid: saved by an older
            # version, which no load accepts any more)
            for path in (folder / INDEX_ARRAYS, *folder.glob(INDEX_GLOB)):
                path.unlink(missing_ok=True)  # the arrays first: they are the commit point
            return True
        vectors = np.load(stem.with_suffix(".npy"), mmap_mode="r+")
        vectors[positions] = 0.0
        vectors.flush()
        codes = CodeShards.load(stem, int(arrays["dim"]), max(int(arrays["shards"]), 1))
        codes.drop(positions, vectors)
        codes.save(stem)
        del vectors
        arrays["alive"] = arrays["alive"].copy()
        arrays["alive"][positions] = False
        temporary = folder / f".index-{arrays['token']}.scrub.tmp.npz"
        _save_arrays(temporary, **arrays)
        os.replace(temporary, folder / INDEX_ARRAYS)
        return True


def _save_arrays(path: Path, **arrays: np.ndarray) -> None:
    with open_private(path) as stream:
        np.savez(stream, **arrays)  # type: ignore[arg-type]  # the stubs read a key as allow_pickle


def _zero_hnsw_rows(graph: Any, positions: np.ndarray) -> None:
    """Zero removed faces' vectors in an HNSW graph's storage (the graph cannot drop nodes)."""
    import faiss

    storage = faiss.downcast_index(graph.storage)
    xb = storage.get_xb()  # type: ignore[attr-defined]  # IndexFlat has it; the stubs type it as Index
    rows = faiss.rev_swig_ptr(xb, storage.ntotal * storage.d).reshape(storage.ntotal, storage.d)
    rows[positions] = 0.0


def _new_hnsw(dim: int) -> Any:
    import faiss

    graph = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    graph.hnsw.efSearch = HNSW_EF_SEARCH
    return graph


def _drop_unreferenced(folder: Path, keep: str) -> None:
    """Delete older index files (and pre-IVF ``hnsw.*`` files); another process's newer
    save may have replaced ours meanwhile, so keep whatever the arrays now name too."""
    try:
        with np.load(folder / INDEX_ARRAYS) as saved:
            current = str(saved["token"])
    except (OSError, ValueError, KeyError, EOFError):
        current = keep
    for path in [*folder.glob(INDEX_GLOB), folder / "hnsw.faiss", folder / "hnsw.npz"]:
        # names are index-<token>.faiss, index-<token>.npy, index-<token>-<shard>.faiss
        if path.name[len("index-") :][:16] not in (keep, current):  # hnsw.* never matches
            path.unlink(missing_ok=True)


@contextmanager
def progress_bar(show: bool) -> Iterator[Progress | None]:
    """A ``Progress`` callback drawing one tqdm bar per stage on stderr (None when hidden)."""
    if not show or not logging.getLogger(__name__).isEnabledFor(logging.INFO):
        yield None
        return
    from tqdm.auto import tqdm

    bars: dict[str, Any] = {}

    def update(stage: str, done: int, total: int) -> None:
        bar = bars.get(stage)
        if bar is None:
            for other in bars.values():
                other.close()
            bar = bars[stage] = tqdm(total=total, desc=f"index: {stage}", unit="face", file=sys.stderr)
        bar.update(done - bar.n)

    try:
        yield update
    finally:
        for bar in bars.values():
            bar.close()
