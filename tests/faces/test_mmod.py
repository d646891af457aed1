"""The ``mmod`` detector: dlib's MMOD face detector file run on onnxruntime, checked against dlib.

Real files only: dlib's ``mmod_human_face_detector.dat`` and the shared photos. dlib's own
CNN takes seconds per photo, so only two small photos are compared with it.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from faceverify.errors import ModelError

pytest.importorskip("onnxruntime")  # the graph itself is written without the onnx package

#: Small photos (dlib's CNN: about 1.5 and 2.3 s each at upsample 0 on a CPU core).
COMPARED = ("gallery/kit_harington/john2.jpeg", "probes/kit_with_rose.jpg")


@pytest.fixture(scope="module")
def dat_file(dlib_ready: None) -> Path:
    from faceverify.faces import dlib_files

    return dlib_files.dlib_model_path(dlib_files.CNN_DETECTOR)


@pytest.fixture(scope="module")
def mmod(dat_file: Path) -> Any:
    from faceverify.faces.mmod import MmodNet

    return MmodNet(dat_file)


@pytest.fixture(scope="module")
def dlib_cnn(dat_file: Path) -> Callable[[np.ndarray], list[tuple[tuple[float, ...], float]]]:
    import dlib  # type: ignore[import-untyped]

    detector = dlib.cnn_face_detection_model_v1(str(dat_file))

    def run(image: np.ndarray) -> list[tuple[tuple[float, ...], float]]:
        found = detector(image, 0)
        return [((d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()), d.confidence) for d in found]

    return run


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    inner_w = min(a[2], b[2]) - max(a[0], b[0]) + 1
    inner_h = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if inner_w <= 0 or inner_h <= 0:
        return 0.0
    inner = inner_w * inner_h
    area = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inner / (area - inner)


def test_parsed_network_has_the_declared_layers(mmod: Any) -> None:
    net, settings = mmod.net, mmod.settings
    cons = [layer for layer in net.layers if layer.kind == "con"]
    assert [c.params["weight"].shape for c in cons] == [
        (16, 3, 5, 5),
        (32, 16, 5, 5),
        (32, 32, 5, 5),
        (45, 32, 5, 5),
        (45, 45, 5, 5),
        (45, 45, 5, 5),
        (1, 45, 9, 9),
    ]
    assert [c.attrs["stride_y"] for c in cons] == [2, 2, 2, 1, 1, 1, 1]
    assert [c.attrs["padding_y"] for c in cons] == [0, 0, 0, 2, 2, 2, 4]
    affines = [layer for layer in net.layers if layer.kind == "affine"]
    assert len(affines) == 6 and all(a.version == "bn_con2" for a in affines)  # batch norm, folded on read
    assert settings.windows.tolist() == [[80, 80]] and net.loss.labels == ("",)
    assert (settings.stride, settings.offset) == (8, 14)
    assert settings.nms_iou == pytest.approx(0.338, abs=1e-3) and settings.nms_covered == 1.0
    assert net.loss.attrs["truth_match_iou_threshold"] == 0.5
    assert settings.means == pytest.approx((122.782, 117.001, 104.298), abs=1e-3)
    assert (settings.padding, settings.outer_padding) == (10, 11)


def test_altered_mmod_file_names_offset_and_expectation(dat_file: Path) -> None:
    from faceverify.faces.mmod import read_mmod_net

    data = dat_file.read_bytes()
    with pytest.raises(
        ModelError, match=r"'loss_mmox_' is not supported; expected .*loss_mmod_.*byte offset 2 "
    ):
        read_mmod_net(data.replace(b"loss_mmod_", b"loss_mmox_", 1))
    with pytest.raises(ModelError, match=r"'bn_cox2' where a 'affine' layer .*byte offset \d+"):
        read_mmod_net(data.replace(b"bn_con2", b"bn_cox2", 1))
    with pytest.raises(ModelError, match=r"file ends while reading .*byte offset \d+"):
        read_mmod_net(data[:-100])


def test_tiled_pyramid_follows_dlib_layout() -> None:
    from faceverify.faces.mmod_pyramid import tiled_pyramid

    pyramid = tiled_pyramid(700, 501, padding=10, outer_padding=11)
    sizes = [(r[3] - r[1] + 1, r[2] - r[0] + 1) for r in pyramid.rects]
    assert pyramid.rects[0] == (11, 11, 511, 710) and pyramid.cols == 501 + 22
    assert all(s == (int(5 / 6 * p[0]), int(5 / 6 * p[1])) for p, s in itertools.pairwise(sizes))
    assert sizes[-1][0] >= 5
    for i, a in enumerate(pyramid.rects):
        assert min(a[0], a[1]) >= 0 and a[2] < pyramid.cols and a[3] < pyramid.rows
        for b in pyramid.rects[i + 1 :]:
            assert min(a[2], b[2]) < max(a[0], b[0]) or min(a[3], b[3]) < max(a[1], b[1])
    # a box in level 2 comes back scaled by (6/5)^2
    left, top, right, bottom = pyramid.to_image(
        (pyramid.rects[2][0], pyramid.rects[2][1], pyramid.rects[2][0] + 25, pyramid.rects[2][1] + 25)
    )
    assert right - left == pytest.approx(25 * 1.44) and bottom - top == pytest.approx(25 * 1.44)


@pytest.mark.parametrize("name", COMPARED)
def test_same_faces_and_scores_as_dlib(
    mmod: Any,
    dlib_cnn: Callable[[np.ndarray], list[tuple[tuple[float, ...], float]]],
    pixels: Callable[[str], np.ndarray],
    name: str,
) -> None:
    image = pixels(name)
    reference = dlib_cnn(image)
    mine = mmod.detect(image, upsample=0)
    assert reference and len(mine) == len(reference)
    for box, confidence in reference:
        best = max(mine, key=lambda d: _iou(d.box, box))
        assert _iou(best.box, box) >= 0.8
        assert best.score == pytest.approx(confidence, abs=0.01)


def test_upsampling_finds_the_same_face(mmod: Any, pixels: Callable[[str], np.ndarray]) -> None:
    image = pixels("gallery/kit_harington/john2.jpeg")
    (once,) = mmod.detect(image, upsample=1)
    (plain,) = mmod.detect(image, upsample=0)
    assert _iou(once.box, plain.box) >= 0.7 and once.score > 0


def test_photo_without_a_face_gives_none(mmod: Any, pixels: Callable[[str], np.ndarray]) -> None:
    body = pixels("gallery/obama/obama2.jpg")[700:, :]  # below the face: suit and background
    assert mmod.detect(np.ascontiguousarray(body), upsample=0) == []
    noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    assert mmod.detect(noise, upsample=0) == []
    for size in ((1, 1), (4, 40), (8, 8)):  # smaller than the network's reach
        assert mmod.detect(np.zeros((*size, 3), dtype=np.uint8), upsample=0) == []


def test_threshold_drops_weaker_faces(mmod: Any, pixels: Callable[[str], np.ndarray]) -> None:
    image = pixels("probes/kit_with_rose.jpg")
    scores = sorted(d.score for d in mmod.detect(image, upsample=0))
    assert len(scores) == 2
    middle = (scores[0] + scores[1]) / 2
    assert [d.score for d in mmod.detect(image, upsample=0, threshold=middle)] == [scores[1]]


def test_threads_share_one_network(mmod: Any, pixels: Callable[[str], np.ndarray]) -> None:
    image = pixels("gallery/kit_harington/john2.jpeg")
    expected = mmod.detect(image, upsample=0)
    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda: results.append(mmod.detect(image, upsample=0))) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [expected] * 3


def test_detect_faces_end_to_end_with_landmarks(dat_file: Path, pixels: Callable[[str], np.ndarray]) -> None:
    from faceverify.faces import available_detectors, detect_faces

    assert "mmod" in available_detectors()
    faces = detect_faces(pixels("probes/kit_with_rose.jpg"), detector="mmod", upsample=0)
    assert len(faces) == 2 and faces[0].width >= faces[1].width
    for face in faces:
        assert face.detector == "mmod" and face.landmark_scheme == "dlib5" and face.score > 0
        left, top, right, bottom = face.box
        margin = 0.1 * face.width
        x, y = face.landmarks[:, 0], face.landmarks[:, 1]
        assert ((x > left - margin) & (x < right + margin) & (y > top - margin) & (y < bottom + margin)).all()


def test_importing_faces_loads_nothing_heavy() -> None:
    code = (
        "import sys, faceverify.faces, faceverify.faces.detect; "
        "heavy = {'onnx', 'onnxruntime', 'dlib', 'faceverify.faces.mmod'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
