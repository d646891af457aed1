"""One behaviour, two backends: the same tests on SQLite and on PostgreSQL + pgvector."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from faceverify.errors import GalleryError, ModelMismatchError, UnknownPersonError
from faceverify.gallery.base import GalleryStore, StoredFace
from tests.gallery.conftest import DIM, MANIFEST, faces, open_backend


def test_manifest_is_recorded_and_other_models_refused(store: GalleryStore) -> None:
    assert store.manifest() == MANIFEST
    store.bind(dict(MANIFEST))  # the same model again is fine
    with pytest.raises(ModelMismatchError, match="weights_sha256: gallery 'w' vs model 'other'"):
        store.bind({**MANIFEST, "weights_sha256": "other"})


def test_people_faces_and_metadata(store: GalleryStore) -> None:
    added = store.add("alice", faces(3, 1, "a"), {"team": "red"})
    assert (added.added, added.skipped) == (3, [])
    store.add("alice", faces(1, 2, "a2"), {"desk": "4"})
    store.add("bob", faces(1, 3, "b"), None)
    people = {p.name: p for p in store.people()}
    assert sorted(people) == ["alice", "bob"]
    assert people["alice"].faces == 4
    assert people["alice"].meta == {"team": "red", "desk": "4"}
    stored = store.faces_of("alice")
    original = faces(3, 1, "a")[0].vector
    assert stored[0][:2] == ("a-0", "a/0.jpg")
    np.testing.assert_allclose(stored[0][2], original / np.linalg.norm(original), rtol=1e-6)


def test_the_same_image_is_never_enrolled_twice(store: GalleryStore) -> None:
    store.add("alice", faces(2, 1, "a"), None)
    again = store.add("alice", faces(3, 1, "a"), None)  # a-0 and a-1 again, a-2 new
    assert again.added == 1
    assert [str(d) for d in again.skipped] == [
        "a/0.jpg: this image is already enrolled",
        "a/1.jpg: this image is already enrolled",
    ]
    assert [d.source for d in again.skipped] == ["a/0.jpg", "a/1.jpg"]
    with pytest.raises(
        GalleryError, match=r"nothing enrolled for 'bob': a/0\.jpg: this image is already enrolled as 'alice'"
    ):
        store.add("bob", faces(1, 1, "a"), None)
    assert [p.name for p in store.people()] == ["alice"]


def test_a_failing_enrolment_stores_nothing(store: GalleryStore) -> None:
    good = faces(2, 5, "g")
    bad = StoredFace(np.ones(DIM + 1, dtype=np.float32), "bad", "bad.jpg")
    with pytest.raises(ModelMismatchError, match=f"do not fit this gallery's {DIM}-dim embeddings"):
        store.add("carol", [*good, bad], None)
    assert store.people() == []
    store.add("dave", faces(1, 6, "d"), None)
    with pytest.raises(GalleryError, match="finite and non-zero"):
        store.add("dave", [*faces(1, 7, "e"), StoredFace(np.zeros(DIM, np.float32), "z", "z.jpg")], None)
    assert store.people()[0].faces == 1


def test_top1_equals_brute_force(store: GalleryStore) -> None:
    rng = np.random.default_rng(11)
    vectors = rng.normal(size=(400, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for p in range(200):
        store.add(f"p{p:03d}", [StoredFace(vectors[2 * p + k], f"h{p}-{k}", "x") for k in range(2)], None)
    queries = rng.normal(size=(40, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    owners = np.repeat(np.arange(200), 2)
    centroids = vectors.reshape(200, 2, DIM).mean(axis=1)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    hits = {"best": 0, "centroid": 0}
    for q in queries:
        best = store.search(q, 3, "best")
        assert best[0].name == f"p{owners[np.argmax(vectors @ q)]:03d}"
        assert best[0].score == pytest.approx(float(np.max(vectors @ q)), abs=1e-5)
        assert [m.score for m in best] == sorted((m.score for m in best), reverse=True)
        centroid = store.search(q, 1, "centroid")[0]
        hits["centroid"] += centroid.name == f"p{np.argmax(centroids @ q):03d}"
        hits["best"] += 1
    assert hits["centroid"] == hits["best"] == len(queries)


def test_removal_is_final(store: GalleryStore, backend: str, location: Any) -> None:
    store.add("alice", faces(2, 1, "a"), None)
    store.add("bob", faces(2, 2, "b"), None)
    probe = faces(1, 1, "a")[0].vector
    assert store.search(probe, 1, "best")[0].name == "alice"
    assert store.remove("alice") == 2
    for match in ("best", "centroid"):
        assert [m.name for m in store.search(probe, 5, match)] == ["bob"]
    with open_backend(backend, location) as reopened:  # and in another process's view
        assert [m.name for m in reopened.search(probe, 5, "best")] == ["bob"]
    with pytest.raises(UnknownPersonError, match="no person named 'alice'"):
        store.remove("alice")
    with pytest.raises(UnknownPersonError):
        store.faces_of("alice")
    store.add("alice", faces(1, 9, "new"), None)  # the name can be enrolled afresh
    assert store.faces_of("alice")[0][0] == "new-0"


def test_removing_some_faces_keeps_the_person(store: GalleryStore, backend: str, location: Any) -> None:
    store.add("alice", faces(3, 1, "a"), None)
    store.add("bob", faces(1, 2, "b"), None)
    probe = faces(3, 1, "a")[2].vector
    probe /= np.linalg.norm(probe)
    assert store.search(probe, 1, "best")[0].score == pytest.approx(1.0, abs=1e-5)
    assert store.remove_faces("alice", ["a-2", "a-0", "b-0", "nobody"]) == 2  # bob's face is not hers
    assert [h for h, _, _ in store.faces_of("alice")] == ["a-1"]
    assert {p.name: p.faces for p in store.people()} == {"alice": 1, "bob": 1}
    with open_backend(backend, location) as reopened:  # the removed face is found by nobody
        best = reopened.search(probe, 2, "best")
        assert all(m.score < 0.99 for m in best)
    assert store.remove_faces("alice", ["a-1"]) == 1
    assert {p.name: p.faces for p in store.people()} == {"alice": 0, "bob": 1}
    assert [e.action for e in store.audit()][-2:] == ["remove", "remove"]
    with pytest.raises(UnknownPersonError):
        store.remove_faces("carol", ["a-1"])


def test_a_second_handle_sees_writes_of_the_first(store: GalleryStore, backend: str, location: Any) -> None:
    with open_backend(backend, location) as other:
        assert other.search(faces(1, 1, "a")[0].vector, 1, "best") == []
        store.add("alice", faces(1, 1, "a"), None)
        assert other.search(faces(1, 1, "a")[0].vector, 1, "best")[0].name == "alice"
        other.remove("alice")
        assert store.search(faces(1, 1, "a")[0].vector, 1, "best") == []


def test_a_reset_postgres_gallery_can_be_bound_again(pg_url: str) -> None:
    # drop() is PostgreSQL's reset; an embedded gallery is reset by deleting its folder
    from faceverify.gallery.postgres import PostgresStore

    with PostgresStore(pg_url) as store:
        store.drop()
        store.bind(MANIFEST)
        store.add("alice", faces(1, 1, "a"), None)
        store.drop()
        assert store.manifest() is None
        store.bind({**MANIFEST, "model": "another"})
        assert store.people() == []
