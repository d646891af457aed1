"""Route dependencies: the shared state, and what the request's API key may do.

Authentication (is there a valid key?) happened in
:class:`~faceverify.service.middleware.Authenticate`; here each route says what it
needs (``read`` or ``write``), and a key limited to one gallery is refused any other.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from faceverify.service.errors import ForbiddenError, NotReadyError
from faceverify.service.keys import ApiKey
from faceverify.service.middleware import API_KEY_SCOPE
from faceverify.service.state import ServiceState

API_KEY = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="created with `faceverify keys create`; needed once a keys file exists",
)


def get_state(request: Request) -> ServiceState:
    state: ServiceState | None = getattr(request.app.state, "service", None)
    if state is None:
        raise NotReadyError("the service is starting or stopping")
    return state


def _authorize(request: Request, scope: str) -> ApiKey | None:
    key: ApiKey | None = request.scope.get(API_KEY_SCOPE)
    if key is None:  # no keys configured: the service is local-only and open
        return None
    if scope == "write" and key.scope != "write":
        raise ForbiddenError("this API key may only read")
    if not key.allows(scope, request.path_params.get("gallery")):
        raise ForbiddenError("this API key is not valid for this gallery")
    return key


def read_access(request: Request, _: Annotated[str | None, Security(API_KEY)] = None) -> ApiKey | None:
    return _authorize(request, "read")


def write_access(request: Request, _: Annotated[str | None, Security(API_KEY)] = None) -> ApiKey | None:
    return _authorize(request, "write")


State = Annotated[ServiceState, Depends(get_state)]
Reader = Annotated[ApiKey | None, Depends(read_access)]
Writer = Annotated[ApiKey | None, Depends(write_access)]
