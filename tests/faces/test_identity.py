"""The whole path on real photos: detect, align, embed with dlib's network, compare."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

from faceverify.models.dlib_resnet import DLIB_COSINE_THRESHOLD, DLIB_DISTANCE_THRESHOLD

GALLERY = {
    "alex_lacamoire": ["img1.jpg"],
    "biden": ["biden.jpg", "biden2.jpg"],
    "kit_harington": ["john1.jpeg", "john2.jpeg"],
    "obama": ["obama.jpg", "obama2.jpg"],
    "rose_leslie": ["img1.jpg", "img2.jpg"],
}


def _gallery(describe: Callable[[str], np.ndarray]) -> tuple[list[str], np.ndarray]:
    people, vectors = [], []
    for person, files in GALLERY.items():
        for file in files:
            people.append(person)
            vectors.append(describe(f"gallery/{person}/{file}")[0])
    return people, np.array(vectors)


def _identify(describe: Callable[[str], np.ndarray], name: str) -> list[str | None]:
    people, gallery = _gallery(describe)
    found: list[str | None] = []
    for vector in describe(name):
        distances = np.linalg.norm(gallery - vector, axis=1)
        best = int(distances.argmin())
        found.append(people[best] if distances[best] <= DLIB_DISTANCE_THRESHOLD else None)
    return found


def test_same_person_pairs_are_closer_than_different_people(describe: Callable[[str], np.ndarray]) -> None:
    people, vectors = _gallery(describe)
    same, different = [], []
    for i, j in itertools.combinations(range(len(people)), 2):
        distance = float(np.linalg.norm(vectors[i] - vectors[j]))
        (same if people[i] == people[j] else different).append(distance)
    assert max(same) < DLIB_DISTANCE_THRESHOLD < min(different)
    obama, obama2, biden = vectors[people.index("obama")], vectors[people.index("obama") + 1], vectors[1]
    assert np.linalg.norm(obama - obama2) < 0.6 < np.linalg.norm(obama - biden)


def test_cosine_threshold_decides_like_dlibs_distance(describe: Callable[[str], np.ndarray]) -> None:
    _, vectors = _gallery(describe)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    cosine = unit @ unit.T
    distance = np.linalg.norm(vectors[:, None] - vectors[None], axis=2)
    assert np.array_equal(cosine >= DLIB_COSINE_THRESHOLD, distance <= DLIB_DISTANCE_THRESHOLD)


def test_probes_are_identified(describe: Callable[[str], np.ndarray]) -> None:
    assert _identify(describe, "probes/kit_with_rose.jpg") == ["kit_harington", "rose_leslie"]
    # the third face is a child who is not in the gallery
    assert _identify(describe, "probes/obama_and_biden.jpg") == ["biden", "obama", None]
    assert _identify(describe, "scenes/two_people.jpg") == ["obama", "biden"]
    assert _identify(describe, "scenes/obama_partial_face.jpg") == ["obama"]
