"""The one exception hierarchy of faceverify: every error class lives in this module.

Every error a user can cause derives from :class:`FaceVerifyError`; its message names
the bad value and, where there is a choice, the valid options. The CLI prints the
message as one line on stderr and exits non-zero, so messages must stand alone.
"""

from __future__ import annotations

from enum import Enum


class Choice(str, Enum):
    """A named choice that is its own string: compares equal to, prints as and serialises
    to its value, so JSON, CLI flags and messages need no conversion."""

    def __str__(self) -> str:
        return str(self.value)


class FailureKind(Choice):
    """Why one input of a batch was left out; code branches on these, never on messages.

    ``unreadable``: not an image faceverify decodes (missing, corrupt, unsupported,
    too small or too big); ``no_face``: detection found no face; ``several_faces``: the
    photo shows several faces where one was needed; ``poor_face``: its face is too small,
    blurred or turned to trust (enrolment); ``duplicate``: the image is enrolled already;
    ``no_person``: a bulk enrolment found it outside every person's folder.
    """

    UNREADABLE = "unreadable"
    NO_FACE = "no_face"
    SEVERAL_FACES = "several_faces"
    POOR_FACE = "poor_face"
    DUPLICATE = "duplicate"
    NO_PERSON = "no_person"


class FaceVerifyError(Exception):
    """Base class of every error faceverify raises on purpose."""


class ConfigError(FaceVerifyError, ValueError):
    """An argument or option has a value faceverify cannot use."""


class InputError(FaceVerifyError, ValueError):
    """An input (tensor, array, embedding) has the wrong rank, shape or dtype."""


class ImageError(FaceVerifyError):
    """An image could not be turned into pixels: missing, corrupt, too small, too big.

    Attributes:
        source: a printable name of the offending input (file path, or ``<bytes>``...).
        reason: why it was rejected, without the source.
    """

    kind = FailureKind.UNREADABLE

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason

    def renamed(self, source: str) -> ImageError:
        """The same error (class, kind, details) for an input known by another name,
        e.g. an upload's form field rather than ``<PIL image>``."""
        other = type(self).__new__(type(self))  # no __init__: subclasses take other arguments
        other.__dict__.update(self.__dict__)
        other.source = source
        other.args = (f"{source}: {self.reason}",)
        return other


class NoFaceError(ImageError):
    """Face detection found no face in the image."""

    kind = FailureKind.NO_FACE

    def __init__(self, source: str, reason: str = "no face found") -> None:
        super().__init__(source, reason)


class SeveralFacesError(ImageError):
    """The image shows several faces where one was needed (enrolment, by default).

    Attributes:
        boxes: every face's ``(left, top, right, bottom)``, largest first.
    """

    kind = FailureKind.SEVERAL_FACES

    def __init__(self, source: str, boxes: list[tuple[float, float, float, float]]) -> None:
        shown = ", ".join("(" + ",".join(f"{v:.0f}" for v in box) + ")" for box in boxes[:4])
        more = f" and {len(boxes) - 4} more" if len(boxes) > 4 else ""
        super().__init__(
            source,
            f"{len(boxes)} faces found where one is needed, at {shown}{more} (left,top,right,bottom); "
            "use a photo of this person alone or crop it, or choose another policy for several "
            "faces (largest, all, skip)",
        )
        self.boxes = list(boxes)


class PoorFaceError(ImageError):
    """The face found is too poor (small, blurred, turned away) to enrol: a gallery face
    every later identification is compared with must be a good one."""

    kind = FailureKind.POOR_FACE


class UnsupportedFormatError(ImageError):
    """An image in a format faceverify recognises but does not decode, on purpose.

    Only an allow-list of formats is decoded (see :data:`faceverify.decode.ALLOWED_FORMATS`):
    every other parser is code that untrusted files could reach.
    """


class BatchImageError(FaceVerifyError):
    """Some images of a batch were bad; raised only where partial results cannot be returned.

    Attributes:
        failures: one :class:`ImageError` per bad input, in input order.
    """

    def __init__(self, failures: list[ImageError], total: int) -> None:
        head = "; ".join(str(f) for f in failures[:3])
        more = f" (and {len(failures) - 3} more)" if len(failures) > 3 else ""
        super().__init__(
            f"{len(failures)} of {total} images could not be used: {head}{more}. "
            "Use faceverify.embed_images() to keep the good ones and get the bad ones reported."
        )
        self.failures = failures


class ModelError(FaceVerifyError):
    """A model name, architecture or weights file cannot be used."""


