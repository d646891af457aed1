"""ASGI middleware: body limit, deadline, authentication and response headers.

Each runs before FastAPI reads a byte of the body: a request that is too large, or
lacks a valid key, is answered without its upload being read or parsed.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from faceverify.service.errors import (
    ErrorRenderer,
    PayloadTooLargeError,
    RequestTimeoutError,
    ServiceError,
    UnauthorizedError,
)

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from faceverify.service.keys import KeyStore

#: Where the authenticated key's record is put in the request scope.
API_KEY_SCOPE = "faceverify.api_key"
API_PREFIX = "/v1/"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class BodyLimit:
    """413 for a body above ``max_bytes``: by its Content-Length before reading, or as
    soon as a streamed body passes the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int, errors: ErrorRenderer) -> None:
        self.app, self.max_bytes, self.errors = app, max_bytes, errors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self.errors.response(self._too_large(declared))(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large(f"more than {self.max_bytes:,}")
            return message

        await self.app(scope, limited, send)

    def _too_large(self, size: str) -> PayloadTooLargeError:
        return PayloadTooLargeError(f"request body of {size} bytes; the limit is {self.max_bytes:,} bytes")


class UploadTimeoutError(ServiceError):
    status, code = 408, "upload_timeout"


class Deadline:
    """Bounds a whole request: 408 if the upload is still arriving, 504 otherwise."""

    def __init__(self, app: ASGIApp, seconds: float, errors: ErrorRenderer) -> None:
        self.app, self.seconds, self.errors = app, seconds, errors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = receiving = False

        async def watched_receive() -> Message:
            nonlocal receiving
            receiving = True  # stays True if the deadline cancels the wait
            message = await receive()
            receiving = False
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await asyncio.wait_for(self.app(scope, watched_receive, watched_send), self.seconds)
        except asyncio.TimeoutError:
            if started:
                raise  # too late for an error answer; the server closes the connection
            error: ServiceError = (
                UploadTimeoutError(f"the upload did not arrive within {self.seconds:g} s")
                if receiving
                else RequestTimeoutError(f"the request took longer than {self.seconds:g} s")
            )
            await self.errors.response(error)(scope, receive, send)


class Authenticate:
    """401 for an API request without a valid ``X-API-Key`` (when keys are configured).

    The key's record goes into the scope, where the routes' dependencies check its
    scope and gallery (403).
    """

    def __init__(self, app: ASGIApp, keys: KeyStore, errors: ErrorRenderer) -> None:
        self.app, self.keys, self.errors = app, keys, errors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        needs_key = (
            scope["type"] == "http"
            and scope["path"].startswith(API_PREFIX)
            and scope["method"] != "OPTIONS"  # CORS preflights carry no key
            and self.keys.required
        )
        if needs_key:
            key = self.keys.authenticate(_header(scope, b"x-api-key"))
            if key is None:
                await self.errors.response(UnauthorizedError())(scope, receive, send)
                return
            scope[API_KEY_SCOPE] = key
        await self.app(scope, receive, send)


#: The page loads only its own files; uploaded photos are shown from blob: URLs.
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


class SecurityHeaders:
    """Headers every answer carries; API answers are never cached (they hold biometrics)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        extra: list[tuple[bytes, bytes]] = [
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"),
        ]
        if path.startswith(API_PREFIX):
            extra.append((b"cache-control", b"no-store"))
        if not path.startswith(("/docs", "/redoc")):  # Swagger UI loads its own scripts
            extra.append((b"content-security-policy", PAGE_POLICY.encode()))

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = list(message.get("headers", []))
                message = {**message, "headers": headers + extra}
            await send(message)

        await self.app(scope, receive, with_headers)
