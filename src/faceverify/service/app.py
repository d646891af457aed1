"""The application factory: ``create_app(settings)`` gives a FastAPI app, nothing loaded yet.

The model, the batcher and the galleries are opened once, in the lifespan (when the
server starts), never at import or per request. Requests pass, outermost first:
metrics, security headers, CORS (only when origins are configured), the deadline, API
key authentication (or, without keys, the Host and Origin checks) and the body limit,
then FastAPI's routing, where each route checks its key again with its scope and
gallery, and the one error handler shapes every failure. A video upload has its own
body limit and deadline, and a camera's event stream none (:class:`ByRoute`); the video
jobs and cameras start and stop with the rest in the lifespan. Paths are never redirected
(no trailing-slash redirects: a client that follows one with the same method could
land a DELETE on another resource).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from faceverify import __version__
from faceverify.errors import FaceVerifyError
from faceverify.service.errors import ErrorRenderer
from faceverify.service.keys import KeyStore
from faceverify.service.metrics import Instrument, Metrics
from faceverify.service.middleware import (
    Authenticate,
    BodyLimit,
    ByRoute,
    Deadline,
    LocalOnly,
    SecurityHeaders,
)
from faceverify.service.settings import MB, ServiceSettings, is_loopback

DESCRIPTION = """\
Face verification and galleries over HTTP. Send photos as `multipart/form-data`.
Every `/v1` call needs an API key in the `X-API-Key` header (`faceverify serve` prints
an admin key on its first start; `faceverify keys create` makes more). Scopes: `read`
< `enrol` < `write` < `admin`. Errors are `{"error": {"code": ..., "message": ...}}`.
"""


def create_app(settings: ServiceSettings | None = None) -> Any:
    """A FastAPI application serving the API under ``/v1``, the page at ``/``, docs at ``/docs``.

    Args:
        settings: model, galleries, keys, limits and batching; defaults to
            :class:`ServiceSettings` ``()`` (the default model, galleries in the data folder).
    """
    import anyio
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException

    from faceverify.service.cameras import Cameras
    from faceverify.service.routers import faces, galleries, health, libraries, videos
    from faceverify.service.routers import keys as key_routes
    from faceverify.service.state import ServiceState
    from faceverify.service.video_jobs import VideoJobs

    settings = settings or ServiceSettings()
    metrics = Metrics()
    keys = KeyStore(settings.keys_file)
    errors = ErrorRenderer(_hidden(settings), metrics.count_error)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await anyio.to_thread.run_sync(ServiceState.open, settings, metrics, keys)
        errors.hide(state.hidden_strings())
        app.state.videos = VideoJobs(settings.video, state.galleries.get)
        app.state.cameras = Cameras(settings.video, state.galleries.get)
        errors.hide([(str(app.state.videos.folder), "<uploads>")])
        app.state.service = state
        try:
            yield
        finally:
            app.state.service = None
            cameras, app.state.cameras = app.state.cameras, None
            videos, app.state.videos = app.state.videos, None
            await anyio.to_thread.run_sync(cameras.close)
            await anyio.to_thread.run_sync(videos.close)
            await anyio.to_thread.run_sync(state.close)

    app = FastAPI(
        title="faceverify",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        redirect_slashes=False,
    )
    app.state.metrics = metrics
    app.state.service = None
    app.state.keys = None if settings.insecure else keys
    for kind in (Exception, FaceVerifyError, HTTPException, RequestValidationError):
        app.add_exception_handler(kind, errors)
    routers = (
        faces.router,
        galleries.router,
        libraries.router,
        videos.router,
        key_routes.router,
        health.router,
    )
    for router in routers:
        app.include_router(router)

    static = Path(str(resources.files("faceverify.service") / "static"))

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(static / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=static), name="static")

    # add_middleware wraps what is there: the last one added is the outermost. A video
    # upload may be larger and slower than a photo, and an event stream has no deadline.
    video = settings.video
    app.add_middleware(
        ByRoute,
        build=lambda inner, size: BodyLimit(inner, max_bytes=size, errors=errors),
        default=settings.limits.max_body_bytes,
        routes=[(videos.UPLOAD_PATH, video.max_upload_bytes + MB)],
    )
    if settings.insecure:
        app.add_middleware(
            LocalOnly,
            errors=errors,
            loopback=is_loopback(settings.host),
            allowed_origins=settings.cors_origins,
        )
    else:
        app.add_middleware(Authenticate, keys=keys, errors=errors)
    app.add_middleware(
        ByRoute,
        build=lambda inner, seconds: (
            inner if seconds is None else Deadline(inner, seconds=seconds, errors=errors)
        ),
        default=settings.limits.timeout_s,
        routes=[(videos.UPLOAD_PATH, video.upload_timeout_s), (videos.EVENTS_PATH, None)],
    )
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["X-API-Key", "Content-Type"],
            max_age=600,
        )
    app.add_middleware(SecurityHeaders)
    app.add_middleware(Instrument, metrics=metrics)
    return app


def app_from_environment() -> Any:
    """The factory uvicorn's worker processes call (settings come in an environment variable)."""
    return create_app(ServiceSettings.from_environment())


def _hidden(settings: ServiceSettings) -> list[tuple[str, str]]:
    """Server paths known before start-up that answers must not reveal."""
    hidden = [(settings.keys_file, "<keys>"), (str(Path(settings.keys_file).expanduser()), "<keys>")]
    if not settings.db.startswith(("postgresql://", "postgres://")):
        root = str(Path(settings.db).expanduser())
        hidden += [(root.rstrip("/") + "/", ""), (root, "<galleries>")]
    if settings.weights:
        hidden.append((str(Path(settings.weights).expanduser().resolve()), "<weights>"))
    return hidden
