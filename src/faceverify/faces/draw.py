"""Pictures of faces found: each face boxed, its landmarks dotted, its name written above.

Where a picture beats numbers (``faceverify detect --annotate``): a glance shows which
faces were found, which were named and which are strangers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy as np
    from PIL import Image

    from faceverify.faces.detect import Face


def draw_faces(pixels: np.ndarray, faces: list[Face], labels: list[str | None]) -> Image.Image:
    """The photo with each face boxed, its landmarks dotted and its label written above.

    Args:
        pixels: ``[H, W, 3]`` uint8 RGB, the photo the faces were found in.
        faces: the faces to draw.
        labels: one per face: a name (green), ``"unknown"`` (red), or None to write the
            detector's score (blue).
    """
    texts = [label or f"{face.score:.2f}" for face, label in zip(faces, labels)]
    colours = [label_colour(label) for label in labels]
    return draw_boxes(
        pixels, [face.box for face in faces], texts, colours, [face.landmarks for face in faces]
    )


def draw_boxes(
    pixels: np.ndarray,
    boxes: Sequence[Sequence[float]],
    texts: list[str],
    colours: list[tuple[int, int, int]],
    landmarks: Sequence[np.ndarray] | None = None,
) -> Image.Image:
    """The picture with each box outlined in its colour and its text written above it
    (video frames use it with a track's name; :func:`draw_faces` with a photo's faces)."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.fromarray(pixels).convert("RGB")
    draw = ImageDraw.Draw(image)
    side = max(image.size)
    width = max(2, side // 300)
    size = max(14, side // 45)
    font = ImageFont.load_default(size=size)
    for index, (box, text, colour) in enumerate(zip(boxes, texts, colours)):
        draw.rectangle(tuple(box), outline=colour, width=width)
        for x, y in landmarks[index] if landmarks is not None else ():
            draw.ellipse((x - width, y - width, x + width, y + width), fill=(255, 220, 0))
        left, top = box[0], max(0.0, box[1] - size - 2 * width)
        area = draw.textbbox((left, top), text, font=font)
        draw.rectangle(area, fill=colour)
        draw.text((left, top), text, fill=(255, 255, 255), font=font)
    return image


def label_colour(label: str | None) -> tuple[int, int, int]:
    """Green for a name, red for ``unknown``, blue for anything else (a score, unidentified)."""
    if label == "unknown":
        return (230, 60, 60)
    if label is None or label == "unidentified":
        return (60, 140, 255)
    return (40, 200, 80)
