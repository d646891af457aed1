"""Aligned face chips: a similarity transform from five landmarks to a model's template.

A :class:`Template` places landmarks in a square chip. The transform from the template
to a face's landmarks is the least-squares similarity (Umeyama, 1991); each chip pixel
is then read from the photo with bilinear interpolation. When the face is much larger
than the chip, the photo is first reduced by a 5×5 Gaussian image pyramid (each level
halves the size), so that the chip does not alias.

Two templates ship:

* :data:`DLIB_150` reproduces ``dlib.get_face_chip(img, shape, 150, 0.25)``, the input
  of dlib's face network, including dlib's own chip geometry (the chip's centre at
  ``size / 2``, a step of ``(size·scale − 1) / (size − 1)``, its pyramid's coordinate
  offsets and its truncation of interpolated values), so that its chips are dlib's,
  pixel for pixel (tests/faces/test_align.py compares them on real photos).
* :data:`ARCFACE_112` is the common 112×112 five-point template of ArcFace-style models
  (eye centres, nose tip, mouth corners), for models trained with faceverify; it maps
  pixel centres exactly and rounds, without dlib's offsets.

Landmarks come in a named *scheme*: ``dlib5`` (dlib's 5-point shape predictor: the
outer and inner corner of the eye on the image's right, the outer and inner corner of
the other eye, the base of the nose) or ``arcface5``. Each template lists its points in
every scheme it supports; the ones not measured directly are derived through dlib's mean
face shape (see :func:`_dlib5_in_arcface112`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from faceverify.errors import ConfigError, InputError

SCHEMES = ("dlib5", "arcface5")

# dlib's 5-point template in its normalised face square (x, y in [0, 1], no padding).
_DLIB5_UNIT = np.array(
    [
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340850613712, 0.2290642403242],
        [0.4901123135679, 0.6277975316475],
    ]
)
# The arcface5 points in the same normalised square, from dlib's 68-point mean face
# (``get_face_chip_details``): eye centres as the mean of each eye's six points, the nose
# tip (point 30) and the mouth corners (points 48 and 54).
_ARCFACE5_UNIT = np.array(
    [
        [0.2254918, 0.2159903],
        [0.7547613, 0.2159903],
        [0.4901270, 0.5156250],
        [0.2541490, 0.7802330],
        [0.7261040, 0.7802330],
    ]
)
# The usual ArcFace template (insightface), in pixels of a 112×112 chip.
_ARCFACE5_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ]
)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The least-squares similarity ``dst ≈ s·R·src + t`` (Umeyama), as a 2×3 matrix."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mean_src, mean_dst = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - mean_src, dst - mean_dst
    var_src = (src_c**2).sum() / len(src)
    cov = dst_c.T @ src_c / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1.0
    rotation = u @ sign @ vt
    scale = float(np.trace(np.diag(d) @ sign) / var_src) if var_src > 0 else 1.0
    translation = mean_dst - scale * rotation @ mean_src
    return np.hstack([scale * rotation, translation[:, None]])


def apply_transform(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points ``[K, 2]`` mapped by a 2×3 affine matrix."""
    return np.asarray(points, dtype=np.float64) @ matrix[:, :2].T + matrix[:, 2]


@dataclass(frozen=True)
class Template:
    """Where landmarks go in a square chip.

    Attributes:
        name: a short name (recorded with embeddings made from these chips).
        size: the chip side in pixels.
        points: per landmark scheme, a ``[K, 2]`` array of (x, y) chip pixel positions.
        dlib_geometry: reproduce ``dlib.extract_image_chips`` exactly rather than map
            pixel centres.
    """

    name: str
    size: int
    points: Mapping[str, np.ndarray] = field(repr=False)
    dlib_geometry: bool = False

    def points_for(self, scheme: str) -> np.ndarray:
        """The template's points in a landmark scheme."""
        if scheme not in self.points:
            raise ConfigError(
                f"template '{self.name}' has no points for landmark scheme '{scheme}'; "
                f"it supports: {', '.join(self.points)}"
            )
        return self.points[scheme]


def _dlib_chip_points(unit: np.ndarray, size: int, padding: float) -> np.ndarray:
    return (padding + unit) / (2 * padding + 1) * size


def dlib_template(size: int = 150, padding: float = 0.25) -> Template:
    """dlib's chip template (``get_face_chip_details``) for a chip size and padding."""
    if size < 8 or padding < 0:
        raise ConfigError(
            f"dlib chip size {size} / padding {padding} is invalid; use size >= 8, padding >= 0"
        )
    return Template(
        name=f"dlib{size}" + ("" if padding == 0.25 else f"p{padding:g}"),
        size=size,
        points={
            "dlib5": _dlib_chip_points(_DLIB5_UNIT, size, padding),
            "arcface5": _dlib_chip_points(_ARCFACE5_UNIT, size, padding),
        },
        dlib_geometry=True,
    )


