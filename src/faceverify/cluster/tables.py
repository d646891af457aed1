"""The photo library's tables, in the gallery's own database (SQLite or PostgreSQL).

A library lives beside the gallery it names people in, so that naming a group, erasing a
person and the audit log are one system: a group named by the user points at a gallery
person (``person_id``), and erasing that person erases the group and every face in it
(``ON DELETE CASCADE``), vectors included. Photos stay listed (by content hash) so that the
next scan does not find their faces again.

Tables (``library_*`` in SQLite, ``faceverify_library_*`` in PostgreSQL, one :data:`SCHEMA`):

* ``photos``: one row per file: path, content SHA-256, size and modification time (a
  re-scan reads only files whose size or time changed, and hashes only those), status
  (``ok``, ``no_face``, ``failed``, ``duplicate``) and why.
* ``faces``: every face of a photo: box, landmarks, detector score, quality, the vector,
  its group (NULL: alone or too poor to group), ``pinned`` (the user put it there: no run
  moves it), ``enrolled`` (it is one of its named group's faces in the gallery) and
  ``placed``, how the last run placed it (:data:`PLACED`).
* ``groups``: a person found by clustering; ``person_id`` once named; ``anchored`` once
  the user shaped it (such groups never merge by themselves).
* ``rejections``: "not this person": a face that must never join a group.
* ``apart``: pairs of groups the user split or kept apart.
* ``meta``: the thresholds and the model of the last run.

Every function takes a connection inside the caller's transaction (see
:meth:`~faceverify.gallery.base.GalleryStore.sql_write`) and writes ``?`` placeholders;
:class:`Sql` adapts names and placeholders to the store's dialect.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from faceverify.errors import GalleryError

#: The tables, in either dialect: ``{key}`` (the id column), ``{int}``, ``{real}``, ``{blob}``
#: and the table names are filled in by :meth:`Sql.create`.
SCHEMA = """
CREATE TABLE IF NOT EXISTS {meta} (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS {photos} (
    id {key},
    path TEXT NOT NULL UNIQUE,
    sha256 TEXT NOT NULL,
    size {int} NOT NULL,
    mtime {real} NOT NULL,
    width INTEGER NOT NULL DEFAULT 0,
    height INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    scanned TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS {photos}_sha ON {photos}(sha256);
CREATE TABLE IF NOT EXISTS {groups} (
    id {key},
    person_id {int} UNIQUE REFERENCES {people}(id) ON DELETE CASCADE,
    anchored INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS {faces} (
    id {key},
    photo_id {int} NOT NULL REFERENCES {photos}(id) ON DELETE CASCADE,
    key TEXT NOT NULL UNIQUE,
    box TEXT NOT NULL,
    landmarks TEXT NOT NULL,
    score {real} NOT NULL,
    quality {real} NOT NULL,
    vector {blob} NOT NULL,
    group_id {int} REFERENCES {groups}(id) ON DELETE CASCADE,
    pinned INTEGER NOT NULL DEFAULT 0,
    enrolled INTEGER NOT NULL DEFAULT 0,
    placed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS {faces}_photo ON {faces}(photo_id);
CREATE INDEX IF NOT EXISTS {faces}_group ON {faces}(group_id);
CREATE TABLE IF NOT EXISTS {rejections} (
    face_id {int} NOT NULL REFERENCES {faces}(id) ON DELETE CASCADE,
    group_id {int} NOT NULL REFERENCES {groups}(id) ON DELETE CASCADE,
    PRIMARY KEY (face_id, group_id)
);
CREATE TABLE IF NOT EXISTS {apart} (
    a {int} NOT NULL REFERENCES {groups}(id) ON DELETE CASCADE,
    b {int} NOT NULL REFERENCES {groups}(id) ON DELETE CASCADE,
    PRIMARY KEY (a, b)
)
"""
#: How a run placed a face (the ``placed`` column): not grouped yet, left alone, grouped with
#: others, or attached to a group by the second pass (a run adding faces places those again).
PLACED = {"new": 0, "alone": 1, "grouped": 2, "attached": 3}
#: Column types per dialect (ids are never reused: SQLite's AUTOINCREMENT, PostgreSQL's sequences).
_TYPES = {
    "sqlite": {"key": "INTEGER PRIMARY KEY AUTOINCREMENT", "int": "INTEGER", "real": "REAL", "blob": "BLOB"},
    "postgres": {
        "key": "BIGSERIAL PRIMARY KEY",
        "int": "BIGINT",
        "real": "DOUBLE PRECISION",
        "blob": "BYTEA",
    },
}


@dataclass(frozen=True)
class Sql:
    """Statements in one dialect: ``{photos}``-style names and ``?`` placeholders."""

    dialect: str

    def __post_init__(self) -> None:
        if self.dialect not in ("sqlite", "postgres"):
            raise GalleryError(f"photo libraries need SQLite or PostgreSQL, not {self.dialect!r}")

    def names(self) -> dict[str, str]:
        prefix = "library_" if self.dialect == "sqlite" else "faceverify_library_"
        names = {t: prefix + t for t in ("meta", "photos", "faces", "groups", "rejections", "apart")}
        return {**names, "people": "people" if self.dialect == "sqlite" else "faceverify_people"}

    def __call__(self, statement: str) -> str:
        text = statement.format(**self.names())
        return text if self.dialect == "sqlite" else text.replace("?", "%s")

    def run(self, db: Any, statement: str, params: Sequence[Any] = ()) -> Any:
        return db.execute(self(statement), tuple(params))

    def rows(self, db: Any, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(db.execute(self(statement), tuple(params)).fetchall())

    def many(self, db: Any, statement: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = [tuple(r) for r in rows]
        if not rows:
            return
        if self.dialect == "sqlite":
            db.executemany(self(statement), rows)
        else:
            with db.cursor() as cursor:
                cursor.executemany(self(statement), rows)

    def exists(self, db: Any) -> bool:
        """Whether the library's tables are there (the last one :meth:`create` makes)."""
        if self.dialect == "sqlite":
            found = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'library_apart'")
        else:
            found = db.execute(
                "SELECT 1 WHERE to_regclass(format('%I.faceverify_library_apart', current_schema())) "
                "IS NOT NULL"
            )
        return found.fetchone() is not None

    def create(self, db: Any) -> None:
        schema = SCHEMA.format(**self.names(), **_TYPES[self.dialect])
        for statement in filter(str.strip, schema.split(";")):
            db.execute(statement)


def vector_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def read_meta(sql: Sql, db: Any, key: str) -> Any:
    row = sql.rows(db, "SELECT value FROM {meta} WHERE key = ?", (key,))
    return json.loads(row[0][0]) if row else None


def write_meta(sql: Sql, db: Any, key: str, value: Any) -> None:
    sql.run(db, "DELETE FROM {meta} WHERE key = ?", (key,))
    sql.run(db, "INSERT INTO {meta} (key, value) VALUES (?, ?)", (key, json.dumps(value)))


def new_group(sql: Sql, db: Any, timestamp: str, *, anchored: bool = False) -> int:
    row = sql.rows(
        db, "INSERT INTO {groups} (anchored, created) VALUES (?, ?) RETURNING id", (int(anchored), timestamp)
    )
    return int(row[0][0])


def in_chunks(values: Sequence[Any], size: int = 500) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def marks(count: int) -> str:
    return ",".join("?" * count)
