"""How usable a detected face is for recognition: one score in [0, 1] per face.

Photo-library clustering leaves faces under :data:`MIN_QUALITY` unassigned, video keeps a
track's best-scoring face, and enrolment refuses a face under it. :func:`face_quality`
measures four things, maps each to a factor in [0, 1] and multiplies the factors:

* **size**, the box's shorter side in photo pixels: factor 0 at ``SIZE_PIVOTS[0]`` and
  below, 1 at ``SIZE_PIVOTS[1]`` and above, linear in the logarithm between.
* **sharpness**, the variance of the Laplacian of the grey face box resampled so that the
  face spans ``SHARPNESS_SIDE`` pixels; a smaller face is enlarged, which divides the
  variance by the square of the enlargement, so the variance is multiplied back and the
  measure does not depend on the face's pixel size. Factor 0 at ``SHARPNESS_PIVOTS[0]``,
  1 at ``SHARPNESS_PIVOTS[1]``, linear in the logarithm between.
* **detector**, the detector's score through its family's :data:`DETECTOR_PIVOTS`: 0 at
  the first, 1 at the second (dlib's default cut). A detector without pivots is not judged.
* **yaw**, the head's turn from the five landmarks, as a fraction of 90 degrees. The nose
  point's offset from the eyes' midpoint along the eye line, in half eye distances, is
  taken as ``tan(yaw)``: judged by eye on the most turned photos-dev faces, so the degrees
  are rough, the order is not. arcface5's nose tip lies 1.43 times as far out as dlib5's
  nose base for the same turn (measured with dlib's 68 landmarks, which hold both points,
  on the photos-dev faces). Factor 1 up to ``YAW_PIVOTS[0]``, 0 from ``YAW_PIVOTS[1]``.

Why a product: the size and sharpness pivots are fitted so that each factor is the share
of a good face's genuine matches that a face with that one defect still makes (dlib's
network, ``dlib_resnet_v1``, at its 0.6 distance threshold, on ``../shared/photos-dev``:
each photo of its 1,068 genuine pairs degraded in turn, the other one left as it is), and
the detector factor is the share of boxes at that score that are whole faces. The product
is then the share kept with several defects at once, if they act independently: one
unusable aspect vetoes the face (a sharp, frontal 10-pixel face is useless) and two mild
ones add up, as they do for the network. A geometric mean would let three good aspects
hide a bad one (the fourth root of 0.2 is 0.67); a minimum would miss the adding up.

Measured (``python benchmarks/face_quality.py``) on photos-dev, 733 photos: the labelled
central face of each, found by ``find_faces(pixels, FaceOptions())`` in all 733; the
sharp photos' genuine pairs match at 0.986.

==========================  ============  ======================  ===================
photos-dev central faces    matches kept  score p1 / p50 / p99    reach MIN_QUALITY
==========================  ============  ======================  ===================
as they are                 1.00          1.00 / 1.00 / 1.00      100% (733 of 733)
Gaussian blur, radius 1 px  0.99          1.00 / 1.00 / 1.00      100%
radius 1.5                  0.93          0.76 / 1.00 / 1.00      99.2%
radius 2                    0.81          0.48 / 0.80 / 1.00      64%
radius 3                    0.41          0.07 / 0.40 / 0.78      1.9%
radius 4                    0.15          0.00 / 0.12 / 0.51      0%
shrunk to 24 px             0.92          0.93 / 0.94 / 0.94      100%
shrunk to 20 px             0.84          0.79 / 0.81 / 0.81      100%
shrunk to 16 px             0.64          0.62 / 0.63 / 0.64      0%
shrunk to 12 px             0.40          0.41 / 0.42 / 0.42      0%
==========================  ============  ======================  ===================

The fitted pivots are sharpness (0.77, 17.4) and size (7, 26), each within 0.02 (rms) of
the matches kept. Sharp central faces measure 53-76 px (p1-p99), sharpness 111 / 380 /
1170 (p1 / p50 / p99), yaw up to 0.34 (p99; 0.47 at most) and HOG scores of 0 and more.
Blurred by 4 px and detected again, 616 central faces are found and none passes (p99
0.48). With landmarks turned a further 45, 60 or 90 degrees (a rough 3D head) no face
passes; 30 degrees further, 91% do. Every one of the 776 boxes found with the default
settings is a face; at lower cuts, by eye, the share of boxes that are whole faces is
0.9 for HOG scores in [-0.5, 0), 0.7 in [-0.75, -0.5) and 0.58 in [-1, -0.75) (text,
fabric, microphones, parts of faces), and about 0.7 for mmod's 18 boxes in [-0.6, 0).
Each face takes about 0.11 ms (photos-dev) to 0.34 ms (../shared/faces, 268 px faces).

Limits: the pivots come from one small set of news photos, dlib's network and HOG's boxes
(mmod's are 8% smaller on the same faces, at the median); a face cut by the frame is
judged on the part in the photo.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from faceverify.errors import InputError

if TYPE_CHECKING:
    from faceverify.faces.detect import Face

#: Faces below this score are too poor to trust for identification and clustering: they
#: are expected to make less than three quarters of a good face's genuine matches.
MIN_QUALITY: float = 0.75
#: Box shorter side, pixels: (factor 0 at or below, factor 1 at or above); fitted to the
#: matches kept by photos-dev faces shrunk to 12-48 pixels.
SIZE_PIVOTS: tuple[float, float] = (7.0, 26.0)
#: Laplacian variance (grey levels squared) at ``SHARPNESS_SIDE``: (factor 0, factor 1);
#: fitted to the matches kept by photos-dev faces blurred by 0.5-6 pixels.
SHARPNESS_PIVOTS: tuple[float, float] = (0.8, 17.0)
#: The face's side in pixels at which sharpness is measured: about the size of the face
#: in the chips recognition networks read (dlib's 150-pixel chips, ArcFace's 112).
SHARPNESS_SIDE = 64
#: Yaw as a fraction of 90 degrees: (factor 1 at or below, factor 0 at or above). Up to
#: about 40 degrees photos-dev faces lose no matches (its most turned face reads 0.47);
#: no photos-dev face comes near the other end (72 degrees), set for near-profiles.
YAW_PIVOTS: tuple[float, float] = (0.45, 0.8)
#: Per detector family, the scores mapped to 0 and to 1 (linear between): below dlib's
#: default cut the share of boxes that are whole faces falls by about half per unit of
#: score (photos-dev boxes, by eye). Detectors of other names are not judged (1.0); a
#: plugin may add pivots for its own here.
DETECTOR_PIVOTS: dict[str, tuple[float, float]] = {
    "hog": (-2.0, 0.0),
    "mmod": (-2.0, 0.0),
    "cnn": (-2.0, 0.0),  # the same network as mmod
}
# Per landmark scheme: the points averaged into the image-left and the image-right eye,
# the nose point, and how far the nose point stands out relative to dlib5's nose base.
_YAW_POINTS: dict[str, tuple[tuple[int, ...], tuple[int, ...], int, float]] = {
    "dlib5": ((2, 3), (0, 1), 4, 1.0),
    "arcface5": ((0,), (1,), 2, 1.43),
}


@dataclass(frozen=True)
class FaceQuality:
    """How usable one face is, and why.

    Attributes:
        score: the verdict in [0, 1], higher is better; compare with :data:`MIN_QUALITY`.
        size: the box's shorter side in photo pixels.
        sharpness: the Laplacian variance of the grey face at ``SHARPNESS_SIDE`` pixels
            (grey levels squared; about 100 and more for sharp faces, under 3 for a
            Gaussian blur of 6% of the face's width).
        detector: the detector's score mapped to [0, 1] for its family (1.0 when unknown).
        yaw: the head's turn in [0, 1]: 0 frontal, 0.5 about 45 degrees, 1 profile
            (0 for a landmark scheme without a known nose and eyes).
    """

    score: float
    size: float
    sharpness: float
    detector: float
    yaw: float

    def weakest(self) -> str:
        """What pulls the score down most, in words (``too small``, ``blurred``, ``turned
        away``, ``unsure detection``), with the measurement."""
        factors = {
            f"too small ({self.size:.0f} px)": _ramp(self.size, *SIZE_PIVOTS, log=True),
            f"blurred (sharpness {self.sharpness:.1f})": _ramp(self.sharpness, *SHARPNESS_PIVOTS, log=True),
            f"turned away (about {self.yaw * 90:.0f} degrees)": 1.0 - _ramp(self.yaw, *YAW_PIVOTS),
            f"unsure detection ({self.detector:.2f})": self.detector,
        }
        return min(factors, key=lambda name: factors[name])

    def to_dict(self) -> dict[str, float]:
        """The measurements as JSON numbers, to four decimals."""
        return {
            "score": round(self.score, 4),
            "size": round(self.size, 4),
            "sharpness": round(self.sharpness, 4),
            "detector": round(self.detector, 4),
            "yaw": round(self.yaw, 4),
        }


def face_quality(pixels: np.ndarray, face: Face) -> FaceQuality:
    """How usable ``face`` is, measured in the photo it was found in.

    Args:
        pixels: the whole photo, ``[H, W, 3]`` uint8 RGB (the pixels the box refers to).
        face: a detected face (:func:`faceverify.faces.detect_faces`).

    Returns:
        The score and its four measurements.
    """
    image = np.asarray(pixels)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(
            f"expected the photo as RGB uint8 [H, W, 3], got {image.dtype} {image.shape}; "
            "decode photos with faceverify's load_image first"
        )
    left, top, right, bottom = (float(v) for v in face.box)
    size = max(min(right - left + 1, bottom - top + 1), 0.0)
    sharpness = _sharpness(image, (left, top, right, bottom))
    detector = detector_confidence(face.detector, float(face.score))
    yaw = _yaw(np.asarray(face.landmarks, dtype=np.float64), face.landmark_scheme)
    score = (
        _ramp(size, *SIZE_PIVOTS, log=True)
        * _ramp(sharpness, *SHARPNESS_PIVOTS, log=True)
        * detector
        * (1.0 - _ramp(yaw, *YAW_PIVOTS))
    )
    return FaceQuality(score=score, size=size, sharpness=sharpness, detector=detector, yaw=yaw)


def _ramp(value: float, low: float, high: float, *, log: bool = False) -> float:
    """0 at ``low`` and below, 1 at ``high`` and above, linear (in the logarithm) between."""
    if log:
        if value <= low:
            return 0.0
        value, low, high = math.log(value), math.log(low), math.log(high)
    return min(max((value - low) / (high - low), 0.0), 1.0)


def _sharpness(image: np.ndarray, box: tuple[float, float, float, float]) -> float:
    """The Laplacian variance of the grey box, with the face resampled to ``SHARPNESS_SIDE``."""
    from PIL import Image

    left, top, right, bottom = box
    # the face's scale: a box cut by the frame keeps its other side whole
    side = max(right - left + 1, bottom - top + 1)
    height, width = image.shape[:2]
    x0, y0 = max(math.floor(left + 0.5), 0), max(math.floor(top + 0.5), 0)
    x1, y1 = min(math.floor(right + 0.5) + 1, width), min(math.floor(bottom + 0.5) + 1, height)
    if x1 - x0 < 3 or y1 - y0 < 3:
        return 0.0  # nothing of the face in the photo to measure
    # Faces over four times the measuring size are read at every step-th pixel first: the
    # detail that skips lies far above what the measure sees (values change by under 3%
    # on ../shared/faces faces of 900-2000 pixels), and a 2000-pixel face costs what a
    # 300-pixel one does.
    step = max(int(side // (4 * SHARPNESS_SIDE)), 1)
    crop = np.ascontiguousarray(image[y0:y1:step, x0:x1:step])
    scale = SHARPNESS_SIDE * step / side
    target = (max(round(crop.shape[1] * scale), 3), max(round(crop.shape[0] * scale), 3))
    if target == (crop.shape[1], crop.shape[0]):
        # Pillow returns a crop of the target size as it is, without the smoothing every
        # other scale gets from resampling (a face of exactly SHARPNESS_SIDE pixels would
        # read twice as sharp as the same face at 60 or 68 pixels): resample it anyway
        target = (target[0] + 1, target[1] + 1)
    grey = np.asarray(
        Image.fromarray(crop).convert("F").resize(target, Image.Resampling.BILINEAR), dtype=np.float64
    )
    laplacian = grey[1:-1, :-2] + grey[1:-1, 2:] + grey[:-2, 1:-1] + grey[2:, 1:-1] - 4.0 * grey[1:-1, 1:-1]
    variance = float(laplacian.var())
    # Enlarging a face k times divides the variance by about k²: undone, the faces of
    # ../shared/faces shrunk to 20-60 pixels read 0.75-1.2 times as sharp as at full size
    # (0.45-1.1 times at 12-16 pixels, where detail is really lost).
    return variance * max(scale, 1.0) ** 2


def detector_confidence(name: str, score: float) -> float:
    """A detector's score as a confidence in [0, 1] through its family's pivots (1.0 when
    the detector has none)."""
    pivots = DETECTOR_PIVOTS.get(name)
    return 1.0 if pivots is None else _ramp(score, *pivots)


def _yaw(landmarks: np.ndarray, scheme: str) -> float:
    """The head's turn as a fraction of 90 degrees, from the nose's offset along the eye line."""
    points = _YAW_POINTS.get(scheme)
    if points is None or landmarks.shape != (5, 2) or not np.isfinite(landmarks).all():
        return 0.0
    left_eye, right_eye, nose, depth = points
    left, right = landmarks[list(left_eye)].mean(axis=0), landmarks[list(right_eye)].mean(axis=0)
    axis = right - left
    span = float(axis @ axis)
    if span < 1e-6:
        return 1.0  # both eyes on one spot: a face seen from the side
    along = float((landmarks[nose] - left) @ axis) / span  # 0 at the left eye, 1 at the right
    offset = abs(2.0 * along - 1.0) / depth
    return math.atan(offset) / (math.pi / 2)