def _dlib5_in_arcface112() -> np.ndarray:
    """Where dlib's five points fall in an ArcFace chip.

    The similarity that best maps the arcface5 points of dlib's mean face onto the
    ArcFace template also carries dlib's five mean-face points there.
    """
    matrix = similarity_transform(_ARCFACE5_UNIT, _ARCFACE5_112)
    return apply_transform(matrix, _DLIB5_UNIT)


DLIB_150 = dlib_template(150, 0.25)
ARCFACE_112 = Template(
    name="arcface112", size=112, points={"arcface5": _ARCFACE5_112, "dlib5": _dlib5_in_arcface112()}
)
TEMPLATES: dict[str, Template] = {t.name: t for t in (DLIB_150, ARCFACE_112)}


def get_template(template: Template | str) -> Template:
    """A template by name (``dlib150``, ``arcface112``) or as given."""
    if isinstance(template, Template):
        return template
    if template not in TEMPLATES:
        raise ConfigError(f"unknown face template '{template}'; valid names: {', '.join(TEMPLATES)}")
    return TEMPLATES[template]


class HasLandmarks(Protocol):
    """What :func:`align_faces` needs of a detected face."""

    @property
    def landmarks(self) -> np.ndarray: ...

    @property
    def landmark_scheme(self) -> str: ...


def align_faces(
    image: np.ndarray, faces: Sequence[HasLandmarks], template: Template | str = DLIB_150
) -> np.ndarray:
    """Chips of every face, cut from one RGB photo.

    Args:
        image: ``[H, W, 3]`` uint8 RGB pixels (the photo the landmarks refer to).
        faces: detected faces (``faceverify.faces.Face``), in any order.
        template: where the landmarks go; ``dlib150`` for dlib's network.

    Returns:
        ``[len(faces), size, size, 3]`` uint8 chips, in the order of ``faces``.
    """
    chosen = get_template(template)
    landmarks = [np.asarray(f.landmarks, dtype=np.float64) for f in faces]
    schemes = {f.landmark_scheme for f in faces}
    if len(schemes) > 1:
        raise InputError(f"faces mix landmark schemes {sorted(schemes)}; align them separately")
    scheme = schemes.pop() if schemes else "dlib5"
    return align_landmarks(image, np.array(landmarks).reshape(-1, 5, 2), chosen, scheme=scheme)


def align_landmarks(
    image: np.ndarray, landmarks: np.ndarray, template: Template | str = DLIB_150, *, scheme: str = "dlib5"
) -> np.ndarray:
    """Chips for ``[N, K, 2]`` landmark sets (x, y in image pixels) of one photo."""
    chosen = get_template(template)
    pixels = _check_image(image)
    points = chosen.points_for(scheme)
    marks = np.asarray(landmarks, dtype=np.float64)
    if marks.ndim != 3 or marks.shape[1:] != points.shape:
        raise InputError(f"landmarks of shape {marks.shape} do not fit {scheme} ([N, {len(points)}, 2])")
    chips = np.zeros((len(marks), chosen.size, chosen.size, 3), dtype=np.uint8)
    for i, face in enumerate(marks):
        similarity = similarity_transform(points, face)
        footprint = chosen.size * math.hypot(*similarity[:, 0])  # the chip's side in photo pixels
        matrix = _dlib_chip_matrix(similarity, chosen.size) if chosen.dlib_geometry else similarity
        chips[i] = _extract_chip(pixels, matrix, chosen.size, footprint, dlib_offsets=chosen.dlib_geometry)
    return chips


def _check_image(image: np.ndarray) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise InputError(
            f"expected an RGB uint8 image [H, W, 3], got {array.dtype} {array.shape}; "
            "decode photos with faceverify's load_image first"
        )
    return array


# ----------------------------------------------------------------------------------------
# Geometry


def _dlib_chip_matrix(template_to_image: np.ndarray, size: int) -> np.ndarray:
    """dlib's chip→image mapping for a similarity (``chip_details`` + ``extract_image_chips``).

    dlib keeps only the rotation and scale of the fitted transform and a rectangle of
    ``size·scale`` pixels centred on the image of the chip point ``(size/2, size/2)``;
    the chip's first and last pixels then land on that rectangle's (rotated) corners.
    """
    linear = template_to_image[:, :2]
    step = linear @ np.array([1.0, 0.0])
    angle, scale = math.atan2(step[1], step[0]), math.hypot(step[0], step[1])
    centre = apply_transform(template_to_image, np.array([[size / 2.0, size / 2.0]]))[0]
    half = (size * scale - 1.0) / 2.0
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    top_left, top_right, bottom_left = (
        rotation @ np.array(offset) + centre for offset in ((-half, -half), (half, -half), (-half, half))
    )
    columns = (top_right - top_left) / (size - 1)
    rows = (bottom_left - top_left) / (size - 1)
    return np.column_stack([columns, rows, top_left])


