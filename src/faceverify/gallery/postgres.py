"""The server gallery: PostgreSQL with pgvector, for galleries that outgrow one machine.

Chosen by a ``postgresql://`` URL. Faces live in one table with a ``vector(D)`` column
and an HNSW index using cosine distance, so searches stay fast at millions of faces and
any number of processes or machines can share the gallery. Each enrolment or removal is
one transaction with its audit entry (and its request key, when the caller gave one), so
a crash or an error leaves all of it or none.

Threads and processes: a store holds a small connection pool (``psycopg_pool``; at most
``pool_max`` connections, :data:`POOL_MAX` by default) and each call takes a connection
for its one transaction and gives it back, so one store serves many threads at once.
Whether a person exists is decided inside the transaction by the ``UNIQUE`` name (an
``INSERT ... ON CONFLICT DO NOTHING`` waits for a concurrent insert of the same name to
commit), so two processes enrolling one new name get one person and one
:class:`~faceverify.errors.PersonExistsError`. Every session has a ``statement_timeout``
(:data:`STATEMENT_TIMEOUT_S`) and a ``lock_timeout`` (:data:`LOCK_TIMEOUT_S`): a call
stuck behind a long transaction fails with a :class:`~faceverify.errors.GalleryError`
that says which limit it hit, instead of holding a service thread forever.

Erasure: a removal deletes the person's rows and faces in its transaction, and no query
sees them after it commits. PostgreSQL keeps the old row versions ("dead tuples") in the
table's and the HNSW index's files until ``VACUUM`` reclaims them; autovacuum does this
eventually, at a time of its choosing. When erased faces must be gone from disk now, run
``VACUUM faceverify_faces`` (and ``faceverify_people``) after the erasures: it removes the
dead tuples and their HNSW index entries (the space is reused, not returned to the
operating system); ``VACUUM FULL`` rewrites the tables and returns the space, but locks
the gallery while it runs. WAL segments and backups still hold the rows until they
rotate out, as for any PostgreSQL data.

The HNSW graph is built with ``m`` = :data:`PG_HNSW_M` and ``ef_construction`` =
:data:`PG_HNSW_EF_CONSTRUCTION` (pgvector's defaults are 16 and 64): crowded face
embeddings need a denser graph. Search settings (per transaction, ``SET LOCAL``):
``hnsw.ef_search`` = :data:`PG_EF_SEARCH` (pgvector's default of 40 misses the exact
nearest face for many crowded face-like probes; docs/benchmarks.md), and on pgvector 0.8+
``hnsw.iterative_scan = relaxed_order`` so a query always gets the candidates it asks
for. Older pgvector (pgserver ships 0.6.2) has no iterative scans; the store checks the
installed version instead of failing on an unknown setting.

Server configuration for 1M+ faces (the HNSW graph must fit in memory to stay fast;
1M × 320-dim float32 vectors take 1.3 GB, the graph more than 2 GB at m = 32):
``shared_buffers`` ≥ the index size (``SELECT pg_size_pretty(pg_relation_size(
'faceverify_faces_hnsw'))``), ``effective_cache_size`` about 3/4 of RAM,
``maintenance_work_mem`` ≥ the index size while building (e.g. ``'4GB'``; a build that
overflows it becomes many times slower and says so in the log), and
``max_parallel_maintenance_workers`` = cores − 1 (pgvector ≥ 0.6 builds HNSW in
parallel). Bulk-load first and create the index after (``COPY``, then ``CREATE INDEX``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
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
    check_vectors,
    duplicate,
    encode_meta,
    nothing_enrolled,
    person_exists,
    same_model,
    unknown_person,
)
from faceverify.gallery.pg_session import LOCK_TIMEOUT_S, STATEMENT_TIMEOUT_S, PgConnector
from faceverify.gallery.pg_tables import (
    ALL_TABLES,
    create_base_tables,
    read_audit,
    remember,
    replay,
    write_audit,
)

#: Candidate faces fetched per wanted person in best-match mode (HNSW returns faces).
FACES_PER_PERSON = 10
#: HNSW graph degree and build breadth: denser than pgvector's defaults (16, 64), which
#: lose crowded face probes at 100k faces; this costs a longer build (docs/benchmarks.md).
PG_HNSW_M, PG_HNSW_EF_CONSTRUCTION = 32, 128
#: HNSW search breadth, pgvector's maximum: crowded faces need the widest search (recall
#: falls with a narrower one, and more so as the gallery grows; docs/benchmarks.md).
PG_EF_SEARCH = 1000
#: pgvector's ceiling for ``hnsw.ef_search``.
PG_EF_SEARCH_MAX = 1000
#: First pgvector release with ``hnsw.iterative_scan``.
ITERATIVE_SCAN_SINCE = (0, 8, 0)
#: Connections a store keeps open at least and at most: a service thread waits for a free
#: one (up to the statement timeout) rather than opening more.
POOL_MIN, POOL_MAX = 1, 4


def hnsw_index_sql() -> str:
    """The statement that creates the faces' HNSW index (when missing): run it after a
    bulk ``COPY`` instead of inserting a million faces into a live graph."""
    return (
        "CREATE INDEX IF NOT EXISTS faceverify_faces_hnsw ON faceverify_faces USING hnsw "
        f"(embedding vector_cosine_ops) WITH (m = {PG_HNSW_M}, ef_construction = {PG_HNSW_EF_CONSTRUCTION})"
    )


class PostgresStore(ErasingStore):
    """A gallery in a PostgreSQL database with the pgvector extension; safe to share
    between threads (see the module docstring).

    Args:
        url: ``postgresql://user:password@host:port/database``.
        statement_timeout: seconds a statement may run before it is cancelled.
        lock_timeout: seconds a statement may wait for another session's lock.
        pool_min, pool_max: connections kept open at least, and opened at most.
    """

    def __init__(
        self,
        url: str,
        *,
        statement_timeout: float = STATEMENT_TIMEOUT_S,
        lock_timeout: float = LOCK_TIMEOUT_S,
        pool_min: int = POOL_MIN,
        pool_max: int = POOL_MAX,
    ) -> None:
        self._link = PgConnector(url, statement_timeout, lock_timeout)
        self.location = self._link.location
        self._dim: int | None = None
        with self._link.connect() as db:
            manifest = self._setup(db)
        self._pool = self._link.pool(pool_min, pool_max, vector=True)
        try:
            if manifest is not None:
                self._create_tables(int(manifest["embedding_dim"]))
        except BaseException:
            self._pool.close()  # its worker thread and connections would outlive the failure
            raise

    def _setup(self, db: Any) -> dict[str, Any] | None:
        """Install pgvector and the bookkeeping tables; read the uuid, the pgvector
        version and the manifest. Returns the manifest."""
        with self._link.errors(), db.transaction():
            # first opens of one database at once would collide in CREATE ... IF NOT EXISTS
            db.execute("SELECT pg_advisory_xact_lock(hashtext('faceverify setup'))")
            db.execute("CREATE EXTENSION IF NOT EXISTS vector")
            self.uuid = create_base_tables(db)
            row = db.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
            self.pgvector_version = _version(row[0] if row else "0")
            manifest = db.execute("SELECT value FROM faceverify_meta WHERE key = 'manifest'").fetchone()
        return json.loads(manifest[0]) if manifest else None

    def connection(self) -> AbstractContextManager[Any]:
        """A pooled connection (autocommit) for maintenance, e.g. ``VACUUM faceverify_faces``
        after erasures or a bulk ``COPY``; it goes back to the pool afterwards."""
        return self._pool.session()

    def _write(self) -> AbstractContextManager[Any]:
        """A connection inside one transaction: committed at the end, rolled back on error."""
        return self._pool.transaction()

    def _create_tables(self, dim: int) -> None:
        if self._dim == dim:
            return
        with self._write() as db:
            # only when missing: CREATE INDEX IF NOT EXISTS would still lock out writers. In
            # this schema, not one further down the search path.
            present = db.execute(
                "SELECT to_regclass(format('%I.faceverify_faces_hnsw', current_schema())) IS NOT NULL "
                "AND to_regclass(format('%I.faceverify_faces_person', current_schema())) IS NOT NULL"
            ).fetchone()[0]
            if not present:
                _create_face_tables(db, dim)
        self._dim = dim

    def _bound(self) -> int | None:
        """The embedding size, None while unbound; an unbound store looks again each time,
        since another process may have bound the gallery meanwhile."""
        if self._dim is None:
            manifest = self.manifest()
            if manifest is not None:
                self._create_tables(int(manifest["embedding_dim"]))
        return self._dim

    def manifest(self) -> dict[str, Any] | None:
        with self.connection() as db:
            row = db.execute("SELECT value FROM faceverify_meta WHERE key = 'manifest'").fetchone()
        return json.loads(row[0]) if row else None

    def bind(self, manifest: dict[str, Any]) -> None:
        dim = int(manifest["embedding_dim"])
        with self._write() as db:
            db.execute("LOCK TABLE faceverify_meta IN EXCLUSIVE MODE")  # one binder at a time
            row = db.execute("SELECT value FROM faceverify_meta WHERE key = 'manifest'").fetchone()
            if row is None:
                db.execute("INSERT INTO faceverify_meta VALUES ('manifest', %s)", (json.dumps(manifest),))
            else:
                same_model(json.loads(row[0]), manifest)
            _create_face_tables(db, dim)
        self._dim = dim

    def add(
        self,
        name: str,
        faces: Iterable[StoredFace],
        meta: dict[str, Any] | None,
        *,
        create: bool | None = None,
        change: Change | None = None,
    ) -> AddResult:
        dim = self._bound()
        if dim is None:
            raise GalleryError("the gallery is not bound to a model yet; enrol through faceverify.Gallery")
        with self._write() as db:
            replayed = replay(db, change)
            if replayed is not None:
                return replayed  # the first answer; nothing is written
            person_id, created = self._person(db, name, meta, create)
            result = self._add_faces(db, dim, name, person_id, faces)
            if created and result.added == 0:
                raise nothing_enrolled(name, result.skipped)
            write_audit(db, change, "enrol" if created else "add", person_id, result.added)
            remember(db, change, result)
        return result

    def _person(
        self, db: Any, name: str, meta: dict[str, Any] | None, create: bool | None
    ) -> tuple[int, bool]:
        """The person's id, and whether this transaction made them.

        A new name is inserted under the ``UNIQUE`` constraint: an insert racing another
        transaction's insert of the same name waits for it to commit, then sees the
        conflict, so the loser of the race learns the person exists.
        """
        values = (name, encode_meta(meta))
        if create:
            row = db.execute(
                "INSERT INTO faceverify_people (name, meta) VALUES (%s, %s::jsonb) "
                "ON CONFLICT (name) DO NOTHING RETURNING id",
                values,
            ).fetchone()
            if row is None:
                raise person_exists(name, self.location)
            return int(row[0]), True
        if create is False:
            row = db.execute(
                "UPDATE faceverify_people SET meta = meta || %s::jsonb WHERE name = %s RETURNING id",
                values[::-1],
            ).fetchone()
            if row is None:
                raise unknown_person(name, self.location)
            return int(row[0]), False
        row = db.execute(
            "INSERT INTO faceverify_people (name, meta) VALUES (%s, %s::jsonb) ON CONFLICT (name) "
            "DO UPDATE SET meta = faceverify_people.meta || EXCLUDED.meta RETURNING id, (xmax = 0)",
            values,
        ).fetchone()
        return int(row[0]), bool(row[1])

    def _add_faces(
        self, db: Any, dim: int, name: str, person_id: int, faces: Iterable[StoredFace]
    ) -> AddResult:
        result = AddResult(person_id=person_id)
        for face in faces:
            vector = check_vectors(face.vector, dim)[0]
            inserted = db.execute(
                "INSERT INTO faceverify_faces (person_id, image_sha256, source, embedding) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (image_sha256) DO NOTHING RETURNING id",
                (person_id, face.image_sha256, face.source, vector),
            ).fetchone()
            if inserted is None:
                result.skipped.append(duplicate(face.source, self._owner(db, face), name))
            else:
                result.added += 1
        return result

    @staticmethod
    def _owner(db: Any, face: StoredFace) -> str | None:
        """Who holds this face's image already (None: nobody, or gone meanwhile)."""
        row = db.execute(
            "SELECT p.name FROM faceverify_faces f JOIN faceverify_people p ON p.id = f.person_id "
            "WHERE f.image_sha256 = %s",
            (face.image_sha256,),
        ).fetchone()
        return None if row is None else str(row[0])

    def _remove(self, column: str, value: object, change: Change | None) -> tuple[str, int] | None:
        """The erased person's name and face count, None if nobody matched."""
        from psycopg import sql

        if self._bound() is None:
            return None
        with self._write() as db:
            row = db.execute(
                sql.SQL("SELECT id, name FROM faceverify_people WHERE {} = %s FOR UPDATE").format(
                    sql.Identifier(column)
                ),
                (value,),
            ).fetchone()
            if row is None:
                return None
            count = db.execute("DELETE FROM faceverify_faces WHERE person_id = %s", (row[0],)).rowcount
            db.execute("DELETE FROM faceverify_requests WHERE person_id = %s", (row[0],))
            db.execute("DELETE FROM faceverify_people WHERE id = %s", (row[0],))
            write_audit(db, change, "erase", int(row[0]), int(count))
        return str(row[1]), int(count)

    def remove_faces(self, name: str, image_sha256: Sequence[str], *, change: Change | None = None) -> int:
        if self._bound() is None:
            raise unknown_person(name, self.location)
        with self._write() as db:
            row = db.execute(
                "SELECT id FROM faceverify_people WHERE name = %s FOR UPDATE", (name,)
            ).fetchone()
            if row is None:
                raise unknown_person(name, self.location)
            count = db.execute(
                "DELETE FROM faceverify_faces WHERE person_id = %s AND image_sha256 = ANY(%s)",
                (row[0], list(image_sha256)),
            ).rowcount
            if count:
                write_audit(db, change, "remove", int(row[0]), int(count))
        return int(count)

    dialect = "postgres"

    def sql_write(self) -> AbstractContextManager[Any]:
        return self._write()

    def sql_read(self) -> AbstractContextManager[Any]:
        return self._snapshot()

    @contextmanager
    def _snapshot(self) -> Iterator[Any]:
        """One REPEATABLE READ transaction: every read inside sees the same committed state."""
        with self._write() as db:
            db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield db

    def record(self, action: str, change: Change | None = None) -> None:
        with self._write() as db:
            write_audit(db, change, action)

    def audit(self, *, after: int = 0, limit: int = 1000) -> list[AuditEntry]:
        with self.connection() as db:
            return read_audit(db, int(after), int(limit))

    def people(self) -> list[PersonInfo]:
        if self._bound() is None:
            return []
        with self.connection() as db:
            rows = db.execute(
                "SELECT p.id, p.name, COUNT(f.id), p.meta, p.created FROM faceverify_people p "
                "LEFT JOIN faceverify_faces f ON f.person_id = p.id GROUP BY p.id ORDER BY p.name"
            ).fetchall()
        return [PersonInfo(int(r[0]), r[1], int(r[2]), r[3], r[4].isoformat()) for r in rows]

    def faces_of(self, name: str) -> list[tuple[str, str, np.ndarray]]:
        rows = []
        if self._bound() is not None:
            with self.connection() as db:
                rows = db.execute(
                    "SELECT f.image_sha256, f.source, f.embedding FROM faceverify_faces f JOIN faceverify_people p "
                    "ON p.id = f.person_id WHERE p.name = %s ORDER BY f.id",
                    (name,),
                ).fetchall()
        if not rows:
            raise unknown_person(name, self.location)
        return [(r[0], r[1], _as_array(r[2])) for r in rows]

    def search(self, query: np.ndarray, top_k: int, match: str) -> list[Match]:
        if self._bound() is None:
            return []
        q = np.asarray(query, dtype=np.float32)
        with self._write() as db:  # a transaction, for the SET LOCAL search settings
            if match == "centroid":
                # cosine ignores length, so the mean vector stands for the unit centroid
                rows = db.execute(
                    "SELECT p.name, 1 - (AVG(f.embedding) <=> %s) AS score FROM faceverify_faces f "
                    "JOIN faceverify_people p ON p.id = f.person_id GROUP BY p.name ORDER BY score DESC LIMIT %s",
                    (q, top_k),
                ).fetchall()
            else:
                fetch = FACES_PER_PERSON * top_k
                self._search_settings(db, fetch)
                rows = db.execute(
                    "SELECT p.name, MAX(c.score) AS score FROM (SELECT person_id, 1 - (embedding <=> %s) AS score "
                    "FROM faceverify_faces ORDER BY embedding <=> %s LIMIT %s) c "
                    "JOIN faceverify_people p ON p.id = c.person_id GROUP BY p.name ORDER BY score DESC LIMIT %s",
                    (q, q, fetch, top_k),
                ).fetchall()
        return [Match(r[0], float(r[1])) for r in rows]

    def _search_settings(self, db: Any, fetch: int) -> None:
        """The session settings of one search transaction (see the module docstring)."""
        breadth = min(PG_EF_SEARCH_MAX, max(PG_EF_SEARCH, fetch))
        db.execute(f"SET LOCAL hnsw.ef_search = {int(breadth)}")
        if self.pgvector_version >= ITERATIVE_SCAN_SINCE:
            db.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")

    def drop(self) -> None:
        """Delete every person, face, the model binding, the audit log and the request keys:
        an empty, unbound gallery with a new uuid."""
        with self._write() as db:
            db.execute(f"DROP TABLE IF EXISTS {ALL_TABLES}")
            uuid = create_base_tables(db)
        self._dim, self.uuid = None, uuid

    def close(self) -> None:
        """Close the pool and its connections (a call after this is a :class:`GalleryError`)."""
        self._pool.close()


