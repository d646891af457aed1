"""The server gallery: PostgreSQL with pgvector, for galleries that outgrow one machine.

Chosen by a ``postgresql://`` URL. Faces live in one table with a ``vector(D)`` column
and an HNSW index using cosine distance, so searches stay fast at millions of faces and
any number of processes or machines can share the gallery. Each enrolment or removal is
one transaction, exactly as in the embedded gallery.

The HNSW graph is built with ``m`` = :data:`PG_HNSW_M` and ``ef_construction`` =
:data:`PG_HNSW_EF_CONSTRUCTION` (pgvector's defaults are 16 and 64): crowded face
embeddings need a denser graph. Search settings (per transaction, ``SET LOCAL``):
``hnsw.ef_search`` = :data:`PG_EF_SEARCH` (pgvector's default of 40 found the exact
nearest face for 73% of crowded face-like probes at 10k faces and 32% at 100k;
``benchmarks/gallery_search.py``), and on pgvector 0.8+
``hnsw.iterative_scan = relaxed_order`` so a query always gets the candidates it asks
for. Older pgvector (pgserver ships 0.6.2) has no iterative scans; the store checks the
installed version instead of failing on an unknown setting.

Server configuration for 1M+ faces (the HNSW graph must fit in memory to stay fast;
1M × 320-dim float32 vectors take 1.3 GB, the graph more than 2 GB at m = 32):
``shared_buffers`` ≥ the index size (``SELECT pg_size_pretty(pg_relation_size(
'faceverify_faces_hnsw'))``), ``effective_cache_size`` about 3/4 of RAM,
``maintenance_work_mem`` ≥ the index size while building (e.g. ``'4GB'``; a build that
overflows it becomes many times slower and says so in the log), and
``max_parallel_maintenance_workers`` = cores − 1 (pgvector ≥ 0.7 builds HNSW in
parallel). Bulk-load first and create the index after (``COPY``, then ``CREATE INDEX``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
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
    unknown_person_id,
)

#: Candidate faces fetched per wanted person in best-match mode (HNSW returns faces).
FACES_PER_PERSON = 10
#: HNSW graph degree and build breadth. On 100k face-like 320-dim faces (pgvector 0.6.2,
#: ef_search 1000) pgvector's defaults (16, 64) found the exact best face for 85.5% of
#: probes; (32, 128) for 97.5%, at 2.6× the build time (403 s on a busy 2-core machine).
PG_HNSW_M, PG_HNSW_EF_CONSTRUCTION = 32, 128
#: HNSW search breadth, pgvector's maximum: on face-like 320-dim vectors (pgvector 0.6.2,
#: m 16, ef_construction 64) recall@1 was 0.995 at 10k faces (0.985 at 400, 0.960 at 200)
#: and 0.855 at 100k faces (0.735 at 400): crowded faces need the widest search.
PG_EF_SEARCH = 1000
#: pgvector's ceiling for ``hnsw.ef_search``.
PG_EF_SEARCH_MAX = 1000
#: First pgvector release with ``hnsw.iterative_scan``.
ITERATIVE_SCAN_SINCE = (0, 8, 0)


def hnsw_index_sql() -> str:
    """The statement that creates the faces' HNSW index (when missing): run it after a
    bulk ``COPY`` instead of inserting a million faces into a live graph."""
    return (
        "CREATE INDEX IF NOT EXISTS faceverify_faces_hnsw ON faceverify_faces USING hnsw "
        f"(embedding vector_cosine_ops) WITH (m = {PG_HNSW_M}, ef_construction = {PG_HNSW_EF_CONSTRUCTION})"
    )


class PostgresStore(GalleryStore):
    """A gallery in a PostgreSQL database with the pgvector extension.

    Args:
        url: ``postgresql://user:password@host:port/database``.
    """

    def __init__(self, url: str) -> None:
        import psycopg

        self.location = _redact(url)
        try:
            self._db = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise GalleryError(f"cannot connect to PostgreSQL at {self.location}: {reason}") from exc
        with self._errors():
            self._db.execute("CREATE EXTENSION IF NOT EXISTS vector")
            self._create_meta()
            row = self._db.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
            self.pgvector_version = _version(row[0] if row else "0")
        self._dim: int | None = None
        manifest = self.manifest()
        if manifest is not None:
            self._create_tables(int(manifest["embedding_dim"]))

    @contextmanager
    def _errors(self) -> Iterator[None]:
        import psycopg

        try:
            yield
        except psycopg.errors.UndefinedFile as exc:
            raise GalleryError(
                f"PostgreSQL at {self.location} lacks the pgvector extension; install it (CREATE EXTENSION vector)"
            ) from exc
        except psycopg.OperationalError as exc:
            raise GalleryError(f"PostgreSQL at {self.location} failed: {str(exc).strip()}") from exc
        except psycopg.Error as exc:  # the server refused a statement: its own words say why
            message = exc.diag.message_primary or str(exc).strip() or type(exc).__name__
            raise GalleryError(f"PostgreSQL at {self.location} refused: {message}") from exc

    @contextmanager
    def _write(self) -> Iterator[Any]:
        with self._errors(), self._db.transaction():
            yield self._db

    def _create_meta(self) -> None:
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS faceverify_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )

    def _create_tables(self, dim: int) -> None:
        if self._dim == dim:
            return
        from pgvector.psycopg import register_vector

        with self._write() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS faceverify_people (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
                "meta JSONB NOT NULL DEFAULT '{}', created TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS faceverify_faces (id BIGSERIAL PRIMARY KEY, "
                "person_id BIGINT NOT NULL REFERENCES faceverify_people(id) ON DELETE CASCADE, "
                f"image_sha256 TEXT NOT NULL UNIQUE, source TEXT NOT NULL, embedding vector({dim}) NOT NULL, "
                "created TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            db.execute("CREATE INDEX IF NOT EXISTS faceverify_faces_person ON faceverify_faces (person_id)")
            db.execute(hnsw_index_sql())
        register_vector(self._db)
        self._dim = dim

    def manifest(self) -> dict[str, Any] | None:
        with self._errors():
            row = self._db.execute("SELECT value FROM faceverify_meta WHERE key = 'manifest'").fetchone()
        return json.loads(row[0]) if row else None

    def bind(self, manifest: dict[str, Any]) -> None:
        with self._write() as db:
            db.execute("LOCK TABLE faceverify_meta IN EXCLUSIVE MODE")  # one binder at a time
            row = db.execute("SELECT value FROM faceverify_meta WHERE key = 'manifest'").fetchone()
            if row is None:
                db.execute("INSERT INTO faceverify_meta VALUES ('manifest', %s)", (json.dumps(manifest),))
            else:
                same_model(json.loads(row[0]), manifest)
        self._create_tables(int(manifest["embedding_dim"]))

    def add(self, name: str, faces: Iterable[Face], meta: dict[str, Any] | None) -> AddResult:
        if self._dim is None:
            raise GalleryError("the gallery is not bound to a model yet; enrol through faceverify.Gallery")
        result = AddResult()
        with self._write() as db:
            row = db.execute(
                "INSERT INTO faceverify_people (name, meta) VALUES (%s, %s::jsonb) ON CONFLICT (name) "
                "DO UPDATE SET meta = faceverify_people.meta || EXCLUDED.meta RETURNING id, (xmax = 0)",
                (name, encode_meta(meta)),
            ).fetchone()
            person_id, created = row[0], bool(row[1])
            for face in faces:
                vector = check_vectors(face.vector, self._dim)[0]
                inserted = db.execute(
                    "INSERT INTO faceverify_faces (person_id, image_sha256, source, embedding) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT (image_sha256) DO NOTHING RETURNING id",
                    (person_id, face.image_sha256, face.source, vector),
                ).fetchone()
                if inserted is None:
                    result.skipped.append(
                        f"{face.source}: this image is already enrolled{self._owner(db, face, name)}"
                    )
                else:
                    result.added += 1
            if created and result.added == 0:
                raise nothing_enrolled(name, result.skipped)
        return result

    @staticmethod
    def _owner(db: Any, face: Face, name: str) -> str:
        row = db.execute(
            "SELECT p.name FROM faceverify_faces f JOIN faceverify_people p ON p.id = f.person_id "
            "WHERE f.image_sha256 = %s",
            (face.image_sha256,),
        ).fetchone()
        return "" if row is None or row[0] == name else f" as {row[0]!r}"

    def remove(self, name: str) -> int:
        removed = self._remove("name", name)
        if removed is None:
            raise unknown_person(name, self.location)
        return removed[1]

    def remove_id(self, person_id: int) -> tuple[str, int]:
        removed = self._remove("id", person_id)
        if removed is None:
            raise unknown_person_id(person_id, self.location)
        return removed

    def _remove(self, column: str, value: object) -> tuple[str, int] | None:
        """The removed person's name and face count, None if nobody matched."""
        with self._write() as db:
            row = db.execute(
                f"SELECT id, name FROM faceverify_people WHERE {column} = %s FOR UPDATE", (value,)
            ).fetchone()
            if row is None:
                return None
            count = db.execute("DELETE FROM faceverify_faces WHERE person_id = %s", (row[0],)).rowcount
            db.execute("DELETE FROM faceverify_people WHERE id = %s", (row[0],))
        return str(row[1]), int(count)

    def people(self) -> list[PersonInfo]:
        if self._dim is None:
            return []
        with self._errors():
            rows = self._db.execute(
                "SELECT p.id, p.name, COUNT(f.id), p.meta, p.created FROM faceverify_people p "
                "LEFT JOIN faceverify_faces f ON f.person_id = p.id GROUP BY p.id ORDER BY p.name"
            ).fetchall()
        return [PersonInfo(int(r[0]), r[1], int(r[2]), r[3], r[4].isoformat()) for r in rows]

    def faces_of(self, name: str) -> list[tuple[str, str, np.ndarray]]:
        rows = []
        if self._dim is not None:
            with self._errors():
                rows = self._db.execute(
                    "SELECT f.image_sha256, f.source, f.embedding FROM faceverify_faces f JOIN faceverify_people p "
                    "ON p.id = f.person_id WHERE p.name = %s ORDER BY f.id",
                    (name,),
                ).fetchall()
        if not rows:
            raise unknown_person(name, self.location)
        return [(r[0], r[1], _as_array(r[2])) for r in rows]

    def search(self, query: np.ndarray, top_k: int, match: str) -> list[Match]:
        if self._dim is None:
            return []
        q = np.asarray(query, dtype=np.float32)
        with self._errors(), self._db.transaction():
            if match == "centroid":
                # cosine ignores length, so the mean vector stands for the unit centroid
                rows = self._db.execute(
                    "SELECT p.name, 1 - (AVG(f.embedding) <=> %s) AS score FROM faceverify_faces f "
                    "JOIN faceverify_people p ON p.id = f.person_id GROUP BY p.name ORDER BY score DESC LIMIT %s",
                    (q, top_k),
                ).fetchall()
            else:
                fetch = FACES_PER_PERSON * top_k
                self._search_settings(fetch)
                rows = self._db.execute(
                    "SELECT p.name, MAX(c.score) AS score FROM (SELECT person_id, 1 - (embedding <=> %s) AS score "
                    "FROM faceverify_faces ORDER BY embedding <=> %s LIMIT %s) c "
                    "JOIN faceverify_people p ON p.id = c.person_id GROUP BY p.name ORDER BY score DESC LIMIT %s",
                    (q, q, fetch, top_k),
                ).fetchall()
        return [Match(r[0], float(r[1])) for r in rows]

    def _search_settings(self, fetch: int) -> None:
        """The session settings of one search transaction (see the module docstring)."""
        breadth = min(PG_EF_SEARCH_MAX, max(PG_EF_SEARCH, fetch))
        self._db.execute(f"SET LOCAL hnsw.ef_search = {breadth}")
        if self.pgvector_version >= ITERATIVE_SCAN_SINCE:
            self._db.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")

    def drop(self) -> None:
        """Delete every person, face and the model binding: an empty, unbound gallery."""
        with self._write() as db:
            db.execute("DROP TABLE IF EXISTS faceverify_faces, faceverify_people, faceverify_meta")
            self._create_meta()
        self._dim = None

    def close(self) -> None:
        self._db.close()


def _as_array(value: Any) -> np.ndarray:
    # pgvector returns its own Vector type (newer releases) or a numpy array (older ones)
    array = value.to_numpy() if hasattr(value, "to_numpy") else value
    return np.asarray(array, dtype=np.float32)


def _version(text: str) -> tuple[int, ...]:
    """``'0.6.2'`` as ``(0, 6, 2)``; unparsable parts count as 0."""
    return tuple(int(part) if part.isdigit() else 0 for part in text.split("."))


def _redact(url: str) -> str:
    """The URL without its password, for messages and logs."""
    head, sep, tail = url.partition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, credentials = head.partition("//")
    user = credentials.split(":", 1)[0]
    return f"{scheme}//{user}:***@{tail}"