def _pyramid_level_count(width: float, height: float, size: int) -> int:
    """How many halvings dlib applies before sampling a ``width × height`` footprint."""
    levels = 0
    while True:
        width, height = (width - 1) / 2 + 1, (height - 1) / 2 + 1
        if width * height <= size * size:
            return levels
        levels += 1


def _extract_chip(
    image: np.ndarray, chip_to_image: np.ndarray, size: int, footprint: float, *, dlib_offsets: bool
) -> np.ndarray:
    """One chip: crop around the face, reduce by the pyramid, then sample.

    Like ``dlib.extract_image_chips``, the crop is the chip's footprint grown by the
    pyramid's border (2 pixels, doubled plus 2 per level) and clipped to the photo.
    """
    corners = apply_transform(
        chip_to_image, np.array([[0, 0], [size - 1, 0], [0, size - 1], [size - 1, size - 1]])
    )
    levels = _pyramid_level_count(footprint, footprint, size)
    grow = 2.0
    for _ in range(levels):
        grow = grow * 2 + 2
    height, width = image.shape[:2]
    left = max(corners[:, 0].min() - grow, 0.0)
    top = max(corners[:, 1].min() - grow, 0.0)
    right = min(corners[:, 0].max() + grow, width - 1.0)
    bottom = min(corners[:, 1].max() + grow, height - 1.0)
    x0, y0, x1, y1 = (math.floor(v + 0.5) for v in (left, top, right, bottom))
    if x1 < x0 or y1 < y0:  # the face lies entirely outside the photo
        return np.zeros((size, size, 3), dtype=np.uint8)
    source = image[y0 : y1 + 1, x0 : x1 + 1]
    matrix = chip_to_image.copy()
    matrix[:, 2] -= (x0, y0)
    offset = np.array([1.25, 0.75]) if dlib_offsets else np.array([1.0, 1.0])
    for _ in range(levels):
        source = pyramid_down(source)
        matrix = matrix / 2.0
        matrix[:, 2] -= offset
    return _bilinear(source, matrix, size, truncate=dlib_offsets)


def pyramid_down(image: np.ndarray) -> np.ndarray:
    """Halve an RGB image with a 5×5 binomial filter (integer arithmetic, as dlib does).

    Output pixel ``(i, j)`` is centred on input pixel ``(2i + 2, 2j + 2)``; images of 8
    pixels or fewer on a side give an empty result.
    """
    height, width = image.shape[:2]
    if height <= 8 or width <= 8:
        return np.zeros((0, 0, 3), dtype=np.uint8)
    out_h, out_w = (height - 3) // 2, (width - 3) // 2
    # Sums are exact in uint16 (at most 255·256), so the order of the two passes is
    # free: filtering down the columns first reads whole rows, which is faster than dlib's order.
    x = image.astype(np.uint16)
    cols = x[0 : 2 * out_h : 2] + x[4 : 2 * out_h + 4 : 2]
    cols += (x[1 : 2 * out_h + 1 : 2] + x[3 : 2 * out_h + 3 : 2]) * 4
    cols += x[2 : 2 * out_h + 2 : 2] * 6
    both = cols[:, 0 : 2 * out_w : 2] + cols[:, 4 : 2 * out_w + 4 : 2]
    both += (cols[:, 1 : 2 * out_w + 1 : 2] + cols[:, 3 : 2 * out_w + 3 : 2]) * 4
    both += cols[:, 2 : 2 * out_w + 2 : 2] * 6
    return (both >> 8).astype(np.uint8)


def _bilinear(image: np.ndarray, chip_to_image: np.ndarray, size: int, *, truncate: bool) -> np.ndarray:
    """Bilinear samples at the mapped chip pixels; 0 where the 2×2 neighbourhood leaves the image.

    dlib truncates the interpolated value when it stores a pixel (``truncate``); the
    other templates round it.
    """
    cols, rows = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64))
    x = chip_to_image[0, 0] * cols + chip_to_image[0, 1] * rows + chip_to_image[0, 2]
    y = chip_to_image[1, 0] * cols + chip_to_image[1, 1] * rows + chip_to_image[1, 2]
    left, top = np.floor(x), np.floor(y)
    height, width = image.shape[:2]
    inside = (left >= 0) & (top >= 0) & (left + 1 < width) & (top + 1 < height)
    li = np.where(inside, left, 0).astype(np.intp)
    ti = np.where(inside, top, 0).astype(np.intp)
    fx, fy = (x - left)[..., None], (y - top)[..., None]
    if not inside.any():
        return np.zeros((size, size, 3), dtype=np.uint8)
    tl, tr = image[ti, li].astype(np.float64), image[ti, li + 1].astype(np.float64)
    bl, br = image[ti + 1, li].astype(np.float64), image[ti + 1, li + 1].astype(np.float64)
    value = (1 - fy) * ((1 - fx) * tl + fx * tr) + fy * ((1 - fx) * bl + fx * br)
    if not truncate:
        value = np.minimum(value + 0.5, 255.0)
    return np.where(inside[..., None], value, 0.0).astype(np.uint8)
