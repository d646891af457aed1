"""ASGI middleware: body limit, deadline, authentication, origin checks, response headers.

Each runs before FastAPI reads a byte of the body: a request that is too large, or
lacks a valid key, is answered without its upload being read or parsed.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from faceverify.errors import (
    ForbiddenError,
    PayloadTooLargeError,
    RequestTimeoutError,
    ServiceError,
    UnauthorizedError,
    UploadTimeoutError,
)
from faceverify.service.errors import ErrorRenderer

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from faceverify.service.keys import KeyStore

#: Where the authenticated key's record is put in the request scope.
API_KEY_SCOPE = "faceverify.api_key"
#: How long a timed-out request waits for its write under way, to say if it was committed.
WRITE_WAIT_S = 10.0


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


#: Where a request's :class:`WriteGate` is put in the request scope.
WRITE_GATE_SCOPE = "faceverify.write_gate"


class WriteGate:
    """Whether a request's write may still happen, so that its 504 tells the truth.

    The route enters :meth:`writing` around its one write; the deadline calls
    :meth:`close` when time is up. Whichever comes first wins: a write not yet started
    never starts (it raises), and a write under way is waited for, so the answer can say
    whether it was committed.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = "open"  # open -> writing -> committed, or open -> closed
        self._done = threading.Event()
        self._done.set()

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        with self._lock:
            if self._state == "closed":
                raise RequestTimeoutError("the request ran out of time before its write; nothing was written")
            self._state = "writing"
            self._done.clear()
        try:
            yield
        except BaseException:
            with self._lock:
                self._state = "open"
            raise
        else:
            with self._lock:
                self._state = "committed"
        finally:
            self._done.set()

    def close(self, wait_s: float) -> str:
        """No write may start from now on. Returns ``none`` (nothing was or will be written),
        ``committed``, or ``unknown`` (a write still under way after ``wait_s`` seconds)."""
        with self._lock:
            if self._state == "open":
                self._state = "closed"
                return "none"
        self._done.wait(wait_s)
        with self._lock:
            return {"committed": "committed", "writing": "unknown"}.get(self._state, "none")


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

        gate = scope[WRITE_GATE_SCOPE] = WriteGate()
        try:
            await asyncio.wait_for(self.app(scope, watched_receive, watched_send), self.seconds)
        except asyncio.TimeoutError:
            # the route's thread goes on; from here its write either never starts or is awaited
            written = await asyncio.to_thread(gate.close, WRITE_WAIT_S)
            if started:
                raise  # too late for an error answer; the server closes the connection
            await self.errors.response(self._timeout(receiving, written))(scope, receive, send)

    def _timeout(self, receiving: bool, written: str) -> ServiceError:
        late = f"the request took longer than {self.seconds:g} s"
        if receiving:
            return UploadTimeoutError(f"the upload did not arrive within {self.seconds:g} s; nothing written")
        if written == "committed":
            return RequestTimeoutError(
                f"{late}, but its write was committed (an enrolment repeated with the same "
                "Idempotency-Key returns its answer)",
                code="timeout_after_write",
            )
        if written == "unknown":
            return RequestTimeoutError(
                f"{late} and its write was still under way: it may have been committed; read the "
                "gallery (or repeat an enrolment with the same Idempotency-Key) to know",
                code="timeout_during_write",
            )
        return RequestTimeoutError(f"{late}; nothing was written")


#: What answers without a key: the page and its files, health, metrics and the API's docs.
#: Everything else, whatever its prefix, needs one (deny by default).
PUBLIC_PATHS = frozenset(
    {"/", "/healthz", "/readyz", "/metrics", "/docs", "/docs/oauth2-redirect", "/openapi.json"}
)
PUBLIC_PREFIXES = ("/static/",)


