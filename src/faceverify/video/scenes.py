"""Synthetic clips made from real photos: people walking past a camera, for tests,
benchmarks and demos of video handling where no recorded footage may be shipped.

A :class:`Walker` is a head-and-shoulders cut-out of a photo (:func:`portrait`) that enters
the frame at ``start`` seconds, moves along a straight line and leaves at ``end``; frames are
painted over a textured background (so the encoder has real work), optionally blurred along
the motion as a real camera's shutter would. :func:`write_clip` encodes frames with PyAV.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from faceverify.errors import ConfigError
from faceverify.extras import VIDEO


@dataclass(frozen=True)
class Walker:
    """One person crossing the scene.

    Attributes:
        image: ``[H, W, 3]`` uint8 RGB cut-out (see :func:`portrait`).
        start, end: seconds when the cut-out's centre is at ``origin`` / ``target``.
        origin, target: the centre's positions as fractions of the frame (x, y); values
            outside [0, 1] start or end outside the frame (entering, leaving).
        height: the cut-out's height as a fraction of the frame's height.
    """

    image: np.ndarray
    start: float
    end: float
    origin: tuple[float, float]
    target: tuple[float, float]
    height: float = 0.5

    def centre(self, t: float) -> tuple[float, float] | None:
        if not self.start <= t <= self.end:
            return None
        share = (t - self.start) / max(self.end - self.start, 1e-9)
        return (
            self.origin[0] + share * (self.target[0] - self.origin[0]),
            self.origin[1] + share * (self.target[1] - self.origin[1]),
        )


def portrait(pixels: np.ndarray, box: Sequence[float], *, margin: float = 0.9) -> np.ndarray:
    """The region around a face box, ``margin`` box widths added on each side (clipped to the
    photo): the head with some hair and shoulders, so a detector sees a whole face."""
    from faceverify.video.tracks import face_crop

    return face_crop(pixels, box, margin, below=1.3)


def background(size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A textured ``[H, W, 3]`` backdrop: a gradient with soft blotches (a wall, a corridor)."""
    width, height = size
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 1.0, (height // 16 + 1, width // 16 + 1, 3)).astype(np.float32)
    coarse = Image.fromarray(np.clip(128 + 40 * noise, 0, 255).astype(np.uint8)).resize(
        (width, height), Image.Resampling.BICUBIC
    )
    ramp = np.linspace(0.6, 1.0, height, dtype=np.float32)[:, None, None]
    return (np.asarray(coarse, dtype=np.float32) * ramp).clip(0, 255).astype(np.uint8)


def render(
    walkers: Sequence[Walker],
    *,
    size: tuple[int, int] = (640, 360),
    fps: float = 15.0,
    duration: float | None = None,
    motion_blur: float = 0.0,
    seed: int = 0,
) -> Iterator[np.ndarray]:
    """The clip's frames, ``[H, W, 3]`` uint8 RGB, ``fps`` a second for ``duration`` seconds
    (default: until the last walker leaves).

    Args:
        motion_blur: the exposure as a share of the frame interval (0.5: a half-open shutter
            blurs each walker over half of its movement between frames).
    """
    if fps <= 0 or size[0] < 16 or size[1] < 16:
        raise ConfigError(f"fps {fps!r} must be positive and size {size!r} at least 16x16")
    width, height = size
    backdrop = background(size, seed)
    sprites = [_scaled(w.image, max(int(w.height * height), 8)) for w in walkers]
    total = duration if duration is not None else max((w.end for w in walkers), default=0.0)
    for index in range(round(total * fps)):
        t = index / fps
        frame = Image.fromarray(backdrop)
        for walker, sprite in zip(walkers, sprites):
            centre = walker.centre(t)
            if centre is None:
                continue
            shift = _pixels_per_frame(walker, size, fps) * motion_blur
            image = _smeared(sprite, shift)
            x = int(centre[0] * width - image.width / 2)
            y = int(centre[1] * height - image.height / 2)
            frame.paste(image, (x, y))
        yield np.asarray(frame)


def write_clip(
    path: str | os.PathLike[str],
    frames: Iterable[np.ndarray],
    *,
    fps: float = 15.0,
    codec: str = "libx264",
    options: dict[str, str] | None = None,
) -> int:
    """Encode RGB frames to ``path`` (the container from its suffix); the frame count.

    ``codec`` ``libx264`` (mp4, mkv, mov), ``libvpx-vp9`` (webm) or ``mpeg4`` (avi) are in
    PyAV's wheels."""
    VIDEO.require("writing video")
    from fractions import Fraction

    import av

    count = 0
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.pix_fmt = "yuv420p"
        stream.options = (
            {"preset": "veryfast", **(options or {})} if codec == "libx264" else dict(options or {})
        )
        for pixels in frames:
            if count == 0:
                stream.width, stream.height = pixels.shape[1] // 2 * 2, pixels.shape[0] // 2 * 2
            frame = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(pixels[: stream.height, : stream.width]), format="rgb24"
            )
            container.mux(stream.encode(frame))
            count += 1
        container.mux(stream.encode(None))
    return count


def _scaled(image: np.ndarray, height: int) -> Image.Image:
    width = max(int(image.shape[1] * height / image.shape[0]), 1)
    return Image.fromarray(image).resize((width, height), Image.Resampling.LANCZOS)


def _pixels_per_frame(walker: Walker, size: tuple[int, int], fps: float) -> float:
    seconds = max(walker.end - walker.start, 1e-9)
    dx = (walker.target[0] - walker.origin[0]) * size[0]
    dy = (walker.target[1] - walker.origin[1]) * size[1]
    return float(np.hypot(dx, dy)) / (seconds * fps)


def _smeared(sprite: Image.Image, shift: float) -> Image.Image:
    """The sprite blurred over ``shift`` pixels, its movement during the exposure (a box
    blur in both directions: a rough shutter, enough to cost a detector and the quality score)."""
    if shift < 1.0:
        return sprite
    return sprite.filter(ImageFilter.BoxBlur(shift / 2))
