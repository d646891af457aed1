"""``/v1/galleries/{g}/videos``, ``/v1/videos/{id}``, ``/v1/cameras``: faces in video.

An uploaded video is watched in the background (:mod:`faceverify.service.video_jobs`): the
upload answers 202 with the job's address, and the job is read until it is ``done`` or
``failed``. A camera configured on the server (``faceverify serve --camera``) is watched
while clients listen to its server-sent events (:mod:`faceverify.service.cameras`).

Scopes: uploading needs ``read`` on the gallery (it names faces, as identify does); a job is
read or deleted by the key that uploaded it or an admin key of its gallery; a camera's
events need ``read`` on the camera's gallery.

The upload is streamed to disk as it arrives rather than parsed into a form first: its size
is checked as it comes, it never sits in memory or in a second temporary file, and a full
queue refuses it before a byte of it is read.
"""

from __future__ import annotations

import asyncio
from pathlib import Path as FilePath
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from faceverify.errors import (
    ForbiddenError,
    InvalidFieldError,
    NotReadyError,
    PayloadTooLargeError,
    UnknownCameraError,
    VideoError,
)
from faceverify.extras import VIDEO
from faceverify.gallery.catalog import check_gallery_name
from faceverify.paths import open_private
from faceverify.service.cameras import CameraFeed, Cameras
from faceverify.service.deps import Reader, State, read_access
from faceverify.service.routers.faces import Threshold
from faceverify.service.routers.galleries import GalleryName
from faceverify.service.settings import CAMERA_NAME
from faceverify.service.video_jobs import JobStatus, VideoJobs, open_upload
from faceverify.service.video_schemas import VIDEO_ERRORS, CameraOut, JobCreated, JobLinks, JobOut

router = APIRouter(prefix="/v1", tags=["videos"], responses=VIDEO_ERRORS, dependencies=[Depends(read_access)])

#: Routes whose limits differ from the service's (see ``create_app``).
UPLOAD_PATH = r"/v1/galleries/[^/]+/videos"
EVENTS_PATH = r"/v1/cameras/[^/]+/events"
#: The form field that carries the video.
FIELD = "video"
_NAME_LENGTH = 80

JobId = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_-]+$", description="the job's id")]
CameraName = Annotated[str, Path(max_length=48, pattern=CAMERA_NAME.pattern, description="the camera's name")]

UPLOAD_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FIELD],
                    "properties": {
                        FIELD: {"type": "string", "format": "binary", "description": "mp4, mkv, webm, avi..."}
                    },
                }
            }
        },
    }
}


def _jobs(request: Request) -> VideoJobs:
    jobs: VideoJobs | None = getattr(request.app.state, "videos", None)
    if jobs is None:
        raise NotReadyError("the service is starting or stopping")
    return jobs


def _cameras(request: Request) -> Cameras:
    cameras: Cameras | None = getattr(request.app.state, "cameras", None)
    if cameras is None:
        raise NotReadyError("the service is starting or stopping")
    return cameras


@router.post(
    "/galleries/{gallery}/videos",
    status_code=202,
    response_model=JobCreated,
    summary="Upload a video: its faces are tracked and named in the background",
    openapi_extra=UPLOAD_DOC,
)
async def upload_video(
    request: Request,
    state: State,
    key: Reader,
    gallery: GalleryName,
    detect_every: Annotated[
        int | None, Query(ge=1, le=1000, description="detect faces on every Nth frame (default: every frame)")
    ] = None,
    speed: Annotated[
        float,
        Query(
            ge=0,
            le=100,
            description="0 (default): every frame; else skip frames to keep this multiple of real time",
        ),
    ] = 0.0,
    min_quality: Annotated[
        float | None, Query(ge=0, le=1, description="faces below this quality never identify (0.75)")
    ] = None,
    threshold: Threshold = None,
) -> JSONResponse:
    """The video goes in the multipart field ``video``. 202 with the job's address (also in
    ``Location``) once the file is known to be a video (422 ``invalid_video`` otherwise);
    read it with ``GET /v1/videos/{id}`` until it is ``done`` or ``failed``."""
    VIDEO.require("watching videos")
    from faceverify.video.watch import WatchOptions

    name = check_gallery_name(gallery)
    await anyio.to_thread.run_sync(state.galleries.get, name)  # unknown gallery: before the upload
    extra: dict[str, Any] = {} if min_quality is None else {"min_quality": min_quality}
    options = WatchOptions(detect_every=detect_every, speed=speed, threshold=threshold, **extra)
    jobs = _jobs(request)
    with jobs.admit() as path:
        filename, size = await _receive(request, path, jobs.settings.max_upload_bytes)
        label = f"{FIELD} ({filename[:_NAME_LENGTH]!r})" if filename else FIELD
        video = await anyio.to_thread.run_sync(_probe, path, label, state.settings.limits.max_pixels)
        job = jobs.submit(
            path, gallery=name, owner=key, label=label, options=options, video={**video, "bytes": size}
        )
    where = request.url_for("get_video", job_id=job.id).path
    body = JobCreated(id=job.id, status=JobStatus.QUEUED, links=JobLinks(job=where))  # as submitted
    return JSONResponse(body.model_dump(), status_code=202, headers={"Location": where})


@router.get("/videos/{job_id}", response_model=JobOut, summary="A video job: status, progress, events")
def get_video(
    request: Request,
    key: Reader,
    job_id: JobId,
    after: Annotated[int, Query(ge=0, description="events already read (the seq of the last one)")] = 0,
    limit: Annotated[int, Query(ge=1, le=2000, description="events at most")] = 500,
) -> dict[str, Any]:
    return _jobs(request).view(job_id, key, after=after, limit=limit)


