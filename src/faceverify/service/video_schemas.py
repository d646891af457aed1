"""The JSON of the video routes: upload jobs, their events and summary, cameras."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from faceverify.service.schemas import ERRORS, ErrorBody

#: Error answers of the video routes, for the OpenAPI document.
VIDEO_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    404: {"model": ErrorBody, "description": "unknown gallery, job (or a job of another key) or camera"},
    413: {"model": ErrorBody, "description": "the video is larger than the service takes"},
    422: {"model": ErrorBody, "description": "not a video FFmpeg reads (invalid_video), or a bad option"},
    503: {"model": ErrorBody, "description": "too many videos waiting, or subscribers (see Retry-After)"},
}


class JobLinks(BaseModel):
    job: str = Field(description="where to read the job (GET) or cancel and forget it (DELETE)")


class JobCreated(BaseModel):
    id: str
    status: str = Field(description="queued")
    links: JobLinks


class VideoInfo(BaseModel):
    file: str = Field(description="form field and file name of the upload")
    bytes: int
    duration: float | None = Field(description="seconds, as the container says; null if it does not")
    fps: float | None
    width: int
    height: int
    codec: str


class JobProgress(BaseModel):
    frames: int = Field(description="frames processed so far")
    video_seconds: float = Field(description="how far into the video the watch is")


class JobOut(BaseModel):
    id: str
    status: str = Field(description="queued, running, done or failed")
    gallery: str
    video: VideoInfo
    options: dict[str, Any] = Field(description="detect_every, speed, min_quality, threshold as asked")
    created: str
    started: str | None
    finished: str | None
    expires: str | None = Field(description="when the finished job (and its events) will be forgotten")
    progress: JobProgress
    events: list[dict[str, Any]] = Field(
        description="events after ?after=, in order: seq (from 1), event (appeared, changed or ended), "
        "time, track, start, end, status (known, unknown or unidentified), name, score, threshold, "
        "threshold_source, box, quality, shots, detections"
    )
    events_total: int = Field(description="events recorded so far")
    events_dropped: int = Field(description="events left out once the job held the most it keeps")
    next_after: int = Field(description="pass as ?after= to read the events that follow")
    summary: dict[str, Any] | None = Field(
        description="when finished: frames read, processed, skipped; tracks; known, unknown and "
        "unidentified counts; people; video and wall seconds"
    )
    error: str | None = Field(description="why the job failed")


class CameraOut(BaseModel):
    name: str
    gallery: str = Field(description="the gallery whose people it names")
    running: bool = Field(description="watching now (it starts with its first subscriber)")
    subscribers: int
