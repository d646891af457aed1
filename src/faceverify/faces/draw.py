"""Pictures of faces found: each face boxed, its landmarks dotted, its name written above.

Where a picture beats numbers (``faceverify detect --annotate``): a glance shows which
faces were found, which were named and which are strangers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
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
    from PIL import Image, ImageDraw, ImageFont

    image = Image.fromarray(pixels).convert("RGB")
    draw = ImageDraw.Draw(image)
    side = max(image.size)
    width = max(2, side // 300)
    size = max(14, side // 45)
    font = ImageFont.load_default(size=size)
    for face, label in zip(faces, labels):
        known = label is not None and label != "unknown"
        colour = (40, 200, 80) if known else (230, 60, 60) if label == "unknown" else (60, 140, 255)
        draw.rectangle(face.box, outline=colour, width=width)
        for x, y in face.landmarks:
            draw.ellipse((x - width, y - width, x + width, y + width), fill=(255, 220, 0))
        text = label or f"{face.score:.2f}"
        left, top = face.box[0], max(0.0, face.box[1] - size - 2 * width)
        box = draw.textbbox((left, top), text, font=font)
        draw.rectangle(box, fill=colour)
        draw.text((left, top), text, fill=(255, 255, 255), font=font)
    return image