@router.delete("/videos/{job_id}", status_code=204, summary="Cancel a video job and forget it")
def delete_video(request: Request, key: Reader, job_id: JobId) -> Response:
    """A queued job never runs, a running one stops; its upload and events are deleted."""
    _jobs(request).remove(job_id, key)
    return Response(status_code=204)


@router.get("/cameras", response_model=list[CameraOut], summary="Cameras this key may listen to")
def list_cameras(request: Request, key: Reader) -> list[dict[str, Any]]:
    feeds = _cameras(request).feeds.values()
    return [
        {
            "name": f.camera.name,
            "gallery": f.camera.gallery,
            "running": f.running,
            "subscribers": f.subscribers,
        }
        for f in feeds
        if key is None or key.allows("read", f.camera.gallery)
    ]


@router.get(
    "/cameras/{name}/events",
    response_class=StreamingResponse,
    summary="A camera's events as they happen (server-sent events)",
    responses={200: {"content": {"text/event-stream": {}}, "description": "the event stream"}},
)
async def camera_events(request: Request, key: Reader, name: CameraName) -> StreamingResponse:
    """``text/event-stream``: ``appeared``, ``changed`` and ``ended`` (a track's event as
    JSON, with a numbered ``id``), ``dropped`` (``{"dropped": N}``: events this client lost
    by reading too slowly), ``end`` (the watch stopped, with the reason; the stream closes)
    and a keep-alive comment when nothing happens. Events are not kept: only what happens
    while a client listens is sent."""
    feed = _feed(request, name)
    if key is not None and not key.allows("read", feed.camera.gallery):
        raise ForbiddenError("this API key is not valid for this camera's gallery")
    subscriber = feed.subscribe(asyncio.get_running_loop())
    return StreamingResponse(
        feed.stream(subscriber), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"}
    )


def _feed(request: Request, name: str) -> CameraFeed:
    feed = _cameras(request).feeds.get(name)
    if feed is None:
        raise UnknownCameraError(f"no camera named {name!r}; GET /v1/cameras lists them")
    return feed


def _probe(path: FilePath, label: str, max_pixels: int) -> dict[str, Any]:
    """What the uploaded file holds, or 422 ``invalid_video`` naming the upload."""
    try:
        source = open_upload(path)
    except VideoError as exc:
        raise VideoError(label, exc.reason) from None
    try:
        width, height = source.size
        if width * height > max_pixels:
            raise VideoError(label, f"frames of {width}x{height} pixels; the limit is {max_pixels:,} a frame")
        return {
            "file": label,
            "duration": source.duration,
            "fps": source.fps,
            "width": width,
            "height": height,
            "codec": source.codec,
        }
    finally:
        source.close()


async def _receive(request: Request, path: FilePath, limit: int) -> tuple[str, int]:
    """Stream the form's ``video`` file into ``path`` (created 0600); its name and size.

    Other fields are read past and dropped; 413 as soon as the video passes ``limit``."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    kind, params = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data" or b"boundary" not in params:
        raise InvalidFieldError(
            f"send the video as multipart/form-data in the field {FIELD!r} (curl -F {FIELD}=@clip.mp4)",
            code="invalid_body",
        )
    part = _VideoPart(limit)
    parser = MultipartParser(params[b"boundary"], part.callbacks())  # type: ignore[arg-type]
    with open_private(path) as stream:
        try:
            async for chunk in request.stream():
                parser.write(chunk)
                if part.pending:
                    await anyio.to_thread.run_sync(stream.write, part.take())
            parser.finalize()
        except ClientDisconnect:
            raise HTTPException(400, "the client went away during the upload") from None
        except ValueError as exc:  # python-multipart's parse errors
            raise HTTPException(400, "malformed multipart body") from exc
    if not part.found:
        raise InvalidFieldError(f"no file in the form field {FIELD!r}", code="missing_video")
    return part.filename, part.size


class _VideoPart:
    """python-multipart's callbacks, keeping the bytes of the first file in the ``video``
    field (the caller writes them out after each chunk) and counting them against ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.filename = ""
        self.size = 0
        self.found = False
        self._wanted = False
        self._header = [b"", b""]
        self._disposition = b""
        self._chunks: list[bytes] = []

    @property
    def pending(self) -> bool:
        return bool(self._chunks)

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda data, start, end: self._add_header(0, data[start:end]),
            "on_header_value": lambda data, start, end: self._add_header(1, data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": self._begin,
        }

    def _begin(self) -> None:
        self._wanted, self._disposition = False, b""

    def _add_header(self, which: int, data: bytes) -> None:
        self._header[which] += data

    def _header_end(self) -> None:
        name, value = self._header
        if name.lower() == b"content-disposition":
            self._disposition = value
        self._header = [b"", b""]

    def _headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, options = parse_options_header(self._disposition)
        if options.get(b"name") == FIELD.encode() and b"filename" in options and not self.found:
            self.found = self._wanted = True
            self.filename = options[b"filename"].decode("utf-8", "replace").replace("\n", " ")

    def _data(self, data: bytes, start: int, end: int) -> None:
        if not self._wanted:
            return
        self.size += end - start
        if self.size > self.limit:
            raise PayloadTooLargeError(
                f"the video is larger than {self.limit:,} bytes, the most this service takes",
                code="video_too_large",
            )
        self._chunks.append(bytes(data[start:end]))
