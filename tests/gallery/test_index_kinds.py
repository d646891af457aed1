"""Every index kind passes the same checks: the bookkeeping is shared, only the vectors,
the raw search and the files differ from kind to kind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceverify.errors import GalleryError
from faceverify.gallery.index import INDEX_ARRAYS, KINDS, FaceIndex, index_class, scrub_saved
from faceverify.gallery.index_files import read_arrays, save_arrays

DIM, FACES = 32, 300
UUID = "u-1"


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


VECTORS = _unit(np.random.default_rng(0).normal(size=(FACES + 50, DIM)))
PROBES = _unit(VECTORS[:40] + 0.1 * np.random.default_rng(1).normal(size=(40, DIM)))
IDS = np.arange(1, FACES + 51)  # face ids; owner of face i is 1000 + i
OWNERS = IDS + 1000


def _build(kind: str, count: int = FACES) -> FaceIndex:
    return FaceIndex.build(DIM, kind, IDS[:count], OWNERS[:count], VECTORS[:count], shards=2)


def _truth(probe: np.ndarray, faces: int) -> int:
    return int(OWNERS[np.argmax(VECTORS[:faces] @ probe)])


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_the_factory_makes_the_class_of_each_kind(kind: str) -> None:
    made = FaceIndex(DIM, kind)
    assert type(made) is index_class(kind) and made.kind == kind
    assert type(FaceIndex(DIM)).kind == "exact"  # the default, as before
    with pytest.raises(GalleryError, match="unknown index kind"):
        FaceIndex(DIM, "flat")
    other = next(k for k in KINDS if k != kind)
    with pytest.raises(GalleryError, match=f"cannot make a '{other}' index"):
        index_class(kind)(DIM, other)


def test_adds_keep_ids_owners_and_find_the_exact_best_face(kind: str) -> None:
    index = _build(kind, FACES - 20)
    for i in range(FACES - 20, FACES):  # one enrolment at a time after the build
        index.add(IDS[i : i + 1], OWNERS[i : i + 1], VECTORS[i : i + 1])
    assert (index.size, index.max_id, index.tombstone_share) == (FACES, FACES, 0.0)
    for probe in PROBES:
        owners, scores = index.search(probe, 3)
        assert int(owners[0]) == _truth(probe, FACES)
        # scores are exact cosines of the faces returned, best first
        np.testing.assert_allclose(scores, VECTORS[owners - 1001] @ probe, rtol=1e-4, atol=1e-5)
        assert list(scores) == sorted(scores, reverse=True)
    added = index.search(VECTORS[FACES - 1], 1)
    assert (int(added[0][0]), round(float(added[1][0]), 4)) == (OWNERS[FACES - 1], 1.0)
    assert index.memory_bytes() >= FACES * 4 * DIM


def test_removed_faces_are_never_returned(kind: str) -> None:
    index = _build(kind)
    removed = IDS[:FACES:3]  # among them every probe's own face
    index.remove(removed)
    index.remove(removed[:5])  # removing twice changes nothing
    assert index.size == FACES - removed.size
    gone = set((removed + 1000).tolist())
    for face, probe in enumerate(PROBES):
        owners, _ = index.search(probe, 10)
        assert not gone & set(owners.tolist())
        if face % 3:  # its own face is still there, and still the best
            assert int(owners[0]) == OWNERS[face]
    everyone, _ = index.search(PROBES[0], FACES)
    assert not gone & set(everyone.tolist()) and everyone.size <= FACES - removed.size
    assert "removed" in (index.drift(FACES, kind) or "")  # a third removed: past the rebuild share
    assert "calls for" in (index.drift(FACES, "exact" if kind != "exact" else "pq") or "")


def test_a_saved_index_loads_back_the_same_or_is_rebuilt(kind: str, tmp_path: Path) -> None:
    index = _build(kind)
    index.remove(IDS[:3])
    index.save(tmp_path, UUID)
    loaded = FaceIndex.load(tmp_path, DIM, UUID)
    if not index.saves:  # exact: rebuilt from the database, never written
        assert loaded is None and not list(tmp_path.iterdir())
        return
    assert loaded is not None and type(loaded) is type(index)
    assert (loaded.size, loaded.trained_on, loaded.saved_size) == (FACES - 3, index.trained_on, FACES)
    for probe in PROBES[:10]:
        np.testing.assert_array_equal(loaded.search(probe, 5)[0], index.search(probe, 5)[0])
    loaded.add(IDS[FACES : FACES + 1], OWNERS[FACES : FACES + 1], VECTORS[FACES : FACES + 1])
    assert int(loaded.search(VECTORS[FACES], 1)[0][0]) == OWNERS[FACES]
    assert FaceIndex.load(tmp_path, DIM, "another gallery") is None
    assert FaceIndex.load(tmp_path, DIM + 1, UUID) is None
    arrays = read_arrays(tmp_path)  # a kind this version does not know: rebuilt, not a crash
    save_arrays(tmp_path / INDEX_ARRAYS, **{**arrays, "kind": np.array("flat")})
    assert FaceIndex.load(tmp_path, DIM, UUID) is None


def test_scrubbing_a_saved_index_leaves_no_trace_of_the_faces(kind: str, tmp_path: Path) -> None:
    index = _build(kind)
    index.save(tmp_path, UUID)
    victims = IDS[10:15]
    traces = [VECTORS[i].tobytes()[:32] for i in range(10, 15)]
    files = [path.read_bytes() for path in tmp_path.iterdir()]
    assert any(trace in data for trace in traces for data in files) == index.saves  # the check can fail
    assert not scrub_saved(tmp_path, victims, "another gallery")
    scrubbed = scrub_saved(tmp_path, victims, UUID)
    assert scrubbed == index.saves  # nothing saved, nothing scrubbed
    assert not scrub_saved(tmp_path, victims, UUID)  # done already
    for path in tmp_path.iterdir():
        assert not any(trace in path.read_bytes() for trace in traces), path.name
    loaded = FaceIndex.load(tmp_path, DIM, UUID)
    if loaded is not None:  # pq erases in place; the others' files are deleted instead
        assert loaded.size == FACES - 5
        assert int(loaded.search(VECTORS[12], 1)[0][0]) != OWNERS[12]


def test_only_kinds_that_keep_their_vectors_score_every_face(kind: str) -> None:
    index = _build(kind, 50)
    if index.kind in ("ivf", "hnsw"):
        with pytest.raises(GalleryError, match="keeps no vector matrix"):
            index.all_scores(PROBES[0])
        return
    people, best = index.best_per_owner(PROBES[:2])
    assert best.shape == (2, 50)
    np.testing.assert_allclose(best, PROBES[:2] @ VECTORS[:50].T, rtol=1e-5)
    assert people.tolist() == OWNERS[:50].tolist()
