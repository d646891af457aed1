"""Uploaded videos watched in the background: a bounded queue, worker threads, jobs kept a while.

``POST /v1/galleries/{g}/videos`` streams an upload into this manager's private folder (0700,
files 0600), probes it, and queues a :class:`Job`; ``workers`` threads (one by default: a
watch keeps a core busy, and the service's other requests need the rest) run
:class:`faceverify.video.watch.Watch` on each in turn. The service's web requests never wait
for a watch: they read what a job has recorded so far.

Bounds: at most ``max_pending`` jobs wait for a worker, uploads still arriving included, so a
burst of uploads is refused (503) before their bodies are read; a job keeps its first
``max_events`` events and counts the rest.

Retention: events name the people seen in someone's video, so a finished job is kept only
``keep_s`` seconds (an hour by default) and only the ``max_jobs`` latest; then it is
forgotten. The uploaded file is deleted as soon as its job ends (done, failed or cancelled),
and the whole folder when the service stops.

Who may read a job: the key that uploaded it, or an admin key valid for its gallery. Any
other key is told that no such job exists (404), as for an id never given out.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import queue
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceverify.errors import (
    Choice,
    FaceVerifyError,
    NotReadyError,
    OverloadedError,
    UnknownJobError,
    VideoError,
)
from faceverify.paths import private_dir
from faceverify.service.settings import VideoSettings

if TYPE_CHECKING:
    from faceverify.gallery.gallery import Gallery
    from faceverify.service.keys import ApiKey
    from faceverify.video.source import VideoSource
    from faceverify.video.watch import Watch, WatchOptions, WatchSummary

log = logging.getLogger("faceverify.service")

#: FFmpeg demuxers an upload may be read with. An uploaded HLS playlist or concat list
#: would otherwise make FFmpeg open the files or URLs it names (the server's own files);
#: these are containers of one video each.
UPLOAD_FORMATS = "mov,mp4,matroska,webm,avi,mpegts,flv,mpeg,ogg,asf,ivf,h264,hevc,m4v,mjpeg"
UPLOAD_OPTIONS = {"format_whitelist": UPLOAD_FORMATS}
#: Seconds a client is asked to wait when the queue is full (a short video's watch).
RETRY_AFTER_S = 10


class JobStatus(Choice):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class _JobCancelledError(Exception):
    """Raised inside a watch, from its per-frame callback, so it stops in its own thread."""


def iso(seconds: float | None) -> str | None:
    """A wall-clock time as ISO 8601 UTC (None stays None)."""
    if seconds is None:
        return None
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).isoformat(timespec="seconds")


def open_upload(path: Path) -> VideoSource:
    """An uploaded file as a video source: read whole, only as a plain video container."""
    from faceverify.video.source import open_video

    return open_video(path, live=False, options=UPLOAD_OPTIONS)


@dataclass
class Job:
    """One uploaded video and what its watch has found so far.

    Attributes:
        label: how messages name the upload (its form field and file name), never its path.
        owner: the id of the key that uploaded it (None without keys).
        video: what probing the file said (bytes, duration, fps, width, height, codec).
    """

    id: str
    gallery: str
    owner: str | None
    label: str
    path: Path
    options: WatchOptions
    video: dict[str, Any]
    status: JobStatus = JobStatus.QUEUED
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    events_dropped: int = 0
    summary: dict[str, Any] | None = None
    error: str | None = None
    cancelled: threading.Event = field(default_factory=threading.Event)
    running: WatchSummary | None = None

    def check(self, *_: object) -> None:
        """The watch's per-frame callback: stops it once the job is cancelled."""
        if self.cancelled.is_set():
            raise _JobCancelledError(self.id)

    def view(self, after: int, limit: int, keep_s: float) -> dict[str, Any]:
        """The job as the API shows it, with events ``after+1`` to ``after+limit``."""
        live = self.running
        frames = (
            live.frames_processed if live is not None else (self.summary or {}).get("frames_processed", 0)
        )
        seconds = live.video_seconds if live is not None else (self.summary or {}).get("video_seconds", 0.0)
        page = self.events[after : after + limit]
        return {
            "id": self.id,
            "status": self.status,
            "gallery": self.gallery,
            "video": self.video,
            "options": {
                "detect_every": self.options.detect_every,
                "speed": self.options.speed,
                "min_quality": self.options.min_quality,
                "threshold": self.options.threshold,
            },
            "created": iso(self.created),
            "started": iso(self.started),
            "finished": iso(self.finished),
            "expires": iso(self.finished + keep_s) if self.finished is not None else None,
            "progress": {"frames": frames, "video_seconds": round(seconds, 3)},
            "events": page,
            "events_total": len(self.events),
            "events_dropped": self.events_dropped,
            "next_after": after + len(page),
            "summary": self.summary,
            "error": self.error,
        }


