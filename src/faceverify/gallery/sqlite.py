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
process starts fast; :class:`~faceverify.gallery.index_cache.IndexCache` keeps it in step
with the database, and rebuilds it when it drifts (in the background while searches go on)
or on demand (``faceverify reindex``, :meth:`SQLiteStore.reindex`). This module holds the
SQL: the store's side of that cache is :class:`_FacesTable`.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from faceverify.errors import GalleryError
from faceverify.gallery.base import (
    AddResult,
    AuditEntry,
    Change,
    ErasingStore,
    Match,
    PersonInfo,
    StoredFace,
    same_model,
    unknown_person,
)
from faceverify.gallery.index import INDEX_MIN_FACES, IVF_PROBE_SHARE, FaceIndex, Progress, scrub_saved
from faceverify.gallery.index_cache import Faces, IndexCache, IndexOptions
from faceverify.gallery.sqlite_rows import (
    add_faces,
    count_faces,
    create_schema,
    erased_faces,
    erased_faces_now,
    face_ids,
    mark_erased,
    read_audit,
    read_faces,
    read_generation,
    read_uuid,
    remove_faces,
    remove_person,
    write_audit,
)
from faceverify.paths import open_private, private_dir

log = logging.getLogger(__name__)

DB_NAME = "gallery.db"
#: How long emptying the WAL after a removal waits for readers (then it is left for later).
CHECKPOINT_WAIT_S = 1.0
BUSY_TIMEOUT_S = 30.0


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
            finds the exact best face nearly always; scanning less is faster and misses
            more (``docs/benchmarks.md``).
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
        options = IndexOptions(index, index_min_faces, background, probe_share)
        self.folder = Path(folder).expanduser()
        self.location = str(self.folder)
        self.index_kind = index
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
        # so threads queue on SQLite's lock as processes do. The index cache is shared: it
        # is brought up to date and searched under its own lock.
        self._local = threading.local()
        self._handles: weakref.WeakSet[_Handle] = weakref.WeakSet()
        self._handles_lock = threading.Lock()
        self._closed = False
        self._names: dict[int, str] = {}  # person id -> name, filled as people are returned
        with self._errors(), _transaction(self._db):
            create_schema(self._db)
            self.uuid = read_uuid(self._db)
        self._cache = IndexCache(_FacesTable(self), self.folder, self.uuid, options)
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
        faces: Iterable[StoredFace],
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
                scrub_saved(self.folder, pending, self.uuid)
                self._cache.forget(pending)
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

    def remove_faces(self, name: str, image_sha256: Sequence[str], *, change: Change | None = None) -> int:
        with self._write() as db:
            removed = remove_faces(db, name, image_sha256, change, self._where)
        if removed:
            self._finish_erasures()
        return removed

    dialect = "sqlite"

    def sql_write(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._write()

    def sql_read(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._reading()

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._snapshot():
            yield self._db

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
        # one snapshot for the index's catch-up, the centroids and the names
        with self._cache.current() as index:
            if match == "centroid":
                owners, centroids = self._cache.centroids()
                scores = centroids @ query if len(owners) else np.empty(0)
                order = np.argsort(-scores)[:top_k]
                return self._matches(owners[order], scores[order])
            return self._matches(*index.best_owners(query, top_k))

    def _matches(self, people: np.ndarray, scores: np.ndarray) -> list[Match]:
        """Name the people found. Names are read when first needed (reading them all would
        slow every start of a large gallery) and kept: person ids are never reused, names
        never change."""
        ids: list[int] = people.tolist()
        wanted = [p for p in ids if p not in self._names]
        if wanted:
            marks = ",".join("?" * len(wanted))
            self._names.update(self._db.execute(f"SELECT id, name FROM people WHERE id IN ({marks})", wanted))
        return [Match(self._names[p], float(v)) for p, v in zip(ids, scores.tolist(), strict=True)]

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

    def _dim(self) -> int:
        return int((self.manifest() or {}).get("embedding_dim", 1))

    def reindex(self, *, progress: bool | Progress = False) -> FaceIndex:
        """Rebuild the index now, in this thread (of the kind the store's ``index`` option
        picks); other threads keep searching with the current index meanwhile.

        Args:
            progress: True shows a progress bar on stderr; a ``Progress`` callable
                (``stage, done, total``) receives the steps instead.

        Returns:
            The new index (``kind``, ``size``, ``memory_bytes()`` describe it).
        """
        return self._cache.reindex(progress=progress)

    def wait_for_index(self, timeout: float | None = None) -> bool:
        """Wait for a background rebuild to finish; False if it still runs after ``timeout`` s."""
        return self._cache.wait_for_index(timeout)

    def close(self) -> None:
        """Close every thread's connection; call it when no thread uses the store any more.

        A background rebuild still running is stopped at its next step and waited for
        first: closing a connection while another thread reads through it is undefined
        behaviour in SQLite (a crash, not an error). An erasure still pending is tried once more."""
        if not self._closed:
            self._finish_erasures()
        self._closed = True
        self._cache.close()
        with self._handles_lock:
            for handle in list(self._handles):
                handle.db.close()


class _FacesTable:
    """The faces table as the store's :class:`IndexCache` reads it (its
    :class:`~faceverify.gallery.index_cache.FaceSource`), through the calling thread's
    connection."""

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    def snapshot(self) -> AbstractContextManager[None]:
        return self._store._snapshot()

    def generation(self) -> int:
        return read_generation(self._store._db)

    def count(self) -> int:
        return count_faces(self._store._db)

    def dim(self) -> int:
        return self._store._dim()

    def faces(self, after: int = 0, progress: Progress | None = None, total: int = 0) -> Faces:
        return read_faces(self._store._db, self.dim(), after, progress, total)

    def face_ids(self) -> np.ndarray:
        return face_ids(self._store._db)

    def erased(self) -> np.ndarray | None:
        return erased_faces_now(self._store.folder / DB_NAME, self._store.uuid)


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
