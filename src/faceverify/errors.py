"""The one exception hierarchy of faceverify: every error class lives in this module.

Every error a user can cause derives from :class:`FaceVerifyError`; its message names
the bad value and, where there is a choice, the valid options. The CLI prints the
message as one line on stderr and exits non-zero, so messages must stand alone.
"""

from __future__ import annotations


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

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


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

    ``reasons`` holds one ``"image: why"`` line per image left out.
    """

    def __init__(self, message: str, reasons: list[str] | None = None) -> None:
        super().__init__(message)
        self.reasons = list(reasons or [])


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


class MissingDependencyError(FaceVerifyError, ImportError):
    """An optional package needed for the requested feature is not installed.

    The message names the ``pip install`` command that provides it.
    """
