"""Aligned chips: dlib's chips reproduced exactly, templates placed where they say."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from faceverify.errors import ConfigError, InputError
from faceverify.faces import ARCFACE_112, DLIB_150, align_faces, align_landmarks
from faceverify.faces.align import apply_transform, pyramid_down, similarity_transform

# Small and large faces: level 0 to 2 of the image pyramid, upright and tilted.
CHIP_PHOTOS = ("gallery/kit_harington/john2.jpeg", "gallery/biden/biden2.jpg", "probes/kit_with_rose.jpg")


def test_dlib_chips_are_dlibs_own(
    faces_in: Callable[[str], list], pixels: Callable[[str], np.ndarray], dlib_net: Any
) -> None:
    import dlib
    import torch

    from faceverify.models.dlib_resnet import chips_to_tensor

    ours, theirs = [], []
    for name in CHIP_PHOTOS:
        image, faces = pixels(name), faces_in(name)
        ours.append(align_faces(image, faces, DLIB_150))
        for face in faces:
            parts = dlib.points([dlib.point(int(x), int(y)) for x, y in face.landmarks])
            shape = dlib.full_object_detection(dlib.rectangle(*(int(v) for v in face.box)), parts)
            theirs.append(dlib.get_face_chip(image, shape, size=150, padding=0.25))
    mine, reference = np.concatenate(ours), np.stack(theirs)
    assert mine.shape == (4, 150, 150, 3)
    assert np.abs(mine.astype(int) - reference.astype(int)).max() <= 1
    with torch.inference_mode():
        difference = dlib_net(chips_to_tensor(mine)) - dlib_net(chips_to_tensor(reference))
    assert difference.abs().max().item() <= 1e-4


def test_arcface_chip_puts_the_eyes_on_the_template(
    faces_in: Callable[[str], list], pixels: Callable[[str], np.ndarray]
) -> None:
    (face,) = faces_in("gallery/obama/obama.jpg")
    chips = align_faces(pixels("gallery/obama/obama.jpg"), [face], "arcface112")
    assert chips.shape == (1, 112, 112, 3) and chips.std() > 20
    to_chip = similarity_transform(face.landmarks, ARCFACE_112.points_for("dlib5"))
    marks = apply_transform(to_chip, face.landmarks)
    eyes = np.array([marks[2:4].mean(axis=0), marks[0:2].mean(axis=0)])  # image-left eye first
    assert np.abs(eyes - ARCFACE_112.points_for("arcface5")[:2]).max() < 4.0


def test_similarity_transform_recovers_a_known_one() -> None:
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    angle, scale, shift = 0.3, 2.5, np.array([10.0, -4.0])
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    dst = scale * src @ rotation.T + shift
    matrix = similarity_transform(src, dst)
    assert np.allclose(matrix, np.hstack([scale * rotation, shift[:, None]]))


def test_pyramid_halves_and_keeps_flat_areas() -> None:
    flat = np.full((41, 30, 3), 200, dtype=np.uint8)
    down = pyramid_down(flat)
    assert down.shape == (19, 13, 3) and (down == 200).all()  # the 5×5 weights sum to 256
    assert pyramid_down(flat[:8]).shape == (0, 0, 3)


def test_identity_landmarks_give_the_template_crop() -> None:
    # landmarks exactly at the ArcFace template: the chip is the photo's top-left 112×112
    image = np.random.default_rng(1).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    chip = align_landmarks(image, ARCFACE_112.points_for("arcface5")[None], ARCFACE_112, scheme="arcface5")[0]
    assert np.array_equal(chip[:-1, :-1], image[:-1, :-1])  # the last row/column lacks a right neighbour


def test_face_outside_the_photo_gives_a_black_chip() -> None:
    image = np.full((100, 100, 3), 255, dtype=np.uint8)
    far = DLIB_150.points_for("dlib5")[None] + 1000
    assert align_landmarks(image, far).max() == 0


def test_bad_inputs_are_explained() -> None:
    image = np.zeros((50, 50, 3), dtype=np.uint8)
    with pytest.raises(ConfigError, match="valid names: dlib150, arcface112"):
        align_landmarks(image, np.zeros((1, 5, 2)), "vgg")
    with pytest.raises(InputError, match=r"do not fit dlib5 \(\[N, 5, 2\]\)"):
        align_landmarks(image, np.zeros((1, 68, 2)))
    with pytest.raises(ConfigError, match="no points for landmark scheme 'mediapipe'"):
        align_landmarks(image, np.zeros((1, 5, 2)), scheme="mediapipe")
    with pytest.raises(InputError, match="RGB uint8"):
        align_landmarks(image[..., 0], np.zeros((1, 5, 2)))
