"""``/healthz`` (the process answers), ``/readyz`` (model and galleries usable), ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from faceverify.errors import FaceVerifyError, NotReadyError
from faceverify.service.deps import Presented, State
from faceverify.service.keys import KeyStore
from faceverify.service.schemas import ERRORS, Status
from faceverify.service.state import ServiceState

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Status, summary="The process is up")
def healthz() -> Status:
    return Status(status="ok")


@router.get("/readyz", response_model=Status, responses={503: ERRORS[503]}, summary="Ready to serve")
def readyz(state: State, request: Request, presented: Presented = None) -> Status:
    """Ready or not; why not (which may name internals) only for a caller with a valid key."""
    problem = _problem(state)
    if problem is None:
        return Status(status="ready", model=state.model.name)
    keys: KeyStore | None = request.app.state.keys
    trusted = keys is None or keys.authenticate(presented) is not None
    raise NotReadyError(problem if trusted else "not ready")


def _problem(state: ServiceState) -> str | None:
    if not state.batcher.alive:
        return "the model's batcher is not running"
    try:
        state.galleries.catalog.ping()
    except FaceVerifyError as exc:
        return f"galleries unreachable: {exc}"
    return None


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    body, content_type = request.app.state.metrics.render()
    return Response(body, media_type=content_type)
