"""The embedded gallery: a folder with a SQLite database and a vector index.

SQLite (WAL mode) is the source of truth for people, faces, metadata and vectors. Each
enrolment or removal is one ``BEGIN IMMEDIATE`` transaction, so a crash or a kill leaves
the whole person or nothing, and several processes can read and write at once: writers
queue on SQLite's lock (for up to :data:`BUSY_TIMEOUT_S`) instead of losing writes.
Every write bumps a generation counter; a process whose index is older than the
database brings it up to date (new faces appended, removed ones tombstoned) before it
searches. Threads of one process are as safe as processes: each has its own connection,
and the shared index cache is updated and searched under a lock.

The index (see :mod:`faceverify.gallery.index`) is saved beside the database so the next
process starts fast. It never blocks a command silently: a gallery whose saved index is
missing is indexed in the foreground with a message and a progress bar on stderr; an
index that has drifted (many removals, or codes trained on a far smaller gallery) is
rebuilt in a background thread while searches go on with the current one, then swapped
in under the lock. ``faceverify reindex`` (:meth:`SQLiteStore.reindex`) rebuilds on demand.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from faceverify.errors import GalleryError
from faceverify.gallery.base import (
    AddResult,
    AuditEntry,
    Change,
    ErasingStore,
    Face,
    Match,
    PersonInfo,
    same_model,
    unknown_person,
)
from faceverify.gallery.index import (
    INDEX_MIN_FACES,
    IVF_PROBE_SHARE,
    FaceIndex,
    Progress,
    check_kind,
    choose_kind,
    progress_bar,
    scrub_saved,
    unit_centroids,
)
from faceverify.gallery.index import top_k as top_positions
from faceverify.gallery.sqlite_rows import (
    add_faces,
    create_schema,
    erased_faces,
    mark_erased,
    read_audit,
    read_uuid,
    remove_person,
    write_audit,
)
from faceverify.paths import open_private, private_dir

log = logging.getLogger(__name__)

DB_NAME = "gallery.db"
#: How long emptying the WAL after a removal waits for readers (then it is left for later).
CHECKPOINT_WAIT_S = 1.0
#: How long closing a store waits for a background rebuild to stop at its next step.
CLOSE_WAIT_S = 60.0
BUSY_TIMEOUT_S = 30.0
#: Reading or indexing at least this many faces shows a message and a progress bar.
LOUD_BUILD_FACES = 20_000
#: Save a grown index again once this share of its faces is newer than the saved copy.
RESAVE_GROWTH = 0.1
#: Rows fetched from SQLite at a time when reading the whole gallery.
READ_CHUNK = 20_000


class SQLiteStore(ErasingStore):
    """A gallery folder on this machine; nothing to install or configure.

    Args:
        folder: the gallery folder (created when missing).
        index: ``auto`` (exact search below ``index_min_faces`` faces, compressed ``pq``
            codes from there on; right for nearly everyone), or ``exact``, ``pq``, ``ivf``
            or ``hnsw`` to force a kind (:mod:`faceverify.gallery.index` compares them).
        index_min_faces: the size from which ``auto`` switches from exact search to ``pq``.
        background: rebuild a drifted index in a background thread (True) or inside the
            search that notices it (False: simpler for short scripts, slower there).
        probe_share: ``ivf`` only: share of the lists each search scans: the default 0.5
            found the exact best face for ≥ 0.99 of hard probes; 0.25 is about twice as
            fast at ~0.96, 0.125 four times at ~0.9 (``benchmarks/gallery_search.py``).
        busy_timeout: seconds a writer waits for another process's write to finish.
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        index: str = "auto",
        index_min_faces: int = INDEX_MIN_FACES,
        background: bool = True,
        probe_share: float = IVF_PROBE_SHARE,
        busy_timeout: float = BUSY_TIMEOUT_S,
    ) -> None:
        if not 0 < probe_share <= 1:
            raise GalleryError(
                f"probe_share {probe_share} must be above 0 and at most 1 (the default is 0.5)"
            )
        self.folder = Path(folder).expanduser()
        self.location = str(self.folder)
        self.index_kind = index if index == "auto" else check_kind(index)
        self.index_min_faces = index_min_faces
        self.background = background
        self.probe_share = probe_share
        self.busy_timeout = busy_timeout
        if self.folder.exists() and not self.folder.is_dir():
            raise GalleryError(
                f"gallery '{self.folder}' is a file; a gallery is a folder (it holds {DB_NAME})"
            )
        private_dir(self.folder)
        database = self.folder / DB_NAME
        if not database.exists():  # owner-only from the start; SQLite gives its WAL the same mode
            open_private(database).close()
        # One connection per thread: a connection's transaction belongs to whoever opened it,
        # so threads queue on SQLite's lock as processes do. The index cache is shared and
        # is brought up to date and searched under _index_lock.
        self._local = threading.local()
        self._handles: weakref.WeakSet[_Handle] = weakref.WeakSet()
        self._handles_lock = threading.Lock()
        self._closed = False
        self._index_lock = threading.Lock()
        self._index: FaceIndex | None = None
        self._synced_generation = -1
        self._names: dict[int, str] = {}  # person id -> name, filled as people are returned
        self._centroids: tuple[int, np.ndarray, np.ndarray] | None = None
        self._rebuilder: threading.Thread | None = None
        self._rebuild_failed = False
        with self._errors(), _transaction(self._db):
            create_schema(self._db)
            self.uuid = read_uuid(self._db)
        self._finish_erasures()  # a removal cut short by a crash is finished before any read

    @property
    def _db(self) -> sqlite3.Connection:
        """The calling thread's connection, opened on its first use."""
        handle: _Handle | None = getattr(self._local, "handle", None)
        if handle is None:
            if self._closed:
                raise GalleryError(f"gallery '{self.folder}' is closed; open it again")
            handle = _Handle(self._connect())
            self._local.handle = handle
            with self._handles_lock:
                self._handles.add(handle)
        return handle.db

    def _connect(self) -> sqlite3.Connection:
        with self._errors():
            # check_same_thread=False only so that close() may close every thread's connection
            db = sqlite3.connect(
                self.folder / DB_NAME,
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA secure_delete = ON")  # deleted rows are overwritten, not just freed
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")  # with WAL: durable against process crashes
        return db

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """SQLite's errors in words a user can act on."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise GalleryError(
                    f"gallery '{self.folder}' stayed locked by another process for {self.busy_timeout:g} s; "
                    "try again when it has finished"
                ) from exc
            raise GalleryError(f"gallery '{self.folder}': {exc}") from exc
        except sqlite3.IntegrityError as exc:
            raise GalleryError(
                f"gallery '{self.folder}' refused a change that breaks its rules ({exc})"
            ) from exc
        except sqlite3.DatabaseError as exc:
            if type(exc) is not sqlite3.DatabaseError:
                raise  # a subclass (ProgrammingError, InternalError...) is a bug, not a bad file
            # SQLite reports a corrupt file and a file that is no database with the base class
            raise GalleryError(
                f"gallery '{self.folder}' holds a corrupt database or another file as {DB_NAME} ({exc}); "
                "restore it from an export or move it away"
            ) from exc

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._errors(), _transaction(self._db):
            yield self._db
            self._db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")

    def manifest(self) -> dict[str, Any] | None:
        with self._errors():
            row = self._db.execute("SELECT value FROM meta WHERE key = 'manifest'").fetchone()
        return json.loads(row[0]) if row else None

    def bind(self, manifest: dict[str, Any]) -> None:
        with self._write() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'manifest'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('manifest', ?)", (json.dumps(manifest),))
            else:
                same_model(json.loads(row[0]), manifest)

    def add(
        self,
        name: str,
        faces: Iterable[Face],
        meta: dict[str, Any] | None,
        *,
        create: bool | None = None,
        change: Change | None = None,
    ) -> AddResult:
        manifest = self.manifest()
        if manifest is None:
            raise GalleryError("the gallery is not bound to a model yet; enrol through faceverify.Gallery")
        dim, where = int(manifest["embedding_dim"]), f"'{self.folder}'"
        with self._write() as db:
            return add_faces(db, name, faces, meta, dim=dim, create=create, change=change, location=where)

    @property
    def _where(self) -> str:
        return f"'{self.folder}'"

    def _remove(self, column: str, value: object, change: Change | None) -> tuple[str, int] | None:
        with self._write() as db:
            removed = remove_person(db, column, value, change)
        if removed is not None:
            self._finish_erasures()
        return removed

    def _finish_erasures(self) -> None:
        """Erase removed faces from the saved index files and from this process's index,
        then empty the write-ahead log of their old pages. The faces are noted in the
        removal's own transaction and marked done only once all of that succeeded, so
        what a crash or a busy log cut short is finished at the next removal, open or close.
        Never raises: the removal itself is committed whatever happens here."""
        try:
            with self._errors():
                pending = erased_faces(self._db, pending=True)
                if pending.size == 0:
                    return
                with self._index_lock:
                    scrub_saved(self.folder, pending, self.uuid)
                    if self._index is not None:
                        self._index.remove(pending)
                if self._checkpoint():
                    with _transaction(self._db):
                        mark_erased(self._db, pending)
        except (GalleryError, OSError) as exc:
            log.warning("gallery %s: erasing removed faces from its files is pending (%s)", self.folder, exc)

    def _checkpoint(self) -> bool:
        """Copy the WAL into the database and empty it (removed rows' old pages go with it);
        False while a reader keeps an old snapshot open."""
        # waits for readers a second at most: a removal must not stall behind a long rebuild
        self._db.execute(f"PRAGMA busy_timeout = {int(CHECKPOINT_WAIT_S * 1000)}")
        try:
            busy = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        finally:
            self._db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        return not busy

    def _saved_state(self) -> np.ndarray | None:
        """Read now, outside any snapshot: every removed face id, or None if this folder no
        longer holds this gallery (deleted and made again: nothing of ours is saved there)."""
        with contextlib.closing(
            sqlite3.connect(f"{(self.folder / DB_NAME).as_uri()}?mode=ro", uri=True)
        ) as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'uuid'").fetchone()
            if row is None or row[0] != self.uuid:
                return None
            return erased_faces(db, pending=False)

    def record(self, action: str, change: Change | None = None) -> None:
        with self._write() as db:
            write_audit(db, action, change)

    def audit(self, *, after: int = 0, limit: int = 1000) -> list[AuditEntry]:
        with self._errors():
            return read_audit(self._db, after, limit)

    def people(self) -> list[PersonInfo]:
        with self._errors():
            rows = self._db.execute(
                "SELECT p.id, p.name, COUNT(f.id), p.meta, p.created FROM people p "
                "LEFT JOIN faces f ON f.person_id = p.id GROUP BY p.id ORDER BY p.name"
            ).fetchall()
        return [PersonInfo(r[0], r[1], int(r[2]), json.loads(r[3]), r[4]) for r in rows]

    def faces_of(self, name: str) -> list[tuple[str, str, np.ndarray]]:
        with self._errors():
            rows = self._db.execute(
                "SELECT f.image_sha256, f.source, f.vector FROM faces f JOIN people p ON p.id = f.person_id "
                "WHERE p.name = ? ORDER BY f.id",
                (name,),
            ).fetchall()
        if not rows:
            raise unknown_person(name, self._where)
        return [(r[0], r[1], np.frombuffer(r[2], dtype="<f4")) for r in rows]

    def search(self, query: np.ndarray, top_k: int, match: str) -> list[Match]:
        # one snapshot for the sync and the search: the centroid path reads faces again
        with self._index_lock, self._snapshot():
            return self._search(self._sync(), query, top_k, match)

    def _search(self, index: FaceIndex, query: np.ndarray, top_k: int, match: str) -> list[Match]:
        if match == "centroid":
            owners, centroids = self._centroid_matrix()
            scores = centroids @ query if len(owners) else np.empty(0)
            order = np.argsort(-scores)[:top_k]
            return self._matches(owners[order], scores[order])
        if index.kind != "exact":
            index.probe_share = self.probe_share
            owners, scores = index.search(query, max(10 * top_k, 50))
            return self._matches(*_first_per_owner(owners, scores, top_k))
        people, best = index.best_per_owner(query)
        top = top_positions(best, top_k)
        return self._matches(people[top], best[top])

    def _matches(self, people: np.ndarray, scores: np.ndarray) -> list[Match]:
        """Name the people found. Names are read when first needed (a million of them take
        2 s to read at start) and kept: person ids are never reused, names never change."""
        ids: list[int] = people.tolist()
        wanted = [p for p in ids if p not in self._names]
        if wanted:
            marks = ",".join("?" * len(wanted))
            self._names.update(self._db.execute(f"SELECT id, name FROM people WHERE id IN ({marks})", wanted))
        return [Match(self._names[p], float(v)) for p, v in zip(ids, scores.tolist(), strict=True)]

    def _generation(self) -> int:
        with self._errors():
            return int(self._db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        """One read transaction: every read inside sees the same committed state.

        Without it each statement sees the newest commit, so faces read a moment after the
        generation (or the names) can belong to a person enrolled in between by another thread.
        """
        with self._errors():
            self._db.execute("BEGIN")  # deferred: WAL fixes the snapshot at the first read
            try:
                yield
            finally:
                self._db.execute("COMMIT")

    def _sync(self) -> FaceIndex:
        """The index, brought up to date with the database if another write happened.

        Called under ``_index_lock`` and inside one ``_snapshot``, like everything that reads
        the index and its caches.
        """
        generation = self._generation()
        if self._index is not None and generation == self._synced_generation:
            return self._index
        with self._errors():
            index = self._index
            if index is None:
                count = self._count()
                index = self._open_index(self._wanted_kind(count), count)
            count = self._catch_up(index)
        wanted = self._wanted_kind(count)
        self._index, self._synced_generation, self._centroids = index, generation, None
        reason = index.drift(count, wanted)
        if reason is not None:
            self._refresh(wanted, reason)
        elif index.saved_size and index.ids.size > (1 + RESAVE_GROWTH) * index.saved_size:
            self._save(index)  # later processes then read fewer new faces from SQLite
        return self._index

    def _count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM faces").fetchone()[0])

    def _dim(self) -> int:
        return int((self.manifest() or {}).get("embedding_dim", 1))

    def _wanted_kind(self, count: int) -> str:
        return choose_kind(count, self.index_min_faces) if self.index_kind == "auto" else self.index_kind

    def _open_index(self, kind: str, count: int) -> FaceIndex:
        """The saved index (of whatever kind; a wrong kind is rebuilt later), or a new one."""
        saved = FaceIndex.load(self.folder, self._dim(), self.uuid) if kind != "exact" else None
        if saved is not None:
            return saved
        if count >= LOUD_BUILD_FACES and kind != "exact":
            log.info(
                "gallery %s has no saved index yet: indexing %s faces once (later runs load it)",
                self.folder,
                f"{count:,}",
            )
        return self._build(kind, count)

    def _build(self, kind: str, count: int) -> FaceIndex:
        """A new index of every face in the current snapshot (progress bar on large galleries)."""
        with progress_bar(count >= LOUD_BUILD_FACES) as progress:
            ids, owners, vectors = self._read_faces("", (), progress, count)
            index = FaceIndex.build(self._dim(), kind, ids, owners, vectors, progress)
        if kind != "exact":
            self._save(index)
        return index

    def _save(self, index: FaceIndex) -> None:
        try:
            index.save(self.folder, self.uuid, erased=self._saved_state)
        except OSError as exc:  # a read-only folder: still searchable, rebuilt by the next process
            log.warning("gallery %s: could not save its index (%s); searches still work", self.folder, exc)

    def _refresh(self, kind: str, reason: str) -> None:
        """Rebuild a drifted index: in the background (searches go on) or right here."""
        if not self.background:
            with self._errors():
                self._index = self._build(kind, self._count())
            return
        if self._rebuild_failed or (self._rebuilder is not None and self._rebuilder.is_alive()):
            return
        log.info("gallery %s: rebuilding its index in the background (%s)", self.folder, reason)
        self._rebuilder = threading.Thread(
            target=self._rebuild_quietly, args=(kind,), name="faceverify-reindex", daemon=True
        )
        self._rebuilder.start()

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
        """Build a new index from a snapshot without holding the lock, then catch it up
        with what was written meanwhile and swap it in under the lock."""
        with self._errors(), self._snapshot():
            count = self._count()
            with progress_bar(progress is True) as bar:
                report = progress if callable(progress) else bar
                ids, owners, vectors = self._read_faces("", (), report, count)
                index = FaceIndex.build(self._dim(), kind, ids, owners, vectors, report)
        del vectors
        self._save(index)  # before anyone else can touch it: a consistent copy on disk
        with self._index_lock, self._snapshot(), self._errors():
            self._catch_up(index)
            self._index, self._synced_generation, self._centroids = index, self._generation(), None
        return index

    def reindex(self, *, progress: bool | Progress = False) -> FaceIndex:
        """Rebuild the index now, in this thread (of the kind the store's ``index`` option
        picks); other threads keep searching with the current index meanwhile.

        Args:
            progress: True shows a progress bar on stderr; a ``Progress`` callable
                (``stage, done, total``) receives the steps instead.

        Returns:
            The new index (``kind``, ``size``, ``memory_bytes()`` describe it).
        """
        self.wait_for_index()
        with self._errors(), self._snapshot():
            wanted = self._wanted_kind(self._count())
        return self._rebuild(wanted, progress=progress)

    def wait_for_index(self, timeout: float | None = None) -> bool:
        """Wait for a background rebuild to finish; False if it still runs after ``timeout`` s."""
        rebuilder = self._rebuilder
        if rebuilder is not None:
            rebuilder.join(timeout)
            return not rebuilder.is_alive()
        return True

    def _catch_up(self, index: FaceIndex) -> int:
        """Add faces newer than the index and tombstone removed ones; returns the number
        of faces stored (so that a large gallery is counted once, not twice)."""
        known, live = index.max_id, index.size
        ids, owners, vectors = self._read_faces("WHERE id > ?", (known,))
        index.add(ids, owners, vectors)
        # ids are never reused, so nothing was removed when the older faces all remain.
        # A plain COUNT(*) reads the small person index (5 ms at 1M faces); counting
        # "id <= known" walks the table's vector pages instead (0.5-1.5 s at 1M).
        older = self._count() - int(ids.size)
        if older != live:
            stored = np.fromiter((r[0] for r in self._db.execute("SELECT id FROM faces")), dtype=np.int64)
            index.remove(np.setdiff1d(index.ids[index.alive], stored, assume_unique=True))
        return older + int(ids.size)

    def _read_faces(
        self, where: str, args: tuple[Any, ...], progress: Progress | None = None, total: int = 0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cursor = self._db.execute(f"SELECT id, person_id, vector FROM faces {where} ORDER BY id", args)
        dim = self._dim()
        ids, owners, vectors = [np.empty(0, np.int64)], [np.empty(0, np.int64)], [np.empty((0, dim), "<f4")]
        while rows := cursor.fetchmany(READ_CHUNK):
            ids.append(np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)))
            owners.append(np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows)))
            vectors.append(np.frombuffer(b"".join(r[2] for r in rows), dtype="<f4").reshape(len(rows), dim))
            if progress is not None:
                progress("reading", sum(map(len, ids)), total)
        return np.concatenate(ids), np.concatenate(owners), np.concatenate(vectors)

    def _centroid_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """Each person's unit mean vector (exact over people; cached per generation)."""
        if self._centroids is None or self._centroids[0] != self._synced_generation:
            with self._errors():
                _, owners, vectors = self._read_faces("", ())
            self._centroids = (self._synced_generation, *unit_centroids(owners, vectors))
        return self._centroids[1], self._centroids[2]

    def _still_open(self, stage: str, done: int, total: int) -> None:
        """The background rebuild's progress callback: it stops there once the store closes."""
        if self._closed:
            raise _ClosedError

    def close(self) -> None:
        """Close every thread's connection; call it when no thread uses the store any more.

        A background rebuild still running is stopped at its next step and waited for
        first: closing a connection while another thread reads through it is undefined
        behaviour in SQLite (a crash, not an error). An erasure still pending is tried once more."""
        if not self._closed:
            self._finish_erasures()
        self._closed = True
        rebuilder = self._rebuilder
        if rebuilder is not None and rebuilder is not threading.current_thread():
            rebuilder.join(CLOSE_WAIT_S)
        with self._handles_lock:
            for handle in list(self._handles):
                handle.db.close()


class _ClosedError(Exception):
    """Raised inside a background rebuild once its store is closed."""


class _Handle:
    """Holds one thread's connection. When the thread ends, its handle is dropped and the
    connection closes with it (connections themselves cannot be weakly referenced)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    # IMMEDIATE takes the write lock up front: two writers queue instead of deadlocking
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _first_per_owner(owners: np.ndarray, scores: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each owner's first (best) face among faces sorted best first, for up to ``top_k`` owners."""
    _, first = np.unique(owners, return_index=True)
    first = np.sort(first)[:top_k]
    return owners[first], scores[first]
