"""``/healthz`` (the process answers), ``/readyz`` (model and galleries usable), ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from faceverify.errors import FaceVerifyError
from faceverify.service.deps import State
from faceverify.service.errors import NotReadyError
from faceverify.service.schemas import ERRORS, Status

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Status, summary="The process is up")
def healthz() -> Status:
    return Status(status="ok")


@router.get("/readyz", response_model=Status, responses={503: ERRORS[503]}, summary="Ready to serve")
def readyz(state: State) -> Status:
    if not state.batcher.alive:
        raise NotReadyError("the model's batcher is not running")
    try:
        state.galleries.catalog.ping()
    except FaceVerifyError as exc:
        raise NotReadyError(f"galleries unreachable: {exc}") from exc
    return Status(status="ready", model=state.model.name)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    body, content_type = request.app.state.metrics.render()
    return Response(body, media_type=content_type)
