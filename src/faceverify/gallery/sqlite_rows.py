"""What one transaction of the embedded gallery writes: people, faces, the audit log,
request keys and pending erasures; and how its index reads the faces back.

Each writing function takes the connection of a transaction already open (see
:class:`~faceverify.gallery.sqlite.SQLiteStore`), so a person, their faces, the audit entry
and the request key commit together or not at all. The audit log holds person ids, never
names, vectors or photo hashes: once someone is erased nothing in it identifies them.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from faceverify.gallery.base import (
    LIBRARY_ACTOR,
    AddResult,
    AuditEntry,
    Change,
    StoredFace,
    check_vectors,
    duplicate,
    encode_meta,
    nothing_enrolled,
    person_exists,
    replayed_or_conflict,
    unknown_person,
)
from faceverify.gallery.index import Progress
from faceverify.paths import timestamp

SCHEMA_VERSION = "1"
#: Rows fetched at a time when reading the whole gallery.
READ_CHUNK = 20_000
SCHEMA = """
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
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    person_id INTEGER,
    faces INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS requests (  -- idempotency keys (a person's go when they are erased)
    key TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    answer TEXT NOT NULL,
    person_id INTEGER NOT NULL,
    created TEXT NOT NULL
);
-- ids of removed faces (numbers only): done = 1 once the saved index files and the WAL
-- hold nothing of them. Kept after that, so that an index saved from an older snapshot
-- (a background rebuild, another process) drops them before it is written.
CREATE TABLE IF NOT EXISTS erasures (face_id INTEGER PRIMARY KEY, done INTEGER NOT NULL DEFAULT 0)
"""


def create_schema(db: sqlite3.Connection) -> None:
    """The tables, and the gallery's schema version and uuid on first creation."""
    for statement in filter(str.strip, SCHEMA.split(";")):  # executescript() would commit
        db.execute(statement)
    db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
    db.execute("INSERT OR IGNORE INTO meta VALUES ('generation', '0')")
    db.execute("INSERT OR IGNORE INTO meta VALUES ('uuid', ?)", (str(uuid.uuid4()),))


def read_uuid(db: sqlite3.Connection) -> str:
    return str(db.execute("SELECT value FROM meta WHERE key = 'uuid'").fetchone()[0])


def add_faces(
    db: sqlite3.Connection,
    name: str,
    faces: Iterable[StoredFace],
    meta: dict[str, Any] | None,
    *,
    dim: int,
    create: bool | None,
    change: Change | None,
    location: str,
) -> AddResult:
    """Store a person's faces (see :meth:`GalleryStore.add`) inside the open transaction."""
    replay = replayed_or_conflict(change, _stored_request(db, change))
    if replay is not None:
        return replay
    person_id, created = _person_for_write(db, name, meta, create, location)
    result = AddResult(person_id=person_id)
    for face in faces:
        vector = check_vectors(face.vector, dim)[0]
        owner = db.execute(
            "SELECT p.name FROM faces f JOIN people p ON p.id = f.person_id WHERE f.image_sha256 = ?",
            (face.image_sha256,),
        ).fetchone()
        if owner is not None:
            result.skipped.append(duplicate(face.source, owner[0], name))
            continue
        db.execute(
            "INSERT INTO faces (person_id, image_sha256, source, vector, created) VALUES (?, ?, ?, ?, ?)",
            (person_id, face.image_sha256, face.source, vector.astype("<f4").tobytes(), timestamp()),
        )
        result.added += 1
    if created and result.added == 0:
        raise nothing_enrolled(name, result.skipped)
    write_audit(db, "enrol" if created else "add", change, person_id, result.added)
    if change is not None and change.request_key is not None:
        db.execute(
            "INSERT INTO requests VALUES (?, ?, ?, ?, ?)",
            (change.request_key, change.fingerprint, result.to_json(), person_id, timestamp()),
        )
    return result


def _stored_request(db: sqlite3.Connection, change: Change | None) -> tuple[str, str] | None:
    if change is None or change.request_key is None:
        return None
    row = db.execute(
        "SELECT fingerprint, answer FROM requests WHERE key = ?", (change.request_key,)
    ).fetchone()
    return None if row is None else (str(row[0]), str(row[1]))


def _person_for_write(
    db: sqlite3.Connection, name: str, meta: dict[str, Any] | None, create: bool | None, location: str
) -> tuple[int, bool]:
    row = db.execute("SELECT id, meta FROM people WHERE name = ?", (name,)).fetchone()
    if row is None:
        if create is False:
            raise unknown_person(name, location)
        cursor = db.execute(
            "INSERT INTO people (name, meta, created) VALUES (?, ?, ?)",
            (name, encode_meta(meta), timestamp()),
        )
        return int(cursor.lastrowid or 0), True
    if create:
        raise person_exists(name, location)
    if meta:
        merged = {**json.loads(row[1]), **meta}
        db.execute("UPDATE people SET meta = ? WHERE id = ?", (encode_meta(merged), row[0]))
    return int(row[0]), False


def remove_person(
    db: sqlite3.Connection, column: str, value: object, change: Change | None
) -> tuple[str, int] | None:
    """Delete the person whose ``column`` (``name`` or ``id``) is ``value`` and their faces,
    note the faces as pending erasure from the index files, and audit it; returns their
    name and face count, or None if nobody matched."""
    row = db.execute(f"SELECT id, name FROM people WHERE {column} = ?", (value,)).fetchone()
    if row is None:
        return None
    person_id = int(row[0])
    face_ids = [r[0] for r in db.execute("SELECT id FROM faces WHERE person_id = ?", (person_id,))]
    db.executemany("INSERT OR IGNORE INTO erasures (face_id) VALUES (?)", ((i,) for i in face_ids))
    db.execute("DELETE FROM faces WHERE person_id = ?", (person_id,))
    db.execute("DELETE FROM requests WHERE person_id = ?", (person_id,))  # their answers name files
    db.execute("DELETE FROM people WHERE id = ?", (person_id,))
    write_audit(db, "erase", change, person_id, len(face_ids))
    return str(row[1]), len(face_ids)


def remove_faces(
    db: sqlite3.Connection, name: str, keys: Iterable[str], change: Change | None, location: str
) -> int:
    """Delete these faces of ``name`` (by ``image_sha256``), note them as pending erasure
    from the index files and audit it; the person stays. Returns how many went."""
    row = db.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise unknown_person(name, location)
    person_id, wanted = int(row[0]), list(keys)
    ids: list[int] = []
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        marks = ",".join("?" * len(chunk))
        ids += [
            r[0]
            for r in db.execute(
                f"SELECT id FROM faces WHERE person_id = ? AND image_sha256 IN ({marks})", (person_id, *chunk)
            )
        ]
    if not ids:
        return 0
    db.executemany("INSERT OR IGNORE INTO erasures (face_id) VALUES (?)", ((i,) for i in ids))
    db.executemany("DELETE FROM faces WHERE id = ?", ((i,) for i in ids))
    write_audit(db, "remove", change, person_id, len(ids))
    return len(ids)


def erased_faces(db: sqlite3.Connection, *, pending: bool) -> np.ndarray:
    """Ids of removed faces: those still to scrub from the files (``pending``), or all."""
    query = "SELECT face_id FROM erasures" + (" WHERE done = 0" if pending else "")
    return np.fromiter((r[0] for r in db.execute(query)), dtype=np.int64)


def erased_faces_now(database: Path, gallery_uuid: str) -> np.ndarray | None:
    """Read now, outside any snapshot: every removed face id, or None if the file no
    longer holds this gallery (deleted and made again: nothing of ours is saved there)."""
    with contextlib.closing(sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True)) as db:
        row = db.execute("SELECT value FROM meta WHERE key = 'uuid'").fetchone()
        if row is None or row[0] != gallery_uuid:
            return None
        return erased_faces(db, pending=False)


