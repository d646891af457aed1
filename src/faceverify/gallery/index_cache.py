"""A process's copy of an embedded gallery's index, kept in step with its database.

The database stays the source of truth (:class:`FaceSource` is what the cache reads of
it). Every write there bumps a generation counter; a search whose cache is older than the
database first brings the index up to date: faces added since (by this process or another)
are appended, removed ones tombstoned. Threads share one cache: it is brought up to date
and searched under one lock, and inside one read snapshot of the database.

It never blocks a command silently: a gallery whose saved index is missing is indexed in
the foreground with a message and a progress bar on stderr; an index that has drifted
(many removals, or codes trained on a far smaller gallery) is rebuilt in a background
thread while searches go on with the current one, then caught up and swapped in under the
lock. :meth:`IndexCache.reindex` rebuilds on demand.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from faceverify.errors import GalleryError
from faceverify.extras import INDEX
from faceverify.gallery.index import FaceIndex, Progress, unit_centroids
from faceverify.gallery.index_sizing import INDEX_MIN_FACES, IVF_PROBE_SHARE, check_kind, choose_kind

log = logging.getLogger(__name__)

#: Reading or indexing at least this many faces shows a message and a progress bar.
LOUD_BUILD_FACES = 20_000
#: Save a grown index again once this share of its faces is newer than the saved copy.
RESAVE_GROWTH = 0.1
#: How long closing waits for a background rebuild to stop at its next step.
CLOSE_WAIT_S = 60.0

Faces = tuple[np.ndarray, np.ndarray, np.ndarray]  # face ids (ascending), owners, vectors


class FaceSource(Protocol):
    """What an :class:`IndexCache` reads from the gallery's database (in the calling
    thread's connection; errors already in the words the store gives them)."""

    def snapshot(self) -> AbstractContextManager[None]:
        """One read transaction: every read inside sees the same committed state."""

    def generation(self) -> int:
        """The counter every write to the gallery bumps."""

    def count(self) -> int:
        """Faces stored."""

    def dim(self) -> int:
        """The embedding dimension."""

    def faces(self, after: int = 0, progress: Progress | None = None, total: int = 0) -> Faces:
        """Every face whose id is above ``after``, by id (``progress`` gets ``reading``
        steps out of ``total``)."""

    def face_ids(self) -> np.ndarray:
        """The ids of every face stored."""

    def erased(self) -> np.ndarray | None:
        """Read outside any snapshot: every removed face id, or None when the folder no
        longer holds this gallery (see :meth:`FaceIndex.save`)."""


@dataclass(frozen=True)
class IndexOptions:
    """How a store indexes its faces (see :class:`~faceverify.gallery.sqlite.SQLiteStore`)."""

    kind: str = "auto"
    min_faces: int = INDEX_MIN_FACES
    background: bool = True
    probe_share: float = IVF_PROBE_SHARE

    def __post_init__(self) -> None:
        if self.kind != "auto":
            check_kind(self.kind)
            if self.kind != "exact":
                INDEX.require(f"the {self.kind!r} gallery index")
        if not 0 < self.probe_share <= 1:
            raise GalleryError(
                f"probe_share {self.probe_share} must be above 0 and at most 1 (the default is 0.5)"
            )

    def wanted_kind(self, count: int) -> str:
        if self.kind != "auto":
            return self.kind
        kind = choose_kind(count, self.min_faces)
        if kind != "exact" and not INDEX.installed():
            _say_exact_search_once(count)
            return "exact"
        return kind


_said_exact = threading.Event()


def _say_exact_search_once(count: int) -> None:
    """Exact search stays right on any gallery, only slower: said once per process, with the fix."""
    if not _said_exact.is_set():
        _said_exact.set()
        log.warning(
            "a gallery of %d faces is searched exactly (every face per query): faiss is not "
            "installed; %s for the faster pq index",
            count,
            INDEX.install,
        )


