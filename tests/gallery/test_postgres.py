"""The server gallery on a real PostgreSQL: its failures, create-only enrolment and request
keys across connections, the audit log and its archive, timeouts, and the pool."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import numpy as np
import pytest

from faceverify.errors import GalleryError, IdempotencyError, PersonExistsError, UnknownPersonError
from faceverify.gallery.base import AddResult, Change
from faceverify.gallery.catalog import PostgresCatalog
from faceverify.gallery.postgres import PostgresStore
from tests.gallery.conftest import MANIFEST, faces


def test_unreachable_postgres_names_the_server_not_the_password() -> None:
    with pytest.raises(
        GalleryError, match=r"cannot connect to PostgreSQL at postgresql://me:\*\*\*@127.0.0.1:1/db"
    ) as info:
        PostgresStore("postgresql://me:secret@127.0.0.1:1/db")
    assert "secret" not in str(info.value)


def test_a_statement_the_server_refuses_is_a_gallery_error_in_its_words(pg_url: str) -> None:
    import psycopg

    with PostgresStore(pg_url) as store:
        store.drop()
        store.bind(MANIFEST)
        with psycopg.connect(pg_url, autocommit=True) as admin:  # a rule the store does not know
            admin.execute(
                "CREATE OR REPLACE FUNCTION faceverify_test_frozen() RETURNS trigger AS "
                "$$ BEGIN RAISE EXCEPTION 'faces are frozen'; END $$ LANGUAGE plpgsql"
            )
            admin.execute(
                "CREATE TRIGGER frozen BEFORE INSERT ON faceverify_faces "
                "FOR EACH ROW EXECUTE FUNCTION faceverify_test_frozen()"
            )
        try:
            with pytest.raises(GalleryError, match=r"PostgreSQL at .* refused: faces are frozen"):
                store.add("alice", faces(1, 1, "a"), None)
            assert store.people() == []  # the transaction was rolled back
        finally:
            store.drop()
            with psycopg.connect(pg_url, autocommit=True) as admin:
                admin.execute("DROP FUNCTION IF EXISTS faceverify_test_frozen()")


def test_search_settings_fit_the_installed_pgvector_and_find_the_nearest_face(pg_url: str) -> None:
    """ef_search is raised, and iterative scans are only asked of pgvector versions that have them."""
    import numpy as np

    from faceverify.gallery.base import StoredFace
    from faceverify.gallery.postgres import ITERATIVE_SCAN_SINCE
    from faceverify.gallery.synthetic_vectors import FaceSpace

    space = FaceSpace(16)
    centres = space.identities(300, seed=1)
    vectors, probes = space.photos(centres, seed=2), space.photos(centres[:30], seed=3)
    with PostgresStore(pg_url) as store:
        store.drop()
        store.bind(MANIFEST)
        try:
            assert store.pgvector_version >= (0, 5, 0)
            for i, vector in enumerate(vectors):
                store.add(f"p{i}", [StoredFace(vector, f"h{i}", "x")], None)
            truth = [f"p{i}" for i in np.argmax(probes @ vectors.T, axis=1)]
            assert [store.search(p, 1, "best")[0].name for p in probes] == truth
            with store.connection() as db:
                query = "SELECT count(*) FROM pg_settings WHERE name = 'hnsw.iterative_scan'"
                setting = db.execute(query).fetchone()[0]
            assert bool(setting) == (store.pgvector_version >= ITERATIVE_SCAN_SINCE)
        finally:
            store.drop()


# --- shared by the tests below -------------------------------------------------------


@pytest.fixture
def bound_url(pg_url: str) -> Iterator[str]:
    """The public schema as an empty gallery bound to the test model (emptied afterwards)."""
    with PostgresStore(pg_url) as store:
        store.drop()
        store.bind(MANIFEST)
    yield pg_url
    with PostgresStore(pg_url) as store:
        store.drop()


@pytest.fixture
def catalog(pg_url: str) -> Iterator[PostgresCatalog]:
    """A catalogue in the test database; the galleries a test leaves are deleted after it."""
    opened = PostgresCatalog(pg_url)
    yield opened
    for name in opened.names():
        opened.delete(name)
    opened.close()


def _raw(db: Any, table: str) -> str:
    """Every row of a table as PostgreSQL prints it, for checks that nothing leaks."""
    return "\n".join(row[0] for row in db.execute(f"SELECT t::text FROM {table} t").fetchall())


def _wait_for_waiters(admin: Any, count: int) -> None:
    """Until ``count`` sessions wait for a lock: then they are all inside their transactions."""
    deadline = time.monotonic() + 10
    while admin.execute("SELECT count(*) FROM pg_locks WHERE NOT granted").fetchone()[0] < count:
        assert time.monotonic() < deadline, "the writers never queued for the lock"
        time.sleep(0.01)


def _at_once(
    calls: list[Callable[[], Any]], hold: Callable[[], Any], release: Callable[[], Any]
) -> list[Any]:
    """Run ``calls`` in threads that all block behind ``hold`` until every one waits; each
    call's result, or the GalleryError it raised."""
    outcomes: list[Any] = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(i: int) -> None:
        barrier.wait()
        try:
            outcomes[i] = calls[i]()
        except GalleryError as exc:
            outcomes[i] = exc

    hold()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    try:
        release()
    finally:
        for thread in threads:
            thread.join(30)
    return outcomes


