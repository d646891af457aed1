"""The embedded gallery: a folder with a SQLite database and a vector index.

SQLite (WAL mode) is the source of truth for people, faces, metadata and vectors. Each
enrolment or removal is one ``BEGIN IMMEDIATE`` transaction, so a crash or a kill leaves
the whole person or nothing, and several processes can read and write at once: writers
queue on SQLite's lock (for up to :data:`BUSY_TIMEOUT_S`) instead of losing writes.
Every write bumps a generation counter; a process whose index is older than the
database brings it up to date (new faces added, removed ones tombstoned) before it
searches, and saves HNSW indexes next to the database so the next process starts fast.
Threads of one process are as safe as processes: each has its own connection, and the
shared index cache is updated and searched under a lock.
"""

from __future__ import annotations

import json
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
    Face,
    GalleryStore,
    Match,
    PersonInfo,
    check_vectors,
    encode_meta,
    nothing_enrolled,
    same_model,
    unknown_person,
)
from faceverify.gallery.index import HNSW_MIN_FACES, REBUILD_TOMBSTONE_SHARE, FaceIndex, unit_centroids
from faceverify.gallery.index import top_k as top_positions
from faceverify.paths import timestamp

DB_NAME = "gallery.db"
INDEX_NAME = "hnsw.faiss"
BUSY_TIMEOUT_S = 30.0
SCHEMA_VERSION = "1"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS people (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    meta TEXT NOT NULL DEFAULT '{}',
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS faces (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: the index relies on growing ids
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    image_sha256 TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    vector BLOB NOT NULL,
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS faces_person ON faces(person_id);
"""


class SQLiteStore(GalleryStore):
    """A gallery folder on this machine; nothing to install or configure.

    Args:
        folder: the gallery folder (created when missing).
        hnsw_min_faces: from this many faces on, search uses HNSW instead of exact search.
        busy_timeout: seconds a writer waits for another process's write to finish.
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        hnsw_min_faces: int = HNSW_MIN_FACES,
        busy_timeout: float = BUSY_TIMEOUT_S,
    ) -> None:
        self.folder = Path(folder).expanduser()
        self.location = str(self.folder)
        self.hnsw_min_faces = hnsw_min_faces
        self.busy_timeout = busy_timeout
        if self.folder.exists() and not self.folder.is_dir():
            raise GalleryError(
                f"gallery '{self.folder}' is a file; a gallery is a folder (it holds {DB_NAME})"
            )
        self.folder.mkdir(parents=True, exist_ok=True)
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
        self._names: dict[int, str] = {}
        self._centroids: tuple[int, np.ndarray, np.ndarray] | None = None
        with self._errors(), _transaction(self._db):
            # statement by statement: executescript() would commit our transaction first
            for statement in filter(str.strip, _SCHEMA.split(";")):
                self._db.execute(statement)
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('generation', '0')")

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

    def add(self, name: str, faces: Iterable[Face], meta: dict[str, Any] | None) -> AddResult:
        manifest = self.manifest()
        if manifest is None:
            raise GalleryError("the gallery is not bound to a model yet; enrol through faceverify.Gallery")
        dim = int(manifest["embedding_dim"])
        result = AddResult()
        with self._write() as db:
            person_id, created = self._person_for_write(db, name, meta)
            for face in faces:
                vector = check_vectors(face.vector, dim)[0]
                owner = db.execute(
                    "SELECT p.name FROM faces f JOIN people p ON p.id = f.person_id WHERE f.image_sha256 = ?",
                    (face.image_sha256,),
                ).fetchone()
                if owner is not None:
                    whose = "" if owner[0] == name else f" as {owner[0]!r}"
                    result.skipped.append(f"{face.source}: this image is already enrolled{whose}")
                    continue
                db.execute(
                    "INSERT INTO faces (person_id, image_sha256, source, vector, created) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (person_id, face.image_sha256, face.source, vector.astype("<f4").tobytes(), timestamp()),
                )
                result.added += 1
            if created and result.added == 0:
                raise nothing_enrolled(name, result.skipped)
        return result

    @staticmethod
    def _person_for_write(db: sqlite3.Connection, name: str, meta: dict[str, Any] | None) -> tuple[int, bool]:
        row = db.execute("SELECT id, meta FROM people WHERE name = ?", (name,)).fetchone()
        if row is None:
            cursor = db.execute(
                "INSERT INTO people (name, meta, created) VALUES (?, ?, ?)",
                (name, encode_meta(meta), timestamp()),
            )
            return int(cursor.lastrowid or 0), True
        if meta:
            merged = {**json.loads(row[1]), **meta}
            db.execute("UPDATE people SET meta = ? WHERE id = ?", (encode_meta(merged), row[0]))
        return int(row[0]), False

    def remove(self, name: str) -> int:
        with self._write() as db:
            row = db.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise unknown_person(name, f"'{self.folder}'")
            count = db.execute("DELETE FROM faces WHERE person_id = ?", (row[0],)).rowcount
            db.execute("DELETE FROM people WHERE id = ?", (row[0],))
        return int(count)

    def people(self) -> list[PersonInfo]:
        with self._errors():
            rows = self._db.execute(
                "SELECT p.name, COUNT(f.id), p.meta, p.created FROM people p "
                "LEFT JOIN faces f ON f.person_id = p.id GROUP BY p.id ORDER BY p.name"
            ).fetchall()
        return [PersonInfo(name=r[0], faces=int(r[1]), meta=json.loads(r[2]), created=r[3]) for r in rows]

    def faces_of(self, name: str) -> list[tuple[str, str, np.ndarray]]:
        with self._errors():
            rows = self._db.execute(
                "SELECT f.image_sha256, f.source, f.vector FROM faces f JOIN people p ON p.id = f.person_id "
                "WHERE p.name = ? ORDER BY f.id",
                (name,),
            ).fetchall()
        if not rows:
            raise unknown_person(name, f"'{self.folder}'")
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
            return [Match(self._names[int(owners[i])], float(scores[i])) for i in order]
        if index.hnsw:
            owners, scores = index.search(query, max(10 * top_k, 50))
            return _first_per_owner(owners, scores, top_k, self._names)
        people, best = index.best_per_owner(query)
        return [Match(self._names[int(people[i])], float(best[i])) for i in top_positions(best, top_k)]

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
        dim = int((self.manifest() or {}).get("embedding_dim", 1))
        with self._errors():
            count = int(self._db.execute("SELECT COUNT(*) FROM faces").fetchone()[0])
            hnsw = count >= self.hnsw_min_faces
            index = self._index
            if index is None or index.hnsw != hnsw:
                index = (FaceIndex.load(self.folder / INDEX_NAME, dim) if hnsw else None) or FaceIndex(
                    dim, hnsw=hnsw
                )
            changed = self._catch_up(index)
            if index.tombstone_share > REBUILD_TOMBSTONE_SHARE:
                index, changed = FaceIndex(dim, hnsw=hnsw), True
                self._catch_up(index)
            self._names = dict(self._db.execute("SELECT id, name FROM people").fetchall())
        if changed and index.hnsw:
            index.save(self.folder / INDEX_NAME)
        self._index, self._synced_generation, self._centroids = index, generation, None
        return index

    def _catch_up(self, index: FaceIndex) -> bool:
        """Add faces newer than the index and tombstone removed ones; True if anything changed."""
        ids, owners, vectors = self._read_faces("WHERE id > ?", (index.max_id,))
        index.add(ids, owners, vectors)
        live = np.fromiter((r[0] for r in self._db.execute("SELECT id FROM faces")), dtype=np.int64)
        gone = np.setdiff1d(index.ids[index.alive], live, assume_unique=True)
        index.remove(gone)
        return bool(ids.size or gone.size)

    def _read_faces(self, where: str, args: tuple[Any, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = self._db.execute(
            f"SELECT id, person_id, vector FROM faces {where} ORDER BY id", args
        ).fetchall()
        dim = int((self.manifest() or {}).get("embedding_dim", 1))
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        owners = np.array([r[1] for r in rows], dtype=np.int64)
        vectors = np.frombuffer(b"".join(r[2] for r in rows), dtype="<f4").reshape(len(rows), dim)
        return ids, owners, vectors

    def _centroid_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """Each person's unit mean vector (exact over people; cached per generation)."""
        if self._centroids is None or self._centroids[0] != self._synced_generation:
            with self._errors():
                _, owners, vectors = self._read_faces("", ())
            self._centroids = (self._synced_generation, *unit_centroids(owners, vectors))
        return self._centroids[1], self._centroids[2]

    def close(self) -> None:
        """Close every thread's connection; call it when no thread uses the store any more."""
        self._closed = True
        with self._handles_lock:
            for handle in list(self._handles):
                handle.db.close()


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


def _first_per_owner(
    owners: np.ndarray, scores: np.ndarray, top_k: int, names: dict[int, str]
) -> list[Match]:
    matches: list[Match] = []
    seen: set[int] = set()
    for owner, score in zip(owners.tolist(), scores.tolist()):
        if owner not in seen:
            seen.add(owner)
            matches.append(Match(names[owner], float(score)))
            if len(matches) == top_k:
                break
    return matches
