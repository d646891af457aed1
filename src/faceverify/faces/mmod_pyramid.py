"""The image geometry of dlib's MMOD detector: its tiled pyramid and its upsampling.

dlib's ``input_rgb_image_pyramid<pyramid_down<6>>`` does not run the network once per
scale: it packs every level of a 5/6 pyramid into one padded image (the levels stacked
down a first column, then the smaller ones back up a second column), runs the network
once on it, and maps each output position back through the level whose rectangle is
nearest. Reproducing that layout, rather than running levels one by one, makes the
network see the same zero padding and the same neighbouring levels at every border, so
scores and boxes match dlib's rather than differ near the edges.

Everything here is numpy and integer geometry, written from dlib's definitions:
``compute_tiled_image_pyramid_details``, ``pyramid_down<N>`` (``point_up(p) = p * N /
(N-1) + 0.3``), ``resize_image`` (bilinear with corners aligned) and ``pyramid_up`` with
``pyramid_down<2>`` (how dlib's Python detector upsamples before detecting).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: dlib stops the pyramid at levels shorter than this (rows).
MIN_LEVEL_ROWS = 5

#: A rectangle as dlib's: ``(left, top, right, bottom)``, corners included.
Rect = tuple[int, int, int, int]


@dataclass(frozen=True)
class TiledPyramid:
    """Where each pyramid level sits in the tiled image.

    Attributes:
        rects: one rectangle per level, level 0 (the image itself) first.
        rows, cols: the size of the tiled image.
        rate_denominator: ``N`` of ``pyramid_down<N>``: each level is ``(N-1)/N`` of the last.
    """

    rects: tuple[Rect, ...]
    rows: int
    cols: int
    rate_denominator: int

    def to_image(self, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """A box of the tiled image in the original image's pixels, through the nearest level."""
        left, top, right, bottom = box
        level = self.nearest_level(_round_half_away((left + right) / 2), _round_half_away((top + bottom) / 2))
        origin_x, origin_y = self.rects[level][0], self.rects[level][1]
        x0, y0 = self._point_up(left - origin_x, top - origin_y, level)
        x1, y1 = self._point_up(right - origin_x, bottom - origin_y, level)
        return (x0, y0, x1, y1)

    def nearest_level(self, x: int, y: int) -> int:
        """The first level containing the point, else the nearest one (as dlib's ``nearest_rect``)."""
        best, best_dist = 0, math.inf
        for index, (left, top, right, bottom) in enumerate(self.rects):
            dx = x - min(max(x, left), right)
            dy = y - min(max(y, top), bottom)
            if dx == 0 and dy == 0:
                return index
            dist = math.hypot(dx, dy)
            if dist < best_dist:
                best, best_dist = index, dist
        return best

    def _point_up(self, x: float, y: float, levels: int) -> tuple[float, float]:
        ratio = self.rate_denominator / (self.rate_denominator - 1.0)
        for _ in range(levels):
            x, y = x * ratio + 0.3, y * ratio + 0.3
        return x, y


def tiled_pyramid(
    rows: int, cols: int, *, padding: int, outer_padding: int, denominator: int = 6
) -> TiledPyramid:
    """The layout dlib computes for an image of ``rows`` x ``cols``.

    The first column takes levels until the next one fits beside level 0 and the
    column is at least half the total height; the rest go bottom-up on the right,
    stopping before one would overlap level 0.
    """
    sizes = _level_sizes(rows, cols, denominator)
    if not sizes:
        return TiledPyramid((), 0, 0, denominator)
    height = _first_column_height(sizes, padding)
    width = sizes[0][1]
    rects: list[Rect] = []
    y = outer_padding
    index = 0
    while y < height + outer_padding and index < len(sizes):
        level_rows, level_cols = sizes[index]
        rects.append((outer_padding, y, outer_padding + level_cols - 1, y + level_rows - 1))
        y += level_rows + padding
        index += 1
    y -= padding
    first = rects[0]
    for level_rows, level_cols in sizes[index:]:
        right, bottom = outer_padding + width - 1, y - 1
        rect = (right - level_cols + 1, bottom - level_rows + 1, right, bottom)
        if _intersects(first, rect):
            break
        rects.append(rect)
        y -= level_rows + padding
    return TiledPyramid(tuple(rects), height + 2 * outer_padding, width + 2 * outer_padding, denominator)