# --- create-only enrolment across connections ------------------------------------------


def test_two_stores_enrolling_one_new_name_at_once_make_one_person(bound_url: str) -> None:
    """Both transactions are open at once (held behind a table lock): the UNIQUE name
    decides, so one enrols and the other learns the person exists; no faces merge."""
    import psycopg

    with (
        PostgresStore(bound_url) as first,
        PostgresStore(bound_url) as second,
        psycopg.connect(bound_url, autocommit=True) as admin,
    ):
        calls = [
            lambda: first.add("alice", faces(2, 1, "first"), None, create=True),
            lambda: second.add("alice", faces(2, 2, "second"), None, create=True),
        ]
        outcomes = _at_once(
            calls,
            hold=lambda: admin.execute("BEGIN; LOCK TABLE faceverify_people IN EXCLUSIVE MODE"),
            release=lambda: (_wait_for_waiters(admin, 2), admin.execute("COMMIT")),
        )
        won = [o for o in outcomes if isinstance(o, AddResult)]
        lost = [o for o in outcomes if isinstance(o, PersonExistsError)]
        assert len(won) == 1 and len(lost) == 1, outcomes
        assert "'alice' is already enrolled" in str(lost[0])
        winner = "first" if outcomes[0] is won[0] else "second"
        (alice,) = first.people()
        assert (alice.name, alice.faces, alice.id) == ("alice", 2, won[0].person_id)
        assert {source.split("/")[0] for _, source, _ in second.faces_of("alice")} == {winner}
        assert [(e.action, e.person_id, e.faces) for e in first.audit()] == [("enrol", alice.id, 2)]


def test_create_false_needs_the_person_and_create_true_refuses_them(bound_url: str) -> None:
    with PostgresStore(bound_url) as store:
        with pytest.raises(UnknownPersonError, match="no person named 'bob'"):
            store.add("bob", faces(1, 1, "b"), None, create=False)
        assert store.people() == [] and store.audit() == []
        enrolled = store.add("bob", faces(1, 1, "b"), {"team": "red"}, create=True)
        more = store.add("bob", faces(1, 2, "c"), {"desk": 4}, create=False)
        assert more.person_id == enrolled.person_id and more.added == 1
        with pytest.raises(PersonExistsError):
            store.add("bob", faces(1, 3, "d"), None, create=True)
        (bob,) = store.people()
        assert (bob.faces, bob.meta) == (2, {"team": "red", "desk": 4})
        assert [e.action for e in store.audit()] == ["enrol", "add"]


# --- request keys ---------------------------------------------------------------------


def test_a_retried_request_key_replays_the_first_answer_and_writes_nothing(bound_url: str) -> None:
    import psycopg

    retry = Change(actor="key:k1", request_key="req-1", fingerprint="fp-1")
    with PostgresStore(bound_url) as store:
        first = store.add("bob", faces(2, 1, "b"), None, create=True, change=retry)
        again = store.add("bob", faces(2, 1, "b"), None, create=True, change=retry)
        assert not first.replayed and again.replayed
        assert (again.added, again.skipped, again.person_id) == (first.added, first.skipped, first.person_id)
        with pytest.raises(IdempotencyError, match="'req-1' was used before for a different request"):
            store.add("bob", faces(1, 9, "x"), None, change=Change("key:k1", "req-1", "fp-other"))
        assert store.people()[0].faces == 2
        assert [(e.action, e.actor) for e in store.audit()] == [("enrol", "key:k1")]
    with psycopg.connect(bound_url, autocommit=True) as admin:
        rows = admin.execute("SELECT key, fingerprint FROM faceverify_requests").fetchall()
    assert rows == [("req-1", "fp-1")]


