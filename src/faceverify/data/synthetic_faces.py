"""A synthetic face-like dataset, so the whole pipeline runs offline in minutes on a CPU.

Each identity is a fixed set of facial traits: face shape and skin tone, eye spacing, size
and colour, brow and nose, mouth width and curve, hair colour and line. Each image of an
identity varies what photos vary: pose (rotation, shift, scale), lighting (brightness and a
directional gradient), background and sensor noise. Telling people apart therefore needs
the traits, not the pixels, which is what a face embedding must learn.

The layout is the course's: ``classification_train/<id>/*.jpg``,
``classification_val/<id>/*.jpg`` (two images each), and held-out identities in
``verification_data/`` with ``verification_pairs_val.txt`` (labelled) and
``verification_pairs_test.txt`` (no labels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

_SUPERSAMPLE = 3  # draw larger, then shrink: smooth edges without an anti-aliasing library


@dataclass(frozen=True)
class Traits:
    """What stays the same across photos of one synthetic person."""

    skin: tuple[int, int, int]
    face_w: float
    face_h: float
    eye_dx: float
    eye_y: float
    eye_r: float
    iris: tuple[int, int, int]
    brow_tilt: float
    nose_len: float
    mouth_w: float
    mouth_curve: float
    mouth_y: float
    hair: tuple[int, int, int]
    hair_line: float

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Traits:
        tone = rng.uniform(0.25, 1.0)
        skin = tuple(int(c) for c in np.array([235, 190, 160]) * tone + rng.normal(0, 12, 3))
        return cls(
            skin=_rgb(skin),
            face_w=rng.uniform(0.52, 0.72),
            face_h=rng.uniform(0.66, 0.86),
            eye_dx=rng.uniform(0.13, 0.22),
            eye_y=rng.uniform(0.36, 0.46),
            eye_r=rng.uniform(0.035, 0.07),
            iris=_rgb(rng.integers(20, 200, 3)),
            brow_tilt=rng.uniform(-0.06, 0.06),
            nose_len=rng.uniform(0.08, 0.18),
            mouth_w=rng.uniform(0.12, 0.3),
            mouth_curve=rng.uniform(-0.06, 0.08),
            mouth_y=rng.uniform(0.66, 0.76),
            hair=_rgb(rng.integers(10, 230, 3)),
            hair_line=rng.uniform(0.12, 0.3),
        )


def _rgb(values: object) -> tuple[int, int, int]:
    r, g, b = (int(np.clip(v, 0, 255)) for v in values)  # type: ignore[attr-defined]
    return (r, g, b)


def render(traits: Traits, rng: np.random.Generator, size: int = 64) -> Image.Image:
    """One photo of a person: their traits under a random pose, light and noise."""
    big = size * _SUPERSAMPLE
    background = _rgb(rng.integers(40, 220, 3))
    canvas = Image.new("RGB", (big, big), background)
    _draw_face(ImageDraw.Draw(canvas), traits, big)
    angle, scale = rng.normal(0, 8), rng.uniform(0.9, 1.1)
    shift = rng.normal(0, 0.04 * big, 2)
    canvas = canvas.rotate(
        angle, resample=Image.Resampling.BICUBIC, translate=tuple(shift), fillcolor=background
    )
    if scale < 1:  # zoom out: surround with background, then shrink
        pad = int(big * (1 / scale - 1) / 2)
        framed = Image.new("RGB", (big + 2 * pad, big + 2 * pad), background)
        framed.paste(canvas, (pad, pad))
        canvas, crop = framed, 0.0
    else:  # zoom in: keep the centre
        crop = big * (1 - 1 / scale) / 2
    side = canvas.width
    canvas = canvas.resize((size, size), Image.Resampling.BICUBIC, box=(crop, crop, side - crop, side - crop))
    pixels = np.asarray(canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.6))), dtype=np.float32)
    return Image.fromarray(_light(pixels, rng))


def _draw_face(draw: ImageDraw.ImageDraw, t: Traits, big: int) -> None:
    def box(cx: float, cy: float, rx: float, ry: float) -> tuple[float, float, float, float]:
        return ((cx - rx) * big, (cy - ry) * big, (cx + rx) * big, (cy + ry) * big)

    draw.ellipse(box(0.5, 0.52, t.face_w / 2 + 0.03, t.face_h / 2 + 0.03), fill=t.hair)  # hair behind
    draw.ellipse(box(0.5, 0.55, t.face_w / 2, t.face_h / 2), fill=t.skin)
    top = 0.55 - t.face_h / 2
    draw.chord(box(0.5, top + t.hair_line, t.face_w / 2, t.hair_line + 0.02), 180, 360, fill=t.hair)
    for side in (-1, 1):
        x = 0.5 + side * t.eye_dx
        draw.ellipse(box(x, t.eye_y, t.eye_r * 1.6, t.eye_r), fill=(245, 245, 245))
        draw.ellipse(box(x, t.eye_y, t.eye_r * 0.8, t.eye_r * 0.8), fill=t.iris)
        brow_y = t.eye_y - t.eye_r - 0.03
        draw.line(
            [
                (x - 0.06) * big,
                (brow_y + side * t.brow_tilt) * big,
                (x + 0.06) * big,
                (brow_y - side * t.brow_tilt) * big,
            ],
            fill=t.hair,
            width=max(1, big // 40),
        )
    nose_top, dark = t.eye_y + 0.05, tuple(int(c * 0.7) for c in t.skin)
    draw.line(
        [0.5 * big, nose_top * big, 0.5 * big, (nose_top + t.nose_len) * big],
        fill=dark,
        width=max(1, big // 50),
    )
    mouth = [(0.5 + dx * t.mouth_w / 2) for dx in np.linspace(-1, 1, 9)]
    points = [
        (x * big, (t.mouth_y + t.mouth_curve * (1 - ((x - 0.5) / (t.mouth_w / 2)) ** 2)) * big) for x in mouth
    ]
    draw.line(points, fill=(150, 40, 50), width=max(1, big // 30))


def _light(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = pixels.shape[:2]
    direction = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w) - 0.5
    gradient = 1 + rng.uniform(0, 0.5) * (np.cos(direction) * xx + np.sin(direction) * yy)
    lit = pixels * rng.uniform(0.7, 1.25) * gradient[..., None] + rng.normal(
        0, rng.uniform(2, 8), pixels.shape
    )
    return np.clip(lit, 0, 255).astype(np.uint8)


def generate(
    out: str | Path,
    *,
    identities: int = 100,
    images_per_identity: int = 20,
    held_out: int = 20,
    images_per_held_out: int = 4,
    size: int = 64,
    seed: int = 0,
) -> Path:
    """Write a synthetic dataset in the course layout; returns the data root.

    Args:
        out: the data root to create.
        identities: people in the classification sets (train, and val with 2 images each).
        images_per_identity: training images per person.
        held_out: people seen only in the verification pairs.
        images_per_held_out: images of each held-out person.
        size: image side in pixels (the course uses 64).
        seed: everything is reproducible from it.
    """
    root = Path(out)
    rng = np.random.default_rng(seed)
    for index in range(identities):
        traits = Traits.sample(rng)
        name = f"id{index:05d}"
        for split, count in (("classification_train", images_per_identity), ("classification_val", 2)):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(count):
                render(traits, rng, size).save(folder / f"{k:03d}.jpg", quality=92)
    _verification(root, rng, held_out, images_per_held_out, size)
    return root


def _verification(root: Path, rng: np.random.Generator, people: int, per_person: int, size: int) -> None:
    folder = root / "verification_data"
    folder.mkdir(parents=True, exist_ok=True)
    files: list[list[str]] = []
    for person in range(people):
        traits = Traits.sample(rng)
        names = [f"verification_data/{person:04d}_{k}.jpg" for k in range(per_person)]
        for name in names:
            render(traits, rng, size).save(root / name, quality=92)
        files.append(names)
    lines = []
    impostors: set[frozenset[str]] = set()
    for person, names in enumerate(files):
        lines += [f"{a} {b} 1" for i, a in enumerate(names) for b in names[i + 1 :]]
        others = [p for p in range(people) if p != person]
        for a in names:
            for _ in range(10):  # a fresh impostor pair; give up after a few repeats
                other = files[int(rng.choice(others))]
                b = other[int(rng.integers(len(other)))]
                if frozenset((a, b)) not in impostors:
                    impostors.add(frozenset((a, b)))
                    lines.append(f"{a} {b} 0")
                    break
    order = rng.permutation(len(lines))
    val = [lines[i] for i in order]
    (root / "verification_pairs_val.txt").write_text("\n".join(val) + "\n")
    (root / "verification_pairs_test.txt").write_text("\n".join(" ".join(v.split()[:2]) for v in val) + "\n")
