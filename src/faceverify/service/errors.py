"""Errors over HTTP: one table from exception to status and code, one handler.

Every error answer is ``{"error": {"code": ..., "message": ...}}`` with a 4xx status (503
or 504 when the service is busy or slow); the message is the library's own sentence,
with the server's folders taken out. An unexpected exception is a bug: it is logged
with its traceback and answered 500 with a message that reveals nothing. The error classes
themselves, the service's own included, live in :mod:`faceverify.errors`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from faceverify.errors import (
    BatchImageError,
    ConfigError,
    CorrectionError,
    DeviceError,
    FaceVerifyError,
    FailureKind,
    GalleryError,
    GalleryExistsError,
    IdempotencyError,
    ImageError,
    InputError,
    MissingDependencyError,
    ModelMismatchError,
    PersonExistsError,
    ServiceError,
    UnknownCameraError,
    UnknownFaceError,
    UnknownGalleryError,
    UnknownGroupError,
    UnknownJobError,
    UnknownPersonError,
    UnsupportedFormatError,
    VideoError,
)

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import JSONResponse

log = logging.getLogger("faceverify.service")


#: The library's exceptions, most specific first: the first ``isinstance`` match wins.
LIBRARY_ERRORS: tuple[tuple[type[FaceVerifyError], int, str], ...] = (
    (UnknownGalleryError, 404, "unknown_gallery"),
    (UnknownPersonError, 404, "unknown_person"),
    (UnknownGroupError, 404, "unknown_group"),
    (UnknownFaceError, 404, "unknown_face"),
    (UnknownJobError, 404, "unknown_job"),
    (UnknownCameraError, 404, "unknown_camera"),
    (VideoError, 422, "invalid_video"),
    (CorrectionError, 409, "correction_refused"),
    (GalleryExistsError, 409, "gallery_exists"),
    (PersonExistsError, 409, "person_exists"),
    (IdempotencyError, 409, "idempotency_conflict"),
    (ModelMismatchError, 409, "model_mismatch"),
    (GalleryError, 422, "gallery_error"),
    (UnsupportedFormatError, 415, "unsupported_format"),  # EPS, PSD, JPEG 2000...: never parsed
    (
        ImageError,
        422,
        "invalid_image",
    ),  # "no_face" / "several_faces" / "poor_face" by its kind (see classify)
    (BatchImageError, 422, "invalid_image"),
    (InputError, 422, "invalid_input"),
    (ConfigError, 422, "invalid_argument"),
    (MissingDependencyError, 503, "unavailable"),  # e.g. detection asked for without dlib
    (DeviceError, 503, "device_error"),  # e.g. the GPU ran out of memory for this batch
    (FaceVerifyError, 400, "bad_request"),
)
_HTTP_CODES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def classify(exc: BaseException) -> tuple[int, str, str, dict[str, str]]:
    """``(status, code, message, headers)`` for any exception."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    # FastAPI turns errors raised while reading a body into a 400; ours ride as the cause
    cause = exc.__cause__
    if isinstance(exc, HTTPException) and isinstance(cause, FaceVerifyError):
        exc = cause
    if isinstance(exc, ServiceError):
        return exc.status, exc.code, str(exc), exc.headers
    if isinstance(exc, ImageError) and exc.kind in (
        FailureKind.NO_FACE,
        FailureKind.SEVERAL_FACES,
        FailureKind.POOR_FACE,
    ):
        return 422, exc.kind.value, str(exc), {}
    if isinstance(exc, FaceVerifyError):
        status, code = next((s, c) for kind, s, c in LIBRARY_ERRORS if isinstance(exc, kind))
        return status, code, str(exc), {}
    if isinstance(exc, RequestValidationError):
        return 422, *_validation_message(exc.errors()), {}
    if isinstance(exc, HTTPException):
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if exc.status_code == 400 and cause is not None:
            code, message = "invalid_body", f"the request body could not be read: {_one_line(cause)}"
        return exc.status_code, code, message, dict(exc.headers or {})
    return 500, "internal", "internal error; the server's log has the details", {}


def _validation_message(errors: Any) -> tuple[str, str]:
    if any(e.get("type") == "json_invalid" for e in errors):
        return "invalid_json", "the request body is not valid JSON"
    parts = []
    for error in list(errors)[:3]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "request"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return "invalid_request", "; ".join(parts) + more


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__


class ErrorRenderer:
    """The one exception handler: status from :func:`classify`, folders redacted, counted.

    Args:
        hidden: server paths or URLs to cut out of messages (replaced by ``replacement``).
        count: called with the error code of every error answered.
    """

    def __init__(self, hidden: list[tuple[str, str]], count: Callable[[str], None]) -> None:
        self.hidden: list[tuple[str, str]] = []
        self.count = count
        self.hide(hidden)

    def hide(self, pairs: list[tuple[str, str]]) -> None:
        """Also cut these ``(text, replacement)`` pairs out of messages (longest first)."""
        merged = {**dict(self.hidden), **{text: new for text, new in pairs if text}}
        self.hidden = sorted(merged.items(), key=lambda pair: -len(pair[0]))

    def response(self, exc: BaseException) -> JSONResponse:
        from starlette.responses import JSONResponse

        status, code, message, headers = classify(exc)
        if status >= 500 and code == "internal":
            log.error("unexpected error", exc_info=exc)
        for secret, replacement in self.hidden:
            message = message.replace(secret, replacement)
        self.count(code)
        return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)

    async def __call__(self, request: Request, exc: Exception) -> JSONResponse:
        return self.response(exc)