def test_concurrent_retries_with_one_key_write_once(bound_url: str) -> None:
    """Both retries are inside their transactions, queued on the key's lock, before
    either looks the key up: the second finds the first's answer."""
    import psycopg

    retry = Change(actor="key:k1", request_key="req-2", fingerprint="fp")
    with (
        PostgresStore(bound_url) as first,
        PostgresStore(bound_url) as second,
        psycopg.connect(bound_url, autocommit=True) as admin,
    ):
        key_lock = "hashtext('public'), hashtext('req-2')"
        outcomes = _at_once(
            [
                partial(store.add, "carol", faces(2, 5, "c"), None, create=True, change=retry)
                for store in (first, second)
            ],
            hold=lambda: admin.execute(f"SELECT pg_advisory_lock({key_lock})"),
            release=lambda: (
                _wait_for_waiters(admin, 2),
                admin.execute(f"SELECT pg_advisory_unlock({key_lock})"),
            ),
        )
        assert all(isinstance(o, AddResult) for o in outcomes), outcomes
        assert sorted(o.replayed for o in outcomes) == [False, True]
        assert {(o.added, o.person_id) for o in outcomes} == {(2, first.people()[0].id)}
        assert [e.action for e in first.audit()] == ["enrol"]
        assert admin.execute("SELECT count(*) FROM faceverify_requests").fetchone()[0] == 1


# --- audit log, archive, uuid ---------------------------------------------------------


def test_a_scripted_session_leaves_exactly_its_audit_trail_and_no_names(catalog: PostgresCatalog) -> None:
    name = "Zoë Quartermaine"
    catalog.create("audited", change=Change(actor="cli:ann"))
    with catalog.open("audited") as store:
        store.bind(MANIFEST)
        enrolled = store.add(name, faces(2, 1, "photo"), None, create=True, change=Change(actor="key:k1"))
        store.add(name, faces(1, 2, "more"), None, create=False, change=Change(actor="key:k2"))
        assert store.remove(name, change=Change(actor="cli:bob")) == 3
        gallery_uuid = store.uuid
        trail = [(e.action, e.actor, e.person_id, e.faces) for e in store.audit()]
        with store.connection() as db:
            raw = _raw(db, "faceverify_audit")
        seqs = [e.seq for e in store.audit()]
        assert [e.seq for e in store.audit(after=seqs[1], limit=1)] == [seqs[2]]
    pid = enrolled.person_id
    assert trail == [
        ("create", "cli:ann", None, 0),
        ("enrol", "key:k1", pid, 2),
        ("add", "key:k2", pid, 1),
        ("erase", "cli:bob", pid, 3),
    ]
    assert seqs == sorted(seqs)
    for secret in ("Zoë", "Quartermaine", "photo-0", "more-0"):
        assert secret not in raw
    assert catalog.uuid("audited") == gallery_uuid

    catalog.delete("audited", change=Change(actor="key:admin"))
    assert not catalog.exists("audited") and catalog.uuid("audited") is None
    archived = [e for e in catalog.deleted_audit("audited") if e["uuid"] == gallery_uuid]
    assert [(e["action"], e["actor"], e["person_id"], e["faces"]) for e in archived] == [
        *trail,
        ("delete", "key:admin", None, 0),
    ]
    assert all(e["gallery"] == "audited" and e["time"] for e in archived)
    assert [e["seq"] for e in archived] == sorted(e["seq"] for e in archived)
    assert archived[0] in [e for e in catalog.deleted_audit() if e["uuid"] == gallery_uuid]
    with catalog._pool.session() as db:
        assert "Quartermaine" not in _raw(db, "public.faceverify_audit_archive")


def test_a_gallery_made_again_under_its_old_name_has_a_new_uuid(catalog: PostgresCatalog) -> None:
    catalog.create("again")
    with catalog.open("again") as store:
        first = store.uuid
    assert catalog.uuid("again") == first and len(first) == 36
    catalog.delete("again")
    assert catalog.uuid("again") is None
    catalog.create("again")
    second = catalog.uuid("again")
    assert second is not None and second != first
    assert {e["uuid"] for e in catalog.deleted_audit("again")} >= {first}
    with catalog.open("again") as store:
        store.drop()  # a reset gallery is a new one too
        assert store.uuid not in (first, second) and catalog.uuid("again") == store.uuid


