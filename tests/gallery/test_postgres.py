"""The server gallery's own failures: an unreachable server, and statements it refuses."""

from __future__ import annotations

import pytest

from faceverify.errors import GalleryError
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

    from faceverify.gallery.base import Face
    from faceverify.gallery.postgres import ITERATIVE_SCAN_SINCE
    from faceverify.gallery.synthetic import FaceSpace

    space = FaceSpace(16)
    centres = space.identities(300, seed=1)
    vectors, probes = space.photos(centres, seed=2), space.photos(centres[:30], seed=3)
    with PostgresStore(pg_url) as store:
        store.drop()
        store.bind(MANIFEST)
        try:
            assert store.pgvector_version >= (0, 5, 0)
            for i, vector in enumerate(vectors):
                store.add(f"p{i}", [Face(vector, f"h{i}", "x")], None)
            truth = [f"p{i}" for i in np.argmax(probes @ vectors.T, axis=1)]
            assert [store.search(p, 1, "best")[0].name for p in probes] == truth
            setting = store._db.execute(
                "SELECT count(*) FROM pg_settings WHERE name = 'hnsw.iterative_scan'"
            ).fetchone()[0]
            assert bool(setting) == (store.pgvector_version >= ITERATIVE_SCAN_SINCE)
        finally:
            store.drop()
