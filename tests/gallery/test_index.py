"""The embedded gallery's index kinds: recall on face-like vectors, persistence, and
adds/removals after a build (no rebuild needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceverify.gallery.codes import Rows, shard_count, subquantizers
from faceverify.gallery.index import INDEX_ARRAYS, FaceIndex, choose_kind, ivf_lists, rerank_candidates
from faceverify.gallery.synthetic_vectors import FaceSpace

DIM, PEOPLE = 32, 3000


@pytest.fixture(scope="module")
def gallery() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crowded face-like vectors, and probes that are another photo of an enrolled person."""
    space = FaceSpace(DIM)
    centres = space.identities(PEOPLE, seed=1)
    return space.photos(centres, seed=2), space.photos(centres[:200], seed=3), np.arange(200)


def _recall(index: FaceIndex, vectors: np.ndarray, probes: np.ndarray) -> float:
    truth = np.argmax(probes @ vectors.T, axis=1)
    found = np.array([index.search(p, 1)[0][0] for p in probes])
    return float(np.mean(found == truth))


def test_face_like_vectors_are_crowded_like_real_embeddings(gallery: tuple[np.ndarray, ...]) -> None:
    vectors, probes, mates = gallery
    impostors = vectors[:500] @ vectors[500:1000].T
    genuine = np.sum(probes * vectors[mates], axis=1)
    assert 0.82 < impostors.mean() < 0.86
    assert genuine.mean() > impostors.mean() + 0.08


@pytest.mark.parametrize(("kind", "floor"), [("exact", 1.0), ("pq", 0.99), ("ivf", 0.97), ("hnsw", 0.9)])
def test_each_kind_finds_the_exact_nearest_face_and_survives_a_reload(
    gallery: tuple[np.ndarray, ...], tmp_path: Path, kind: str, floor: float
) -> None:
    vectors, probes, _ = gallery
    # two pq shards, as on a 2-core machine at 200k faces
    index = FaceIndex.build(DIM, kind, np.arange(1, PEOPLE + 1), np.arange(PEOPLE), vectors, shards=2)
    assert _recall(index, vectors, probes) >= floor
    index.remove(np.array([1, 2, 3]))
    index.save(tmp_path, "u1")
    loaded = FaceIndex.load(tmp_path, DIM, "u1")
    if kind == "exact":  # rebuilt from SQLite, never saved
        assert loaded is None and not (tmp_path / INDEX_ARRAYS).exists()
        return
    assert loaded is not None and loaded.kind == kind and loaded.size == PEOPLE - 3
    for probe in probes[:20]:
        before, after = index.search(probe, 5), loaded.search(probe, 5)
        np.testing.assert_array_equal(before[0], after[0])
        assert not set(after[0]) & {0, 1, 2}  # tombstones are saved too
    assert FaceIndex.load(tmp_path, DIM + 1, "u1") is None  # another model's index is not used
    assert FaceIndex.load(tmp_path, DIM, "u2") is None  # nor another gallery's


def test_ivf_takes_adds_and_removals_after_its_build_without_retraining(
    gallery: tuple[np.ndarray, ...],
) -> None:
    vectors, _, _ = gallery
    index = FaceIndex.build(DIM, "ivf", np.arange(1, 2001), np.arange(2000), vectors[:2000])
    trained = index._ann
    index.add(np.arange(2001, PEOPLE + 1), np.arange(2000, PEOPLE), vectors[2000:])
    assert index._ann is trained and index.trained_on == 2000
    assert [index.search(vectors[i], 1)[0][0] for i in (2000, 2500, 2999)] == [2000, 2500, 2999]
    index.remove(np.array([2501]))
    assert index.search(vectors[2500], 1)[0][0] != 2500
    assert index.drift(PEOPLE, "ivf") is None
    assert "trained on 2,000" in (index.drift(4 * 2000 + 1, "ivf") or "")
    index.remove(np.arange(1, 1000))
    assert "removed" in (index.drift(PEOPLE, "ivf") or "")