def _create_face_tables(db: Any, dim: int) -> None:
    db.execute(
        "CREATE TABLE IF NOT EXISTS faceverify_people (id BIGSERIAL PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
        "meta JSONB NOT NULL DEFAULT '{}', created TIMESTAMPTZ NOT NULL DEFAULT now())"
    )
    db.execute(
        "CREATE TABLE IF NOT EXISTS faceverify_faces (id BIGSERIAL PRIMARY KEY, "
        "person_id BIGINT NOT NULL REFERENCES faceverify_people(id) ON DELETE CASCADE, "
        f"image_sha256 TEXT NOT NULL UNIQUE, source TEXT NOT NULL, embedding vector({int(dim)}) NOT NULL, "
        "created TIMESTAMPTZ NOT NULL DEFAULT now())"
    )
    db.execute("CREATE INDEX IF NOT EXISTS faceverify_faces_person ON faceverify_faces (person_id)")
    db.execute(hnsw_index_sql())


def _as_array(value: Any) -> np.ndarray:
    # pgvector returns its own Vector type (newer releases) or a numpy array (older ones)
    array = value.to_numpy() if hasattr(value, "to_numpy") else value
    return np.asarray(array, dtype=np.float32)


def _version(text: str) -> tuple[int, ...]:
    """``'0.6.2'`` as ``(0, 6, 2)``; unparsable parts count as 0."""
    return tuple(int(part) if part.isdigit() else 0 for part in text.split("."))
