"""What every index kind shares: face ids, owners, tombstones, search framing, save/load.

Kinds subclass :class:`FaceIndex` in :mod:`faceverify.gallery.index_kinds` and register
themselves here (:func:`register_kind`); everyone else uses :mod:`faceverify.gallery.index`,
which holds them all.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np

from faceverify.errors import GalleryError
from faceverify.gallery.index_files import (
    INDEX_LOCK,
    commit_saved,
    data_stem,
    delete_saved,
    read_arrays,
    replace_arrays,
)
from faceverify.gallery.index_sizing import (
    IVF_PROBE_SHARE,
    KINDS,
    REBUILD_GROWTH,
    REBUILD_TOMBSTONE_SHARE,
    check_kind,
)
from faceverify.paths import file_lock

#: Faces handed to faiss per call while building (one progress step each).
BUILD_CHUNK = 50_000

#: ``progress(stage, done, total)``, called while an index is read or built.
Progress = Callable[[str, int, int], None]
#: Adds a chunk of vectors to a kind's own structure, labelled with their positions.
ChunkAdder = Callable[[np.ndarray, np.ndarray], None]


#: Each kind's class, filled by :mod:`faceverify.gallery.index_kinds` as it is imported
#: (:mod:`faceverify.gallery.index` imports it, so the registry is full wherever indexes are used).
_KIND_CLASSES: dict[str, type[FaceIndex]] = {}


def register_kind(cls: type[FaceIndex]) -> type[FaceIndex]:
    """Make ``cls`` the class of its ``kind`` (a class decorator)."""
    _KIND_CLASSES[check_kind(cls.kind)] = cls
    return cls


def index_class(kind: str) -> type[FaceIndex]:
    """The class of an index kind (``exact``, ``pq``, ``ivf`` or ``hnsw``)."""
    checked = check_kind(kind)
    if checked not in _KIND_CLASSES:
        raise GalleryError(f"index kind {checked!r} is not loaded; import faceverify.gallery.index")
    return _KIND_CLASSES[checked]


class FaceIndex:
    """Face vectors with their face ids and owners (person ids), searchable by cosine.

    ``FaceIndex(dim, kind)`` makes an index of that kind (:func:`index_class`). The
    bookkeeping every kind shares is done here: faces are only ever appended, so a face's
    position in :attr:`ids` is its label in the kind's own structure and maps a hit to its
    face and owner without a second lookup; a removed face is tombstoned in :attr:`alive`
    and erased from the kind's structure. A kind adds its vectors (:meth:`_append`,
    :meth:`_erase`), its raw search (:meth:`_nearest`), its files and its memory.

    Args:
        dim: embedding dimension.
        kind: ``exact``, ``pq``, ``ivf`` or ``hnsw`` (see the module docstring); a kind's
            own class takes its own name or None.
        shards: ``pq`` only: shards searched in parallel (None: one per core, for the size
            of the first faces added).
    """

    kind: ClassVar[str]
    #: Whether :meth:`save` writes it (an exact index rebuilds from SQLite faster than it loads).
    saves: ClassVar[bool] = True
    #: Whether the first faces added train it (codebooks, centroids), which a gallery outgrows.
    trains: ClassVar[bool] = False

    def __new__(cls, dim: int, kind: str | None = None, shards: int | None = None) -> FaceIndex:
        if cls is FaceIndex:  # the factory: an index of the kind asked for
            cls = index_class(kind or "exact")
        return super().__new__(cls)

    def __init__(self, dim: int, kind: str | None = None, shards: int | None = None) -> None:
        if kind is not None and check_kind(kind) != self.kind:
            raise GalleryError(f"the {self.kind} index class cannot make a {kind!r} index")
        self.dim = dim
        self.ids = np.empty(0, dtype=np.int64)
        self.owners = np.empty(0, dtype=np.int64)
        self.alive = np.empty(0, dtype=bool)
        self.trained_on = 0  # faces in the gallery when the codebooks or centroids were trained
        self.saved_size = 0  # faces in the saved copy (0: not saved)
        self.probe_share = IVF_PROBE_SHARE  # IVF: more lists scanned, higher recall, slower
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
        index = index_class(kind)(dim, shards=shards)
        index.add(ids, owners, vectors, progress)
        return index

    # what each kind implements (hooks, not abstract methods: ``FaceIndex(dim, kind)`` is
    # the factory, so type checkers must see the base as a class that can be called)

    def _train(self, vectors: np.ndarray) -> None:
        """Train on the first faces added (kinds that :attr:`trains`)."""
        raise NotImplementedError(f"a {self.kind} index is not trained")

    def _append(self, vectors: np.ndarray, first: int, progress: Progress | None) -> None:
        """Add float32 ``vectors`` whose positions start at ``first``."""
        raise NotImplementedError

    def _erase(self, positions: np.ndarray) -> None:
        """Drop what the kind holds of the faces at ``positions`` (already tombstoned)."""
        raise NotImplementedError

    def _nearest(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions of up to ``k`` live faces nearest a ``[1, D]`` query, and their cosines."""
        raise NotImplementedError

    def _extra_bytes_per_face(self) -> int:
        """Memory per face beyond its float32 vector and ids (codes, labels, links)."""
        raise NotImplementedError

    def _vectors(self) -> np.ndarray | None:
        """Every face's float32 vector by position, if the kind keeps them as a matrix."""
        return None

    @property
    def shard_count(self) -> int:
        """Shards searched in parallel (0: the kind is not sharded)."""
        return 0

    def _write_files(self, stem: Path, written: list[Path]) -> None:
        """Write the kind's data files ``<stem>*`` (see :data:`index_files.DataWriter`)."""
        raise NotImplementedError(f"a {self.kind} index is not saved")

    def _read_files(self, stem: Path, faces: int, live: int) -> bool:
        """Read the data files; False when they do not hold ``faces`` faces (``live`` of
        them not removed) of this dimension."""
        raise NotImplementedError(f"a {self.kind} index is not saved")

    @classmethod
    def scrub_files(cls, stem: Path, arrays: dict[str, np.ndarray], positions: np.ndarray) -> bool:
        """Erase the faces at ``positions`` from saved data files in place; False when the
        kind cannot (its saved index is then deleted, and the next process rebuilds it)."""
        return False

    # shared bookkeeping

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
        if self.trains and count > REBUILD_GROWTH * max(self.trained_on, 1):
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
        if self.trains and not self.trained_on:
            _report(progress, "training", 0, 1)
            self._train(vectors)
            self.trained_on = len(vectors)
            _report(progress, "training", 1, 1)
        self._append(vectors, self.ids.size, progress)
        self.ids = np.r_[self.ids, ids.astype(np.int64)]
        self.owners = np.r_[self.owners, owners.astype(np.int64)]
        self.alive = np.r_[self.alive, np.ones(ids.size, dtype=bool)]
        self._groups = None

    def _in_chunks(self, vectors: np.ndarray, first: int, progress: Progress | None, add: ChunkAdder) -> None:
        """Hand ``vectors`` to a kind's structure :data:`BUILD_CHUNK` at a time, reporting each."""
        for start in range(0, len(vectors), BUILD_CHUNK):
            chunk = vectors[start : start + BUILD_CHUNK]
            add(chunk, np.arange(first + start, first + start + len(chunk)))
            _report(progress, "indexing", min(start + BUILD_CHUNK, len(vectors)), len(vectors))

    def remove(self, ids: np.ndarray) -> None:
        """Tombstone faces (searches never return them again) and erase what the index holds
        of them: their vectors are zeroed and their codes dropped, so no later save of this
        index carries them."""
        positions = live_positions(self.ids, self.alive, ids)
        self.alive[positions] = False
        self._groups = None
        if positions.size:
            self._erase(positions)

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``k`` live faces nearest to ``query``: (owners, cosine scores), best first."""
        if self.size == 0:
            return np.empty(0, dtype=np.int64), np.empty(0)
        positions, scores = self._nearest(np.ascontiguousarray(query.reshape(1, -1), dtype=np.float32), k)
        return self.owners[positions], scores

    def best_owners(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` owners whose best face is nearest ``query``, best first, with that
        face's score. Searches enough faces (ten per owner wanted, at least 50) that people
        with several near faces do not crowd out the others."""
        owners, scores = self.search(query, max(10 * k, 50))
        return first_per_owner(owners, scores, k)

    def best_per_owner(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each owner's best face score (owners ascending, scores), for kinds that keep
        their vectors (``exact``, ``pq``).

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
        """Every live face's owner and score, unsorted (``[Q, faces]`` for ``[Q, D]``
        queries), for kinds that keep their vectors (``exact``, ``pq``)."""
        vectors = self._vectors()
        if vectors is None:
            raise GalleryError(f"a {self.kind} index keeps no vector matrix to score every face on")
        scores = (vectors @ np.asarray(query, dtype=np.float32).T).T
        if self.size == self.ids.size:
            return self.owners, scores
        return self.owners[self.alive], scores[..., self.alive]

    def memory_bytes(self) -> int:
        """Approximate resident size: vectors, the id arrays, and per kind the codes and
        their labels, the IVF lists' ids or the HNSW graph's links."""
        per_face = 4 * self.dim + 8 + 8 + 1 + self._extra_bytes_per_face()
        return int(self.ids.size * per_face)

    def save(self, folder: Path, uuid: str, *, erased: Callable[[], np.ndarray | None] | None = None) -> None:
        """Persist a ``pq``, IVF or HNSW index atomically (exact ones rebuild from SQLite
        faster than they load; an empty one has nothing worth keeping), owner-only, marked
        with its gallery's ``uuid``. Raises OSError when the folder cannot be written.

        ``erased`` is asked, under the lock that removals scrub under, for every face id
        removed from the gallery (None: the folder holds another gallery now, nothing is
        saved): an index built from an older snapshot drops them before it is written, so
        no save ever brings back what a removal scrubbed."""
        if not self.saves or self.ids.size == 0:
            return
        with file_lock(folder / INDEX_LOCK):
            removed = erased() if erased is not None else np.empty(0, np.int64)
            if removed is None:
                return
            self.remove(removed)
            commit_saved(
                folder,
                self._write_files,
                ids=self.ids,
                owners=self.owners,
                alive=self.alive,
                kind=np.array(self.kind),
                dim=np.array(self.dim),
                trained_on=np.array(self.trained_on),
                uuid=np.array(uuid),
                shards=np.array(self.shard_count),
            )
            self.saved_size = int(self.ids.size)

    @classmethod
    def load(cls, folder: Path, dim: int, uuid: str) -> FaceIndex | None:
        """The saved index, or None when absent, unreadable, of another dimension or of
        another gallery (one deleted and made again under the same name): the caller then
        builds it again from the database."""
        try:
            arrays = read_arrays(folder)
            kind, ids, alive = str(arrays["kind"]), arrays["ids"], arrays["alive"]
            same_gallery = "uuid" in arrays and str(arrays["uuid"]) == uuid
            if int(arrays["dim"]) != dim or kind not in KINDS or not same_gallery:
                return None
            shards = int(arrays["shards"]) if "shards" in arrays else 0
            index = index_class(kind)(dim, shards=shards or None)
            if not index.saves or not index._read_files(
                data_stem(folder, arrays), ids.size, int(np.count_nonzero(alive))
            ):
                return None
            index.ids, index.owners, index.alive = ids, arrays["owners"], alive
            index.trained_on, index.saved_size = int(arrays["trained_on"]), int(ids.size)
        except (RuntimeError, OSError, ValueError, KeyError, EOFError):
            return None
        return index


def scrub_saved(folder: Path, face_ids: np.ndarray, uuid: str) -> bool:
    """Erase faces from the index saved in ``folder``: its kind erases them from its data
    files in place (``pq``: vectors zeroed, code shards written again without them) and
    the arrays mark them removed; a kind that cannot (IVF, HNSW) has its saved index
    deleted instead (the next process rebuilds it from SQLite). False when nothing saved
    held them."""
    with file_lock(folder / INDEX_LOCK):
        try:
            arrays = read_arrays(folder)
        except FileNotFoundError:
            return False
        except (OSError, ValueError, EOFError) as exc:
            raise GalleryError(f"gallery '{folder}': its saved index cannot be read ({exc})") from exc
        if "uuid" in arrays and str(arrays["uuid"]) != uuid:  # another gallery's: not our faces
            return False
        positions = live_positions(arrays["ids"], arrays["alive"], face_ids)
        if positions.size == 0:
            return False
        kind = str(arrays["kind"])
        # (no uuid: saved by an older version, which no load accepts any more)
        if (
            "uuid" not in arrays
            or kind not in KINDS
            or not index_class(kind).scrub_files(data_stem(folder, arrays), arrays, positions)
        ):
            delete_saved(folder)
            return True
        arrays["alive"][positions] = False
        replace_arrays(folder, arrays)
        return True


def live_positions(ids: np.ndarray, alive: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Positions in the sorted ``ids`` of the ``wanted`` face ids that are still alive."""
    positions = np.searchsorted(ids, wanted)
    inside = positions < ids.size
    positions, wanted = positions[inside], wanted[inside]
    positions = positions[ids[positions] == wanted]
    return positions[alive[positions]]


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` highest scores, best first, without sorting them all."""
    if k >= scores.size:
        return np.argsort(-scores, kind="stable")
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


def first_per_owner(owners: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each owner's first (best) face among faces sorted best first, for up to ``k`` owners."""
    _, first = np.unique(owners, return_index=True)
    first = np.sort(first)[:k]
    return owners[first], scores[first]


def unit_centroids(owners: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each owner's mean face direction, for centroid matching: (owners ascending, unit rows)."""
    people = np.unique(owners)
    sums = np.zeros((people.size, vectors.shape[1]), dtype=np.float64)
    np.add.at(sums, np.searchsorted(people, owners), vectors)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return people, (sums / np.maximum(norms, 1e-12)).astype(np.float32)


def _report(progress: Progress | None, stage: str, done: int, total: int) -> None:
    if progress is not None:
        progress(stage, done, total)