def test_old_archived_audit_logs_are_swept_at_construction(pg_url: str, catalog: PostgresCatalog) -> None:
    with catalog._pool.session() as db:
        for gallery, days in (("ancient", 400), ("recent", 100)):
            db.execute(
                "INSERT INTO public.faceverify_audit_archive (gallery, uuid, deleted, entry) VALUES "
                '(%s, \'u\', now() - make_interval(days => %s), \'{"seq": 1, "action": "delete"}\')',
                (gallery, days),
            )
    PostgresCatalog(pg_url).close()  # keeps AUDIT_DAYS = 365
    assert [e["gallery"] for e in catalog.deleted_audit("ancient")] == []
    assert [e["gallery"] for e in catalog.deleted_audit("recent")] == ["recent"]
    PostgresCatalog(pg_url, audit_days=50).close()
    assert catalog.deleted_audit("recent") == []
    with pytest.raises(GalleryError, match="audit_days must be a number of days"):
        PostgresCatalog(pg_url, audit_days=-1)


# --- timeouts and the pool ------------------------------------------------------------


def test_a_remove_behind_another_sessions_row_lock_fails_within_lock_timeout(bound_url: str) -> None:
    import psycopg

    with PostgresStore(bound_url, lock_timeout=0.3) as store, psycopg.connect(bound_url) as other:
        store.add("alice", faces(1, 1, "a"), None)
        other.execute("SELECT id FROM faceverify_people WHERE name = 'alice' FOR UPDATE")  # holds it
        started = time.monotonic()
        with pytest.raises(
            GalleryError, match=r"waited more than 0.3 s \(lock_timeout\).*nothing was changed"
        ):
            store.remove("alice")
        assert time.monotonic() - started < 5
        other.rollback()
        assert store.people()[0].name == "alice"
        assert store.remove("alice") == 1
        assert [e.action for e in store.audit()] == ["enrol", "erase"]


def test_opening_a_store_does_not_wait_for_writes_in_progress(bound_url: str) -> None:
    """Opening a bound gallery runs no DDL once its tables exist (CREATE INDEX IF NOT EXISTS
    would wait for, and then block, every writer)."""
    import psycopg

    with psycopg.connect(bound_url) as writer:  # a transaction left open, holding its locks
        (person,) = writer.execute(
            "INSERT INTO faceverify_people (name) VALUES ('mid-enrolment') RETURNING id"
        ).fetchone()
        writer.execute(
            "INSERT INTO faceverify_faces (person_id, image_sha256, source, embedding) "
            "VALUES (%s, 'h', 's', %s)",
            (person, str([1.0] * MANIFEST["embedding_dim"])),
        )
        with PostgresStore(bound_url, lock_timeout=0.3) as store:
            assert store.people() == []
        writer.rollback()


def test_a_statement_past_statement_timeout_is_cancelled_with_a_clear_error(bound_url: str) -> None:
    with PostgresStore(bound_url, statement_timeout=0.2) as store:
        with (
            pytest.raises(GalleryError, match=r"ran longer than 0.2 s \(statement_timeout\)"),
            store.connection() as db,
        ):
            db.execute("SELECT pg_sleep(3)")
        assert store.people() == []  # the connection went back to the pool in working order


def test_limits_and_pool_sizes_are_checked(pg_url: str) -> None:
    with pytest.raises(GalleryError, match="lock_timeout must be a positive number of seconds, not 0"):
        PostgresStore("postgresql://me@127.0.0.1:1/db", lock_timeout=0)
    with pytest.raises(GalleryError, match="pool_max=0 are not valid"):
        PostgresStore(pg_url, pool_min=0, pool_max=0)


def test_one_store_serves_many_threads_through_its_pool(bound_url: str) -> None:
    """More threads than connections: each call borrows one and gives it back."""
    store = PostgresStore(bound_url, pool_max=2)
    barrier, errors = threading.Barrier(8), []

    def work(i: int) -> None:
        barrier.wait()
        try:
            store.add(f"p{i}", faces(2, i, f"p{i}"), None, create=True)
            for _ in range(5):
                store.search(faces(1, i, f"p{i}")[0].vector, 3, "best")
                store.people()
        except Exception as exc:  # collected: an assertion in a thread would be lost
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert [(p.name, p.faces) for p in store.people()] == [(f"p{i}", 2) for i in range(8)]
    query = faces(1, 3, "p3")[0].vector
    assert store.search(query / np.linalg.norm(query), 1, "best")[0].name == "p3"
    store.close()
    with pytest.raises(GalleryError):
        store.people()
