"""Uploaded photos: limits checked, decoded by the library, and their faces found.

Every upload is checked against :class:`~faceverify.service.settings.Limits` (count and
bytes before it is read, pixels from its header before it is decoded), then decoded by
:func:`faceverify.io.load_image`. :func:`find_faces` is where face detection plugs in.

DETECTION SEAM: until ``faceverify.faces`` (detection and alignment) is part of the
library, each uploaded image is taken to be one face crop: its face is the whole image
and the chip the model embeds is the image itself. Once detection lands,
:func:`find_faces` calls ``detect_faces`` and ``align_faces`` and returns one
:class:`FoundFace` per face with its box, score, landmarks and aligned chip; nothing
else in the service changes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from faceverify.errors import ImageError
from faceverify.io import load_image
from faceverify.service.errors import FaceCountError, PayloadTooLargeError
from faceverify.service.settings import Limits

if TYPE_CHECKING:
    from fastapi import UploadFile
    from PIL import Image

#: Which detector found the faces the service reports ("none": uploads are face crops).
DETECTOR = "none"
#: Longest upload name echoed back in messages.
_NAME_LENGTH = 80


@dataclass(frozen=True)
class FoundFace:
    """One face of a photo and the chip the model embeds for it.

    Attributes:
        box: ``(left, top, right, bottom)`` in the photo's pixels.
        score: the detector's confidence, or None without a detector.
        landmarks: five ``(x, y)`` points, or None without a detector.
        chip: the face as the model takes it (aligned crop, or the whole crop).
    """

    box: tuple[float, float, float, float]
    score: float | None
    landmarks: list[tuple[float, float]] | None
    chip: Image.Image

    def to_dict(self) -> dict[str, Any]:
        left, top, right, bottom = self.box
        return {
            "box": {"left": left, "top": top, "right": right, "bottom": bottom},
            "score": self.score,
            "landmarks": self.landmarks,
        }


@dataclass(frozen=True)
class Photo:
    """A decoded upload and its faces, largest first."""

    label: str
    width: int
    height: int
    faces: list[FoundFace]

    def one_face(self) -> FoundFace:
        """The photo's only face; 422 when it has none or several."""
        if len(self.faces) == 1:
            return self.faces[0]
        if not self.faces:
            raise FaceCountError(f"{self.label}: no face found", code="no_face")
        raise FaceCountError(
            f"{self.label}: {len(self.faces)} faces found where one is needed; crop the photo to one face",
            code="several_faces",
        )


def find_faces(image: Image.Image) -> list[FoundFace]:
    """Every face of a decoded photo, largest first (the detection seam: see the module)."""
    return [
        FoundFace(
            box=(0.0, 0.0, float(image.width), float(image.height)), score=None, landmarks=None, chip=image
        )
    ]


def label_of(field: str, upload: UploadFile) -> str:
    """How an upload is named in messages: its form field and (shortened) file name."""
    name = (upload.filename or "").replace("\n", " ")[:_NAME_LENGTH]
    return f"{field} ({name!r})" if name else field


class PhotoReader:
    """Reads uploads within the limits; at most ``decoders`` decode at once (memory)."""

    def __init__(self, limits: Limits, decoders: int) -> None:
        self.limits = limits
        self._slots = threading.BoundedSemaphore(decoders)

    def check_count(self, uploads: list[UploadFile]) -> None:
        if len(uploads) > self.limits.max_images:
            raise PayloadTooLargeError(
                f"{len(uploads)} images in one request; the limit is {self.limits.max_images}",
                code="too_many_images",
            )

    def read(self, field: str, upload: UploadFile) -> Photo:
        """One upload decoded and its faces found (sync: runs in a worker thread)."""
        label = label_of(field, upload)
        size = upload.size if upload.size is not None else _size_of(upload)
        if size > self.limits.max_image_bytes:
            raise PayloadTooLargeError(
                f"{label}: {size:,} bytes; the limit per image is {self.limits.max_image_bytes:,}",
                code="image_too_large",
            )
        upload.file.seek(0)
        data = upload.file.read()
        with self._slots:
            try:
                image = load_image(data, max_pixels=self.limits.max_pixels)
            except ImageError as exc:
                raise ImageError(label, exc.reason) from None
            faces = find_faces(image)
        return Photo(label=label, width=image.width, height=image.height, faces=faces)

    def read_all(self, field: str, uploads: list[UploadFile]) -> list[Photo]:
        self.check_count(uploads)
        return [self.read(f"{field}[{i}]", upload) for i, upload in enumerate(uploads)]


def _size_of(upload: UploadFile) -> int:
    upload.file.seek(0, 2)
    return int(upload.file.tell())