def test_pq_rescores_exactly_and_takes_adds_and_removals_without_retraining(
    gallery: tuple[np.ndarray, ...], tmp_path: Path
) -> None:
    vectors, probes, _ = gallery
    index = FaceIndex.build(DIM, "pq", np.arange(1, 2001), np.arange(2000), vectors[:2000], shards=2)
    codes = index._codes
    assert codes is not None and codes.sizes() == [1000, 1000]
    owners, scores = index.search(probes[0], 5)
    # scores are exact cosines of the faces returned, not code distances
    np.testing.assert_allclose(scores, vectors[owners] @ probes[0], rtol=1e-5)
    for face in range(2000, PEOPLE):  # one enrolment at a time, as a service sees them
        index.add(np.array([face + 1]), np.array([face]), vectors[face : face + 1])
    assert index._codes is codes and index.trained_on == 2000
    assert sorted(codes.sizes()) == [1500, 1500]  # small adds go to the smaller shard
    assert [index.search(vectors[i], 1)[0][0] for i in (2000, 2500, 2999)] == [2000, 2500, 2999]
    index.remove(np.array([2501]))
    assert index.search(vectors[2500], 1)[0][0] != 2500
    assert index.drift(PEOPLE, "pq") is None
    assert "trained on 2,000" in (index.drift(4 * 2000 + 1, "pq") or "")
    index.remove(np.arange(1, 1000))  # a third removed: more candidates, the same answers
    assert "removed" in (index.drift(PEOPLE, "pq") or "")
    assert [index.search(vectors[i], 1)[0][0] for i in (1500, 2999)] == [1500, 2999]
    # a reloaded index reads its vectors into a buffer with room for the next enrolments
    index.save(tmp_path, "u1")
    loaded = FaceIndex.load(tmp_path, DIM, "u1")
    assert loaded is not None and len(loaded._rows._data) > loaded._rows.count == PEOPLE
    np.testing.assert_array_equal(loaded._rows.view, index._rows.view)
    assert sorted(tmp_path.glob("index-*")) == sorted(
        [*tmp_path.glob("index-*-0.faiss"), *tmp_path.glob("index-*-1.faiss"), *tmp_path.glob("index-*.npy")]
    )
    before = [index.search(p, 3)[0].tolist() for p in probes[1:20]]
    loaded.add(np.array([PEOPLE + 1]), np.array([PEOPLE]), probes[:1])
    assert loaded.search(probes[0], 1)[0][0] == PEOPLE
    assert [loaded.search(p, 3)[0].tolist() for p in probes[1:20]] == before


def test_rows_grow_without_copying_on_every_append() -> None:
    rows = Rows(4)
    buffers = set()
    for i in range(3000):
        rows.append(np.full((1, 4), i, dtype=np.float32))
        buffers.add(rows._data.ctypes.data)
    assert rows.view.shape == (3000, 4) and rows.view[2999, 0] == 2999
    assert len(buffers) <= 4  # capacity grows by a quarter, never per row


def test_kinds_codes_and_list_counts_follow_the_gallery_size() -> None:
    assert choose_kind(19_999) == "exact" and choose_kind(20_000) == "pq"
    assert choose_kind(10, min_faces=5) == "pq"
    # 4 bits per 8 dimensions (per 2 below 256), split exactly (faiss needs a divisor)
    assert [subquantizers(d) for d in (32, 128, 320, 512, 100, 1)] == [16, 64, 40, 64, 50, 1]
    assert shard_count(10) == 1 and 1 <= shard_count(10_000_000) <= 8
    # pq re-scores more candidates as removed faces take a larger share, never all faces
    assert rerank_candidates(1, 0.0, 10**6) == 34 and rerank_candidates(1, 0.2, 10**6) == 43
    assert rerank_candidates(50, 0.0, 100) == 100
    assert ivf_lists(1_000_000) == 1024 and ivf_lists(100_000) == 256
    assert ivf_lists(40) == 5 and ivf_lists(0) == 1


@pytest.mark.parametrize("kind", ["exact", "pq", "ivf", "hnsw"])
def test_faces_added_after_a_removal_keep_their_own_owner(gallery: tuple[np.ndarray, ...], kind: str) -> None:
    vectors, _, _ = gallery
    index = FaceIndex.build(DIM, kind, np.arange(1, 501), np.arange(500), vectors[:500], shards=2)
    index.remove(np.array([7]))
    index.add(np.array([501]), np.array([9999]), vectors[600:601])
    owners, scores = index.search(vectors[600], 1)
    assert (int(owners[0]), round(float(scores[0]), 4)) == (9999, 1.0)