def _level_sizes(rows: int, cols: int, denominator: int) -> list[tuple[int, int]]:
    if rows * cols == 0:
        return []
    rate = (denominator - 1.0) / denominator
    sizes = [(rows, cols)]
    while True:
        rows, cols = math.floor(rate * rows), math.floor(rate * cols)
        if rows * cols == 0 or rows < MIN_LEVEL_ROWS:
            return sizes
        sizes.append((rows, cols))


def _first_column_height(sizes: list[tuple[int, int]], padding: int) -> int:
    total = sum(level_rows + padding for level_rows, _ in sizes) - 2 * padding
    first_rows, first_cols = sizes[0]
    height, previous_cols = 0, 0
    for level_rows, level_cols in sizes:
        fits_beside = level_cols <= first_cols - previous_cols - padding
        if fits_beside and (height - first_rows) * 2 >= total - first_rows:
            break
        height += level_rows + padding
        previous_cols = level_cols
    return height - padding


def _intersects(a: Rect, b: Rect) -> bool:
    return max(a[0], b[0]) <= min(a[2], b[2]) and max(a[1], b[1]) <= min(a[3], b[3])


def build_tiled_image(levels0: np.ndarray, pyramid: TiledPyramid) -> np.ndarray:
    """The ``[1, C, rows, cols]`` float32 tensor: level 0 given, each next level resized
    bilinearly from the one before (as dlib fills its tensor), zeros elsewhere."""
    channels = levels0.shape[0]
    tiled = np.zeros((1, channels, pyramid.rows, pyramid.cols), dtype=np.float32)
    level = levels0.astype(np.float32, copy=False)
    for index, (left, top, right, bottom) in enumerate(pyramid.rects):
        if index:
            level = resize_bilinear(level, bottom - top + 1, right - left + 1)
        tiled[0, :, top : bottom + 1, left : right + 1] = level
    return tiled


def resize_bilinear(image: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """``[C, H, W]`` resized to ``[C, rows, cols]`` with dlib's bilinear rule: output pixel
    ``i`` samples input position ``i * (in-1)/(out-1)`` (corners aligned)."""
    top, bottom, fy = _taps(image.shape[1], rows)
    left, right, fx = _taps(image.shape[2], cols)
    vertical = image[:, top, :] * (1 - fy)[None, :, None] + image[:, bottom, :] * fy[None, :, None]
    out = vertical[:, :, left] * (1 - fx)[None, None, :] + vertical[:, :, right] * fx[None, None, :]
    return out.astype(image.dtype, copy=False)


def _taps(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scale = (size_in - 1) / max(size_out - 1, 1)
    position = np.arange(size_out, dtype=np.float64) * scale
    low = np.floor(position).astype(np.int64)
    low = np.minimum(low, size_in - 1)
    high = np.minimum(low + 1, size_in - 1)
    return low, high, (position - low).astype(np.float32)


def upsample_twice(image: np.ndarray) -> np.ndarray:
    """An RGB uint8 photo doubled as dlib's ``pyramid_up`` with ``pyramid_down<2>`` does.

    dlib sizes the result from the rounded ``point_up`` of the image's corners, which
    gives ``2H + 1`` rows and ``2W + 2`` columns, then resizes bilinearly.
    """
    rows, cols = image.shape[:2]
    new_rows, new_cols = 2 * rows + 1, 2 * cols + 2
    resized = resize_bilinear(image.transpose(2, 0, 1).astype(np.float32), new_rows, new_cols)
    return np.clip(np.floor(resized + 0.5), 0, 255).astype(np.uint8).transpose(1, 2, 0)


def rect_down_twice(box: Rect, levels: int) -> Rect:
    """A rectangle of the ``levels`` times upsampled photo in the photo's pixels, rounded
    as dlib's Python detector does (``p / 2 - (1.25, 0.75)`` per level)."""
    left, top, right, bottom = (float(v) for v in box)
    for _ in range(levels):
        left, right = left / 2 - 1.25, right / 2 - 1.25
        top, bottom = top / 2 - 0.75, bottom / 2 - 0.75
    return round_rect((left, top, right, bottom))


def round_rect(box: tuple[float, float, float, float]) -> Rect:
    """A box rounded to whole pixels as dlib converts ``drectangle`` to ``rectangle``."""
    left, top, right, bottom = box
    return (_round_half_away(left), _round_half_away(top), _round_half_away(right), _round_half_away(bottom))


def _round_half_away(value: float) -> int:
    """C's ``lround``: halves away from zero (Python's ``round`` goes to even)."""
    return int(math.copysign(math.floor(abs(value) + 0.5), value))