def route_path(scope: Scope) -> str:
    """The path as the app's routes see it: without the ``root_path`` the app is mounted or
    proxied under (Starlette's own rule, so the check and the router never disagree)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :] or "/"
    return path


def is_public(scope: Scope) -> bool:
    path = route_path(scope)
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


class Authenticate:
    """401 for a request without a valid, unexpired ``X-API-Key``, except on the public paths.

    Runs before the body is read, so an unauthenticated upload costs nothing. The key's
    record goes into the scope; the routes' dependencies check it again (a route reached
    some other way is still refused) along with its scope and gallery (403).
    """

    def __init__(self, app: ASGIApp, keys: KeyStore, errors: ErrorRenderer) -> None:
        self.app, self.keys, self.errors = app, keys, errors

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        needs_key = (
            scope["type"] == "http"
            and scope["method"] != "OPTIONS"  # CORS preflights carry no key
            and not is_public(scope)
        )
        if needs_key:
            key = self.keys.authenticate(_header(scope, b"x-api-key"))
            if key is None:
                await self.errors.response(UnauthorizedError())(scope, receive, send)
                return
            scope[API_KEY_SCOPE] = key
        await self.app(scope, receive, send)


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})


class LocalOnly:
    """For a service without keys (``--insecure``): refuse what a web page could send.

    A foreign ``Origin`` (another site's script posting a form to the service) is refused
    with 403 unless it is one of ``allowed_origins``; on a loopback address, so is a
    ``Host`` that is not a loopback name (a DNS-rebinding page reaches 127.0.0.1 under
    its own host name).
    """

    def __init__(
        self, app: ASGIApp, errors: ErrorRenderer, *, loopback: bool, allowed_origins: tuple[str, ...]
    ) -> None:
        self.app, self.errors, self.loopback = app, errors, loopback
        self.allowed_origins = frozenset(allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            problem = self._problem(_header(scope, b"host") or "", _header(scope, b"origin"))
            if problem is not None:
                await self.errors.response(ForbiddenError(problem, code="forbidden_origin"))(
                    scope, receive, send
                )
                return
        await self.app(scope, receive, send)

    def _problem(self, host: str, origin: str | None) -> str | None:
        if self.loopback and _host_name(host) not in LOOPBACK_NAMES:
            return (
                f"Host {host[:80]!r} is not this machine's loopback name; a service without API "
                "keys answers only localhost, 127.0.0.1 or [::1]"
            )
        if origin is None or origin in self.allowed_origins:
            return None
        if origin in (f"http://{host}", f"https://{host}"):
            return None  # the page itself
        return (
            f"requests from the web origin {origin[:80]!r} are refused by a service without API "
            "keys; allow it with --cors-origin, or use API keys"
        )


def _host_name(host: str) -> str:
    """``host[:port]`` without the port (IPv6 literals keep their brackets)."""
    host = host.lower()
    if host.startswith("["):
        return host.split("]")[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


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
        path = route_path(scope)
        extra: list[tuple[bytes, bytes]] = [
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"),
        ]
        if not is_public(scope):
            extra.append((b"cache-control", b"no-store"))
        if not path.startswith(("/docs", "/redoc")):  # Swagger UI loads its own scripts
            extra.append((b"content-security-policy", PAGE_POLICY.encode()))

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[Any] = list(message.get("headers", []))
                message = {**message, "headers": headers + extra}
            await send(message)

        await self.app(scope, receive, with_headers)


class ByRoute:
    """One middleware with a setting chosen by the request's route path: ``build(app, value)``
    for the first of ``routes`` (``(regex, value)``) whose regex matches it, else for
    ``default``. Each is built once, at start-up."""

    def __init__(
        self,
        app: Any,
        build: Callable[[Any, Any], Any],
        default: Any,
        routes: Sequence[tuple[str, Any]],
    ) -> None:
        self.default = build(app, default)
        self.routes = [(re.compile(pattern), build(app, value)) for pattern, value in routes]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = route_path(scope)
            for pattern, target in self.routes:
                if pattern.fullmatch(path):
                    await target(scope, receive, send)
                    return
        await self.default(scope, receive, send)
