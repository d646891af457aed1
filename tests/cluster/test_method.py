"""Grouping faces: average linkage over neighbours, thresholds from the model, constraints."""

from __future__ import annotations

import numpy as np
import pytest

from faceverify.cluster.method import STRICTER, Constraints, Thresholds, group_faces
from faceverify.cluster.neighbours import nearest, neighbours_of
from faceverify.errors import ConfigError
from faceverify.evaluate.clusters import bcubed
from faceverify.gallery.synthetic_vectors import FaceSpace
from faceverify.runtime.threshold import Threshold, ThresholdSource


def _people(count: int, per: int, seed: int = 0, dim: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Face-like vectors (two people meet at cosine ~0.84, two photos of one at ~0.95)."""
    space = FaceSpace(dim, seed=seed)
    labels = np.repeat(np.arange(count), per)
    return space.photos(space.identities(count, seed + 1)[labels], seed + 2), labels


def _group(vectors: np.ndarray, constraints: Constraints | None = None, group: float = 0.9375) -> np.ndarray:
    neighbours, _ = nearest(vectors)
    photos = np.arange(len(vectors))
    return group_faces(
        vectors, neighbours, Thresholds.from_group(group), constraints or Constraints(photos)
    ).labels


def test_thresholds_follow_the_model_with_dlibs_own_ratio() -> None:
    dlib = Thresholds.from_model(Threshold(0.91, ThresholdSource.PUBLISHED))
    # dlib verifies at distance 0.6 and clusters at 0.5: 1 - cos scales by (5/6)²
    assert dlib.group == pytest.approx(1 - 0.09 * (25 / 36))
    assert dlib.attach == 0.91
    assert "published" in dlib.source
    arcface = Thresholds.from_model(Threshold(0.3, ThresholdSource.CALIBRATED))
    assert arcface.group == pytest.approx(1 - 0.7 * STRICTER)  # ~0.51: Immich's 0.5 for such models
    again = Thresholds.from_group(dlib.group)
    assert again.attach == pytest.approx(0.91, abs=1e-6)
    assert Thresholds.from_dict(dlib.to_dict()) == dlib
    with pytest.raises(ConfigError):
        Thresholds.from_group(1.5)


def test_face_like_people_are_grouped() -> None:
    vectors, labels = _people(300, 4)
    score = bcubed(_group(vectors), labels)
    assert score.precision > 0.98 and score.recall > 0.95


def test_a_looser_threshold_merges_people_and_a_stricter_one_splits_them() -> None:
    vectors, labels = _people(200, 4)
    loose, strict = bcubed(_group(vectors, group=0.85), labels), bcubed(_group(vectors, group=0.99), labels)
    assert loose.precision < 0.5  # everyone sits at ~0.84: the threshold must come from the model
    assert strict.recall < 0.5


def test_faces_of_one_photo_never_share_a_group() -> None:
    vectors, labels = _people(20, 4)
    photos = labels.copy()  # the four faces of a person all "in one photo"
    grouped = _group(vectors, Constraints(photos))
    for person in range(20):
        assert len(set(grouped[labels == person].tolist())) == 4


def test_seeds_start_as_groups_and_anchored_ones_never_merge() -> None:
    vectors, labels = _people(30, 4)
    first, second = np.flatnonzero(labels == 0), np.flatnonzero(labels == 1)
    # the user split person 0 into two anchored groups: they stay two
    constraints = Constraints(np.arange(len(vectors)), seeds={7: first[:2], 8: first[2:]}, anchored={7, 8})
    grouped = _group(vectors, constraints)
    assert grouped[first[0]] == grouped[first[1]] != grouped[first[2]] == grouped[first[3]]
    # unanchored seeds of one person do merge
    free = Constraints(np.arange(len(vectors)), seeds={7: second[:2], 8: second[2:]})
    grouped = _group(vectors, free)
    assert len(set(grouped[second].tolist())) == 1


def test_rejected_faces_and_groups_kept_apart_stay_out() -> None:
    vectors, labels = _people(30, 5)
    person = np.flatnonzero(labels == 3)
    seeds = {5: person[:3]}
    rejected = int(person[4])
    constraints = Constraints(np.arange(len(vectors)), seeds=seeds, forbidden={rejected: {5}})
    grouped = _group(vectors, constraints)
    assert grouped[person[3]] == grouped[person[0]]
    assert grouped[rejected] != grouped[person[0]]
    apart = Constraints(
        np.arange(len(vectors)), seeds={5: person[:2], 6: person[2:]}, apart={frozenset((5, 6))}
    )
    grouped = _group(vectors, apart)
    assert grouped[person[0]] != grouped[person[2]]


def test_grouping_with_groups_seeded_matches_grouping_all_at_once() -> None:
    """What a run adding faces does: the groups of 80% of the faces as seeds, the rest new."""
    vectors, labels = _people(200, 5, seed=3)
    rng = np.random.default_rng(0)
    later = rng.random(len(vectors)) < 0.2
    photos = np.arange(len(vectors))
    everything = _group(vectors)
    earlier = np.flatnonzero(~later)
    first = _group(vectors[earlier])
    seeds = {int(g): earlier[first == g] for g in np.unique(first)}
    neighbours = neighbours_of(vectors, np.flatnonzero(later))
    added = group_faces(
        vectors, neighbours, Thresholds.from_group(0.9375), Constraints(photos, seeds=seeds)
    ).labels
    assert bcubed(added, everything).f1 > 0.97
    assert bcubed(added, labels).f1 > 0.95


def test_a_lone_face_joins_its_nearest_faces_group_at_the_verification_threshold() -> None:
    base = np.zeros(8, dtype=np.float32)
    base[0] = 1.0
    a = base.copy()
    b = base.copy()
    b[1] = 0.3  # cosine 0.958 with a
    c = base.copy()
    c[2] = 0.45  # ~0.91 with a: below grouping (0.9375), above attach (0.91 - 0.02)
    vectors = np.stack([a, b, c]) / np.linalg.norm(np.stack([a, b, c]), axis=1, keepdims=True)
    neighbours, _ = nearest(vectors, k=2)
    photos = np.arange(3)
    strict = Thresholds(0.9375, 0.95)
    loose = Thresholds(0.9375, 0.88)
    apart = group_faces(vectors, neighbours, strict, Constraints(photos))
    assert len(set(apart.labels.tolist())) == 2 and not apart.attached.any()
    joined = group_faces(vectors, neighbours, loose, Constraints(photos))
    assert len(set(joined.labels.tolist())) == 1
    assert joined.attached.tolist() == [False, False, True]  # c joined the pair a, b made
