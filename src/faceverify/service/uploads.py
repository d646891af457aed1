"""Uploaded photos: limits checked, then decoded by the library; faces as the API shows them.

Every upload is checked against :class:`~faceverify.service.settings.Limits` (count and
bytes before it is read; format and pixels from its header, per image and per request),
weighed against the process-wide :class:`DecodeBudget`, then decoded by
:func:`faceverify.decode.load_image`. Finding, aligning and embedding faces is the
library's (:mod:`faceverify.photos`, used through ``embed_images`` and ``Gallery``), with
the same policy for several faces as the library and the CLI; here only limits are kept.
"""

from __future__ import annotations

import gc
import threading
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from faceverify.decode import decoding_bytes, load_image, open_image
from faceverify.errors import DecodeBudgetError, ImageError, PayloadTooLargeError
from faceverify.photos import FaceOptions, face_record, find_faces
from faceverify.service.settings import MB, Limits

if TYPE_CHECKING:
    from fastapi import UploadFile
    from PIL import Image

    from faceverify.faces.detect import Face

#: Longest upload name echoed back in messages.
_NAME_LENGTH = 80
#: A full budget starts a garbage collection at most this often (it pauses every thread).
_COLLECT_EVERY_S = 1.0


class DecodeBudget:
    """Memory for decoded images, shared by every request of the process.

    Each image reserves :func:`~faceverify.decode.decoding_bytes` before it is decoded and
    gives it back when its decoded image is freed (``weakref.finalize``), or at once when
    decoding fails. Freed, rather than "its request ended", because memory is what is
    bounded: CPython frees an image as its last reference goes, which is when the route
    returns, whatever it answered. Nothing can keep a share for ever without keeping the
    image too; a reference cycle (a traceback) only delays it to the next garbage
    collection, and a full budget runs one (at most once a second) before refusing.

    Args:
        capacity: bytes of decoded images at most (``Limits.max_decoded_bytes``).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._used = 0
        self._lock = threading.RLock()  # re-entrant: a finalizer may run inside a locked block
        self._collected = float("-inf")

    @property
    def used(self) -> int:
        """Bytes reserved now."""
        return self._used

    def reserve(self, sizes: list[int]) -> list[Reservation]:
        """One reservation per size, all or none: 413 if they could never fit, 503 if not now."""
        needed = sum(sizes)
        if needed > self.capacity:
            raise PayloadTooLargeError(
                f"decoding these images needs {_amount(needed)}, more than the {_amount(self.capacity)} "
                "this service decodes at once; send fewer or smaller images",
                code="too_many_pixels",
            )
        if not self._take(needed) and not (self._collect() and self._take(needed)):
            raise DecodeBudgetError(
                f"images of other requests hold {_amount(self._used)} of the {_amount(self.capacity)} "
                f"this service decodes at once, and these need {_amount(needed)}; "
                "retry after the interval in Retry-After"
            )
        return [Reservation(self, size) for size in sizes]

    def _take(self, size: int) -> bool:
        with self._lock:
            if self._used + size > self.capacity:
                return False
            self._used += size
            return True

    def _give(self, size: int) -> None:
        with self._lock:
            self._used -= size

    def _collect(self) -> bool:
        """Free images only a reference cycle still holds; False if one ran just now."""
        now = time.monotonic()
        with self._lock:
            if now - self._collected < _COLLECT_EVERY_S:
                return False
            self._collected = now
        gc.collect()
        return True


class Reservation:
    """One image's share of a :class:`DecodeBudget`; given back once, however often released."""

    def __init__(self, budget: DecodeBudget, size: int) -> None:
        self._budget = budget
        self._size = size

    def release(self) -> None:
        with self._budget._lock:
            size, self._size = self._size, 0
        self._budget._give(size)

    def bind(self, image: Image.Image) -> None:
        """Release when ``image`` is freed."""
        weakref.finalize(image, self.release)