class WeightsNotFoundError(ModelError):
    """Weights were asked for but could not be found or downloaded."""


class DeviceError(FaceVerifyError):
    """The requested compute device does not exist on this machine, or cannot do the work."""


class DeviceMemoryError(DeviceError):
    """The compute device ran out of memory (a smaller batch or input size may fit)."""


class MetricsError(FaceVerifyError):
    """Scores and labels from which a metric cannot be computed."""


class PairsError(FaceVerifyError):
    """A pairs file that cannot be used at all."""


class GalleryError(FaceVerifyError):
    """The gallery cannot do what was asked (storage, consistency, or a wrong input)."""


class NothingEnrolledError(GalleryError):
    """Enrolment would leave a new person without faces (every image bad or already enrolled).

    Attributes:
        left_out: the report of each image left out (with ``source`` and ``reason``).
        reasons: the same as ``"image: why"`` lines.
    """

    def __init__(self, message: str, left_out: list[object] | None = None) -> None:
        super().__init__(message)
        self.left_out = list(left_out or [])
        self.reasons = [str(item) for item in self.left_out]


class UnknownPersonError(GalleryError):
    """The named person is not enrolled."""


class PersonExistsError(GalleryError):
    """A person of that name is already enrolled (an enrolment asked to create them)."""


class IdempotencyError(GalleryError):
    """A request key already used for a different request (its content differs)."""


class ModelMismatchError(GalleryError):
    """Embeddings from another model than the one the gallery was built with."""


class UnknownGalleryError(GalleryError):
    """No gallery of that name in the catalogue of named galleries."""


class GalleryExistsError(GalleryError):
    """A gallery of that name already exists in the catalogue."""


class CorrectionError(GalleryError):
    """A photo library refuses a correction: it contradicts an earlier one (the message
    names both), or it would put two faces of one photo in one group."""


class UnknownGroupError(GalleryError):
    """No group of that id in the photo library."""


class UnknownFaceError(GalleryError):
    """No face of that id in the photo library."""


class VideoError(FaceVerifyError):
    """A video source cannot be read: not a video, a codec FFmpeg cannot decode, a stream
    or camera that cannot be reached (after the retries it was allowed).

    Attributes:
        source: the file, camera or URL, with any password masked.
    """

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class UnknownJobError(FaceVerifyError):
    """No job (a video being processed) has this id: it never existed, or was removed."""


class UnknownCameraError(FaceVerifyError):
    """No camera of this name is configured (``serve --camera``), or the key may not see it."""


class MissingDependencyError(FaceVerifyError, ImportError):
    """An optional package needed for the requested feature is not installed.

    The message names the ``pip install`` command that provides it.
    """


# ----------------------------------------------------------------------------------------
# The HTTP service's own errors: the transport (keys, limits, load), each with its status.
# Library errors reach HTTP through faceverify.service.errors' one table instead.


class ServiceError(FaceVerifyError):
    """An error of the transport (keys, limits, load), carrying its HTTP status and code."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code
        self.headers = headers or {}


class UnauthorizedError(ServiceError):
    status, code = 401, "unauthorized"

    def __init__(self) -> None:
        super().__init__(
            "a valid API key is required in the X-API-Key header",
            headers={"WWW-Authenticate": 'ApiKey header="X-API-Key"'},
        )


class ForbiddenError(ServiceError):
    status, code = 403, "forbidden"


class InvalidFieldError(ServiceError):
    """A form or JSON field the library never sees is malformed (metadata, a name in a URL)."""

    status, code = 422, "invalid_field"


class PayloadTooLargeError(ServiceError):
    status, code = 413, "payload_too_large"


class OverloadedError(ServiceError):
    status, code = 503, "overloaded"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class DecodeBudgetError(OverloadedError):
    """Decoded images of the requests in flight fill the memory budget; its own code tells
    operators to look at ``--max-decoded-mb`` rather than at the model's queue."""

    code = "decode_budget_full"


class NotReadyError(ServiceError):
    status, code = 503, "not_ready"


class RequestTimeoutError(ServiceError):
    status, code = 504, "timeout"


class GalleryNotEmptyError(ServiceError):
    """A gallery that still holds people was to be deleted without ``?force=true``."""

    status, code = 409, "gallery_not_empty"


class NoKeysError(ServiceError):
    status, code = 409, "no_keys"


class UnknownKeyError(ServiceError):
    status, code = 404, "unknown_key"


class UploadTimeoutError(ServiceError):
    status, code = 408, "upload_timeout"
