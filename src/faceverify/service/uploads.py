"""Uploaded photos: limits checked, then decoded by the library; faces as the API shows them.

Every upload is checked against :class:`~faceverify.service.settings.Limits` (count and
bytes before it is read, pixels from its header before it is decoded), then decoded by
:func:`faceverify.decode.load_image`. Finding, aligning and embedding faces is the
library's (:mod:`faceverify.photos`, used through ``embed_images`` and ``Gallery``); here
a found face only becomes JSON, and a photo that must show one person is checked to.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from faceverify.decode import load_image
from faceverify.errors import ImageError
from faceverify.photos import NO_FACE, FaceOptions, find_faces
from faceverify.service.errors import FaceCountError, PayloadTooLargeError
from faceverify.service.settings import Limits

if TYPE_CHECKING:
    from fastapi import UploadFile
    from PIL import Image

    from faceverify.faces.detect import Face
    from faceverify.runtime.base import Embedder

#: Longest upload name echoed back in messages.
_NAME_LENGTH = 80


@dataclass(frozen=True)
class Photo:
    """A decoded upload and how messages name it."""

    label: str
    image: Image.Image

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.label, "width": self.image.width, "height": self.image.height}

    def face_dict(self, face: Face | None) -> dict[str, Any]:
        """A face as the API shows it; without detection the face is the whole image."""
        if face is None:
            box = (0.0, 0.0, float(self.image.width), float(self.image.height))
            return {"box": _box(box), "score": None, "landmarks": None}
        landmarks = [(float(x), float(y)) for x, y in np.asarray(face.landmarks)]
        return {"box": _box(face.box), "score": float(face.score), "landmarks": landmarks}


def _box(box: tuple[float, float, float, float]) -> dict[str, float]:
    left, top, right, bottom = (float(v) for v in box)
    return {"left": left, "top": top, "right": right, "bottom": bottom}


def face_count_error(label: str, found: int) -> FaceCountError:
    """422 for a photo that must show one face and shows ``found``."""
    if found == 0:
        return FaceCountError(f"{label}: {NO_FACE}", code="no_face")
    return FaceCountError(
        f"{label}: {found} faces found where one is needed; crop the photo to one face",
        code="several_faces",
    )


def label_of(field: str, upload: UploadFile) -> str:
    """How an upload is named in messages: its form field and (shortened) file name."""
    name = (upload.filename or "").replace("\n", " ")[:_NAME_LENGTH]
    return f"{field} ({name!r})" if name else field


class PhotoReader:
    """Reads uploads within the limits; at most ``decoders`` decode at once (memory).

    Args:
        limits: what one request may carry.
        decoders: uploads decoded at the same time, process-wide.
        faces: how the service finds faces (for the one-face check).
    """

    def __init__(self, limits: Limits, decoders: int, faces: FaceOptions) -> None:
        self.limits = limits
        self.faces = faces
        self._slots = threading.BoundedSemaphore(decoders)

    def check_count(self, uploads: list[UploadFile]) -> None:
        if len(uploads) > self.limits.max_images:
            raise PayloadTooLargeError(
                f"{len(uploads)} images in one request; the limit is {self.limits.max_images}",
                code="too_many_images",
            )

    def read(self, field: str, upload: UploadFile) -> Photo:
        """One upload, decoded (sync: runs in a worker thread)."""
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
        return Photo(label=label, image=image)

    def read_all(self, field: str, uploads: list[UploadFile]) -> list[Photo]:
        self.check_count(uploads)
        return [self.read(f"{field}[{i}]", upload) for i, upload in enumerate(uploads)]

    def one_face(self, photo: Photo, model: Embedder) -> Face | None:
        """The photo's only face (None when faces are not detected: the photo is the face).

        422 for none or several: the library would take the largest of several faces,
        but enrolling or checking a claimed identity from a group photo is refused.
        """
        if not self.faces.applies_to(model):
            return None
        found = find_faces(np.asarray(photo.image), self.faces)
        if len(found) != 1:
            raise face_count_error(photo.label, len(found))
        return found[0]

    def detect(self, photo: Photo) -> list[Face]:
        """Every face in the photo, largest first (detection always on)."""
        return find_faces(np.asarray(photo.image), self.faces)


def _size_of(upload: UploadFile) -> int:
    upload.file.seek(0, 2)
    return int(upload.file.tell())