@dataclass(frozen=True)
class Photo:
    """A decoded upload and how messages name it."""

    label: str
    image: Image.Image

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.label, "width": self.image.width, "height": self.image.height}

    def face_dict(self, face: Face | None) -> dict[str, Any]:
        """A face as the API shows it; without detection the face is the whole image."""
        return face_record(face, self.image.size)


def label_of(field: str, upload: UploadFile) -> str:
    """How an upload is named in messages: its form field and (shortened) file name."""
    name = (upload.filename or "").replace("\n", " ")[:_NAME_LENGTH]
    return f"{field} ({name!r})" if name else field


class PhotoReader:
    """Reads uploads within the limits and the decoding budget.

    Args:
        limits: what one request may carry, and the budget of decoded bytes.
        decoders: uploads decoded at the same time, process-wide: decoding is CPU work
            that releases the GIL, so this keeps it from crowding out the network (the
            budget bounds memory, this bounds cores).
        faces: how the service finds faces (detector, upsampling; the policy for several
            faces is each route's job default).
    """

    def __init__(self, limits: Limits, decoders: int, faces: FaceOptions) -> None:
        self.limits = limits
        self.faces = faces
        self.budget = DecodeBudget(limits.max_decoded_bytes)
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
        image = self._open(label, upload)
        [reservation] = self.budget.reserve([decoding_bytes(image)])
        return self._decode(label, image, reservation)

    def read_all(self, field: str, uploads: list[UploadFile]) -> list[Photo]:
        """Every upload's header first (formats, pixels, memory for all), then the pixels."""
        self.check_count(uploads)
        labels = [label_of(f"{field}[{i}]", upload) for i, upload in enumerate(uploads)]
        opened = [(label, self._open(label, upload)) for label, upload in zip(labels, uploads)]
        self._check_request_pixels(opened)
        reservations = self.budget.reserve([decoding_bytes(image) for _, image in opened])
        photos: list[Photo] = []
        try:
            while opened:  # popped: an opened image holds its file's pixels once decoded
                photos.append(self._decode(*opened.pop(0), reservations[len(photos)]))
        except BaseException:
            photos.clear()  # free the decoded ones now, not when the traceback goes
            for reservation in reservations:
                reservation.release()
            raise
        return photos

    def _open(self, label: str, upload: UploadFile) -> Image.Image:
        """The upload's header: size in bytes, format and pixels checked; no pixels decoded."""
        size = upload.size if upload.size is not None else _size_of(upload)
        if size > self.limits.max_image_bytes:
            raise PayloadTooLargeError(
                f"{label}: {size:,} bytes; the limit per image is {self.limits.max_image_bytes:,}",
                code="image_too_large",
            )
        upload.file.seek(0)
        try:
            return open_image(upload.file, max_pixels=self.limits.max_pixels)
        except ImageError as exc:  # named as the upload; the kind (e.g. unsupported format) kept
            raise exc.renamed(label) from None

    def _check_request_pixels(self, opened: list[tuple[str, Image.Image]]) -> None:
        total = sum(image.width * image.height for _, image in opened)
        if total > self.limits.max_request_pixels:
            raise PayloadTooLargeError(
                f"{len(opened)} images of {total:,} pixels in all; the limit per request is "
                f"{self.limits.max_request_pixels:,} pixels; send fewer or smaller images",
                code="too_many_pixels",
            )

    def _decode(self, label: str, image: Image.Image, reservation: Reservation) -> Photo:
        with self._slots:
            try:
                decoded = load_image(image, max_pixels=self.limits.max_pixels)
            except ImageError as exc:
                reservation.release()
                raise exc.renamed(label) from None
        reservation.bind(decoded)
        return Photo(label=label, image=decoded)

    def detect(self, photo: Photo) -> list[Face]:
        """Every face in the photo, largest first (detection always on)."""
        return find_faces(np.asarray(photo.image), self.faces)


def _amount(size: int) -> str:
    """Bytes for a message: MB from one MB up, KB below."""
    return f"{size / MB:,.0f} MB" if size >= MB else f"{size / 1024:,.0f} KB"


def _size_of(upload: UploadFile) -> int:
    upload.file.seek(0, 2)
    return int(upload.file.tell())