class VideoJobs:
    """The upload folder, the queue of jobs, its workers, and the jobs kept for reading.

    Args:
        settings: limits, workers, retention.
        gallery_of: the open gallery of a name (the service's own, shared with its requests).
    """

    def __init__(self, settings: VideoSettings, gallery_of: Callable[[str], Gallery]) -> None:
        self.settings = settings
        self._gallery_of = gallery_of
        parent = private_dir(Path(settings.folder).expanduser()) if settings.folder else None
        self.folder = Path(tempfile.mkdtemp(prefix="faceverify-videos-", dir=parent))  # 0700
        self._jobs: dict[str, Job] = {}  # oldest first
        self._lock = threading.Lock()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._arriving = 0
        self._closed = False
        self._workers = [
            threading.Thread(target=self._work, name=f"faceverify-video-job-{n}", daemon=True)
            for n in range(settings.workers)
        ]
        for worker in self._workers:
            worker.start()

    @contextlib.contextmanager
    def admit(self) -> Iterator[Path]:
        """Where one upload goes, if a job may wait now (503 otherwise). The file is removed
        if the block fails; :meth:`submit` it inside the block."""
        with self._lock:
            if self._closed:
                raise NotReadyError("the service is stopping")
            self._expire()
            waiting = self._arriving + sum(job.status is JobStatus.QUEUED for job in self._jobs.values())
            if waiting >= self.settings.max_pending:
                raise OverloadedError(
                    f"{waiting} videos are already waiting to be watched (the most this service "
                    "queues); retry after the interval in Retry-After",
                    retry_after_s=RETRY_AFTER_S,
                )
            self._arriving += 1
        path = self.folder / f"{secrets.token_urlsafe(12)}.video"
        try:
            yield path
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        finally:
            with self._lock:
                self._arriving -= 1

    def submit(
        self,
        path: Path,
        *,
        gallery: str,
        owner: ApiKey | None,
        label: str,
        options: WatchOptions,
        video: dict[str, Any],
    ) -> Job:
        """Queue the upload at ``path`` (from :meth:`admit`) for a worker."""
        job = Job(path.stem, gallery, owner.id if owner else None, label, path, options, video)
        with self._lock:
            self._jobs[job.id] = job
        self._queue.put(job)
        return job

    def view(self, job_id: str, key: ApiKey | None, *, after: int = 0, limit: int = 500) -> dict[str, Any]:
        with self._lock:
            self._expire()
            return self._find(job_id, key).view(after, limit, self.settings.keep_s)

    def remove(self, job_id: str, key: ApiKey | None) -> None:
        """Forget a job now: a queued one never runs, a running one stops at its next frame;
        its upload is deleted at once (a running reader keeps its open file until it stops)."""
        with self._lock:
            job = self._find(job_id, key)
            del self._jobs[job.id]
            job.cancelled.set()
        job.path.unlink(missing_ok=True)

    def close(self, wait_s: float = 10.0) -> None:
        """Cancel every job, stop the workers, delete the folder (the service is stopping)."""
        with self._lock:
            self._closed = True
            for job in self._jobs.values():
                job.cancelled.set()
        for _ in self._workers:
            self._queue.put(None)
        deadline = time.monotonic() + wait_s
        for worker in self._workers:
            worker.join(max(deadline - time.monotonic(), 0.0))
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- under the lock -------------------------------------------------------------------

    def _find(self, job_id: str, key: ApiKey | None) -> Job:
        job = self._jobs.get(job_id)
        if job is None or not _may_read(job, key):
            raise UnknownJobError(
                f"no video job {job_id[:40]!r}: it never existed, was deleted, or expired "
                f"({self.settings.keep_s:g} s after it ended); only the key that uploaded it "
                "(or an admin key) may read it"
            )
        return job

    def _expire(self) -> None:
        now = time.time()
        finished = sorted(
            (job for job in self._jobs.values() if job.finished is not None),
            key=lambda job: job.finished or 0.0,
        )
        expired = [job for job in finished if now - (job.finished or 0.0) > self.settings.keep_s]
        kept = finished[len(expired) :]  # sorted: the expired ones come first
        expired += kept[: max(len(kept) - self.settings.max_jobs, 0)]
        for job in expired:
            del self._jobs[job.id]

    # -- the workers ----------------------------------------------------------------------

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            try:
                self._run(job)
            except Exception:  # a bug must not end the worker: the next job still runs
                log.exception("video job %s failed unexpectedly", job.id)
                self._finish(job, JobStatus.FAILED, "internal error; the server's log has the details")
            finally:
                job.path.unlink(missing_ok=True)

    def _run(self, job: Job) -> None:
        from faceverify.video.watch import Watch

        with self._lock:
            if job.cancelled.is_set():
                return
            job.status, job.started = JobStatus.RUNNING, time.time()
        watch: Watch | None = None
        try:
            gallery = self._gallery_of(job.gallery)
            source = open_upload(job.path)
            try:
                watch = Watch(source, gallery, job.options, on_frame=job.check)
            except BaseException:
                source.close()
                raise
            job.running = watch.summary
            for event in watch:
                self._record(job, event.to_dict())
            self._finish(job, JobStatus.DONE, None, watch)
        except _JobCancelledError:
            log.info("video job %s cancelled", job.id)
        except VideoError as exc:  # named as the upload, never by its path on the server
            self._finish(job, JobStatus.FAILED, f"{job.label}: {exc.reason}", watch)
        except FaceVerifyError as exc:  # e.g. the gallery was deleted meanwhile
            self._finish(job, JobStatus.FAILED, str(exc), watch)
        finally:
            if watch is not None:
                watch.close()

    def _record(self, job: Job, event: dict[str, Any]) -> None:
        with self._lock:
            if len(job.events) < self.settings.max_events:
                job.events.append({"seq": len(job.events) + 1, **event})
            else:
                job.events_dropped += 1

    def _finish(self, job: Job, status: JobStatus, error: str | None, watch: Watch | None = None) -> None:
        summary = None
        if watch is not None:
            summary = {**watch.summary.to_dict(), "source": job.label, "error": error}
        with self._lock:
            job.status, job.error, job.summary = status, error, summary
            job.finished, job.running = time.time(), None
            self._expire()


def _may_read(job: Job, key: ApiKey | None) -> bool:
    return key is None or key.id == job.owner or key.allows("admin", job.gallery)