class IndexCache:
    """One gallery's index in this process, shared by its threads.

    Args:
        source: the gallery's database.
        folder: where the index is saved (beside the database).
        uuid: the gallery's uuid, which marks its saved index.
        options: which kind to keep, and whether drift is rebuilt in the background.
    """

    def __init__(self, source: FaceSource, folder: Path, uuid: str, options: IndexOptions) -> None:
        self.source, self.folder, self.uuid, self.options = source, folder, uuid, options
        self.index: FaceIndex | None = None
        self.rebuilder: threading.Thread | None = None  # the background rebuild, once started
        self._lock = threading.Lock()
        self._generation = -1  # the database generation the index is up to date with
        self._centroids: tuple[int, np.ndarray, np.ndarray] | None = None
        self._rebuild_failed = False
        self._closed = False

    @contextmanager
    def current(self) -> Iterator[FaceIndex]:
        """The index, up to date with the database, held under the lock and inside one
        snapshot, so that what the caller reads of the database matches it."""
        with self._lock, self.source.snapshot():
            index = self._sync()
            index.probe_share = self.options.probe_share
            yield index

    def centroids(self) -> tuple[np.ndarray, np.ndarray]:
        """Each person's unit mean vector (owners ascending, rows); called inside
        :meth:`current`, and kept until the database changes."""
        if self._centroids is None or self._centroids[0] != self._generation:
            _, owners, vectors = self.source.faces()
            self._centroids = (self._generation, *unit_centroids(owners, vectors))
        return self._centroids[1], self._centroids[2]

    def forget(self, face_ids: np.ndarray) -> None:
        """Tombstone and erase removed faces from this process's index now."""
        with self._lock:
            if self.index is not None:
                self.index.remove(face_ids)

    def _sync(self) -> FaceIndex:
        """The index, brought up to date if the database changed since (under the lock,
        inside a snapshot); a drifted one is rebuilt, a grown one saved again."""
        generation = self.source.generation()
        if self.index is not None and generation == self._generation:
            return self.index
        index = self.index
        if index is None:
            count = self.source.count()
            index = self._open(self.options.wanted_kind(count), count)
        count = self._catch_up(index)
        self.index, self._generation, self._centroids = index, generation, None
        wanted = self.options.wanted_kind(count)
        reason = index.drift(count, wanted)
        if reason is not None:
            self._refresh(wanted, reason)
        elif index.saved_size and index.ids.size > (1 + RESAVE_GROWTH) * index.saved_size:
            self.save(index)  # later processes then read fewer new faces from the database
        return self.index

    def _catch_up(self, index: FaceIndex) -> int:
        """Add faces newer than the index and tombstone removed ones; returns the number
        of faces stored (so that a large gallery is counted once, not twice)."""
        known, live = index.max_id, index.size
        ids, owners, vectors = self.source.faces(after=known)
        index.add(ids, owners, vectors)
        # ids are never reused, so nothing was removed when the older faces all remain;
        # counting them all is cheap in SQLite (a small index), counting only the older
        # ones would walk the vectors, and reading every id is left for when it is needed
        older = self.source.count() - int(ids.size)
        if older != live:
            index.remove(np.setdiff1d(index.ids[index.alive], self.source.face_ids(), assume_unique=True))
        return older + int(ids.size)

    def _open(self, kind: str, count: int) -> FaceIndex:
        """The saved index (of whatever kind; a wrong kind is rebuilt later), or a new one."""
        saved = FaceIndex.load(self.folder, self.source.dim(), self.uuid) if kind != "exact" else None
        if saved is not None:
            return saved
        if count >= LOUD_BUILD_FACES and kind != "exact":
            log.info(
                "gallery %s has no saved index yet: indexing %s faces once (later runs load it)",
                self.folder,
                f"{count:,}",
            )
        return self._fresh(kind, count)

    def _fresh(self, kind: str, count: int) -> FaceIndex:
        """A new index built and saved here, with a progress bar on a large gallery."""
        index = self._build(kind, count, count >= LOUD_BUILD_FACES)
        self.save(index)
        return index

    def _build(self, kind: str, count: int, progress: bool | Progress) -> FaceIndex:
        """A new index of the ``count`` faces in the current snapshot (``progress``: True
        draws a bar, a callable gets the steps)."""
        with progress_bar(progress is True) as bar:
            report = progress if callable(progress) else bar
            ids, owners, vectors = self.source.faces(progress=report, total=count)
            return FaceIndex.build(self.source.dim(), kind, ids, owners, vectors, report)

    def save(self, index: FaceIndex) -> None:
        """Save an index beside the database; a folder that cannot be written only warns."""
        try:
            index.save(self.folder, self.uuid, erased=self.source.erased)
        except OSError as exc:  # a read-only folder: still searchable, rebuilt by the next process
            log.warning("gallery %s: could not save its index (%s); searches still work", self.folder, exc)

    def _refresh(self, kind: str, reason: str) -> None:
        """Rebuild a drifted index: in the background (searches go on) or right here."""
        if not self.options.background:
            self.index = self._fresh(kind, self.source.count())
            return
        if self._rebuild_failed or (self.rebuilder is not None and self.rebuilder.is_alive()):
            return
        log.info("gallery %s: rebuilding its index in the background (%s)", self.folder, reason)
        self.rebuilder = threading.Thread(
            target=self._rebuild_quietly, args=(kind,), name="faceverify-reindex", daemon=True
        )
        self.rebuilder.start()

    def _rebuild_quietly(self, kind: str) -> None:
        try:
            self._rebuild(kind, progress=self._still_open)
        except _ClosedError:
            return
        except Exception as exc:  # the current index still answers; say why once
            self._rebuild_failed = True
            if not self._closed:
                log.warning("gallery %s: background index rebuild failed: %s", self.folder, exc)

    def _rebuild(self, kind: str, *, progress: bool | Progress) -> FaceIndex:
        """Build a new index from a snapshot without holding the lock, save it, then catch
        it up with what was written meanwhile and swap it in under the lock."""
        with self.source.snapshot():
            index = self._build(kind, self.source.count(), progress)
        self.save(index)  # before anyone else can touch it: a consistent copy on disk
        with self._lock, self.source.snapshot():
            self._catch_up(index)
            self.index, self._generation, self._centroids = index, self.source.generation(), None
        return index

    def reindex(self, *, progress: bool | Progress = False) -> FaceIndex:
        """Rebuild the index now, in this thread (see
        :meth:`~faceverify.gallery.sqlite.SQLiteStore.reindex`)."""
        self.wait_for_index()
        with self.source.snapshot():
            wanted = self.options.wanted_kind(self.source.count())
        return self._rebuild(wanted, progress=progress)

    def wait_for_index(self, timeout: float | None = None) -> bool:
        """Wait for a background rebuild to finish; False if it still runs after ``timeout`` s."""
        rebuilder = self.rebuilder
        if rebuilder is not None:
            rebuilder.join(timeout)
            return not rebuilder.is_alive()
        return True

    def _still_open(self, stage: str, done: int, total: int) -> None:
        """The background rebuild's progress callback: it stops there once the cache closes."""
        if self._closed:
            raise _ClosedError

    def close(self) -> None:
        """Stop a background rebuild at its next step and wait for it (the database it
        reads is about to close)."""
        self._closed = True
        rebuilder = self.rebuilder
        if rebuilder is not None and rebuilder is not threading.current_thread():
            rebuilder.join(CLOSE_WAIT_S)


class _ClosedError(Exception):
    """Raised inside a background rebuild once its cache is closed."""


@contextmanager
def progress_bar(show: bool) -> Iterator[Progress | None]:
    """A ``Progress`` callback drawing one tqdm bar per stage on stderr (None when hidden)."""
    if not show or not log.isEnabledFor(logging.INFO):
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