def mark_erased(db: sqlite3.Connection, face_ids: np.ndarray) -> None:
    db.executemany("UPDATE erasures SET done = 1 WHERE face_id = ?", ((int(i),) for i in face_ids))


def write_audit(
    db: sqlite3.Connection, action: str, change: Change | None, person_id: int | None = None, faces: int = 0
) -> None:
    actor = change.actor if change is not None else LIBRARY_ACTOR
    db.execute(
        "INSERT INTO audit (time, actor, action, person_id, faces) VALUES (?, ?, ?, ?, ?)",
        (timestamp(), actor, action, person_id, faces),
    )


def read_audit(db: sqlite3.Connection, after: int, limit: int) -> list[AuditEntry]:
    rows = db.execute(
        "SELECT seq, time, actor, action, person_id, faces FROM audit WHERE seq > ? ORDER BY seq LIMIT ?",
        (after, limit),
    )
    return [AuditEntry(int(r[0]), r[1], r[2], r[3], r[4], int(r[5])) for r in rows]


def read_generation(db: sqlite3.Connection) -> int:
    """The counter every write transaction bumps."""
    return int(db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()[0])


def count_faces(db: sqlite3.Connection) -> int:
    # a plain COUNT(*) reads the small person index, not the table's vector pages
    return int(db.execute("SELECT COUNT(*) FROM faces").fetchone()[0])


def face_ids(db: sqlite3.Connection) -> np.ndarray:
    return np.fromiter((r[0] for r in db.execute("SELECT id FROM faces")), dtype=np.int64)


def read_faces(
    db: sqlite3.Connection, dim: int, after: int = 0, progress: Progress | None = None, total: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """StoredFace ids, owners and vectors of every face whose id is above ``after``, by id,
    read :data:`READ_CHUNK` rows at a time (``progress`` gets ``reading`` steps of ``total``)."""
    cursor = db.execute("SELECT id, person_id, vector FROM faces WHERE id > ? ORDER BY id", (after,))
    ids, owners, vectors = [np.empty(0, np.int64)], [np.empty(0, np.int64)], [np.empty((0, dim), "<f4")]
    while rows := cursor.fetchmany(READ_CHUNK):
        ids.append(np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)))
        owners.append(np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows)))
        vectors.append(np.frombuffer(b"".join(r[2] for r in rows), dtype="<f4").reshape(len(rows), dim))
        if progress is not None:
            progress("reading", sum(map(len, ids)), total)
    return np.concatenate(ids), np.concatenate(owners), np.concatenate(vectors)
