"""Route dependencies: the shared state, and what the request's API key may do.

:class:`~faceverify.service.middleware.Authenticate` refuses requests without a valid key
before their body is read; every ``/v1`` route checks again here, so a route reached any
other way (a mount, a proxy prefix, a middleware left out) is still refused. Each route
says what it needs (``read``, ``enrol``, ``write`` or ``admin``), and a key limited to one
gallery is refused any other.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from faceverify.errors import ForbiddenError, InvalidFieldError, NotReadyError, UnauthorizedError
from faceverify.gallery.base import Change
from faceverify.service.keys import ApiKey, KeyStore
from faceverify.service.middleware import API_KEY_SCOPE, WRITE_GATE_SCOPE, WriteGate
from faceverify.service.state import ServiceState

API_KEY = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="made with `faceverify keys create` (or printed by `faceverify serve` on its first start)",
)


def get_state(request: Request) -> ServiceState:
    state: ServiceState | None = getattr(request.app.state, "service", None)
    if state is None:
        raise NotReadyError("the service is starting or stopping")
    return state


def authenticated(request: Request, presented: str | None) -> ApiKey | None:
    """The request's key; None only when the service runs without keys (``--insecure``)."""
    keys: KeyStore | None = request.app.state.keys
    if keys is None:
        return None
    key: ApiKey | None = request.scope.get(API_KEY_SCOPE) or keys.authenticate(presented)
    if key is None:
        raise UnauthorizedError()
    return key


def _authorize(request: Request, presented: str | None, scope: str) -> ApiKey | None:
    key = authenticated(request, presented)
    if key is None:
        return None
    if not key.grants(scope):
        raise ForbiddenError(f"this API key's scope is {key.scope!r}; this needs {scope!r} or above")
    if not key.allows(scope, request.path_params.get("gallery")):
        raise ForbiddenError("this API key is not valid for this gallery")
    return key


#: The key as sent (declared so that the OpenAPI document shows the header on every route).
Presented = Annotated[str | None, Security(API_KEY)]


def read_access(request: Request, presented: Presented = None) -> ApiKey | None:
    return _authorize(request, presented, "read")


def enrol_access(request: Request, presented: Presented = None) -> ApiKey | None:
    return _authorize(request, presented, "enrol")


def write_access(request: Request, presented: Presented = None) -> ApiKey | None:
    return _authorize(request, presented, "write")


def admin_access(request: Request, presented: Presented = None) -> ApiKey | None:
    return _authorize(request, presented, "admin")


def get_gate(request: Request) -> WriteGate:
    """The request's write gate (see :class:`~faceverify.service.middleware.WriteGate`)."""
    gate: WriteGate | None = request.scope.get(WRITE_GATE_SCOPE)
    return gate if gate is not None else WriteGate()


#: The longest request key kept (UUIDs and ULIDs fit many times over).
MAX_REQUEST_KEY = 200


def actor(key: ApiKey | None) -> str:
    """Who a request acts as, in audit logs: its key's id, or ``no-key`` (``--insecure``)."""
    return f"key:{key.id}" if key is not None else "no-key"


def change_of(request: Request, key: ApiKey | None, fingerprint: str = "") -> Change:
    """The write's actor and, from the ``Idempotency-Key`` header, its request key."""
    request_key = request.headers.get("idempotency-key")
    if request_key is not None and not 0 < len(request_key) <= MAX_REQUEST_KEY:
        raise InvalidFieldError(
            f"Idempotency-Key must be 1 to {MAX_REQUEST_KEY} characters (e.g. a UUID)", code="invalid_header"
        )
    return Change(actor=actor(key), request_key=request_key, fingerprint=fingerprint)


State = Annotated[ServiceState, Depends(get_state)]
Gate = Annotated[WriteGate, Depends(get_gate)]
Reader = Annotated[ApiKey | None, Depends(read_access)]
Enroller = Annotated[ApiKey | None, Depends(enrol_access)]
Writer = Annotated[ApiKey | None, Depends(write_access)]
Admin = Annotated[ApiKey | None, Depends(admin_access)]
