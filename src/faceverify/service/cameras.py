"""Cameras the service watches while someone listens: one watch per camera, its events fanned
out to the subscribers of ``/v1/cameras/{name}/events`` (server-sent events).

A camera's watch starts with its first subscriber and stops :data:`IDLE_S` seconds after its
last one has left (so a browser that reconnects does not restart it). Lazily, rather than at
start-up, because a camera nobody listens to would cost a core for events that go nowhere:
the service keeps no history of what its cameras saw (the events name passers-by).

Each subscriber has its own bounded queue, and the camera's thread never waits for one: when
a subscriber's queue is full its oldest event is dropped and counted, and the subscriber is
told how many it lost before its next event. A slow client thus costs neither the camera's
pace nor the service's memory.

A file source is played once (as fast as it is watched), then every subscriber gets an ``end`` event
and its stream closes (the next subscriber plays it again); a live source is reopened by its
reader until that gives up, which also ends the streams with ``end`` and the reason. The
service's shutdown stops every watch.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from faceverify.errors import FaceVerifyError, NotReadyError, OverloadedError, VideoError
from faceverify.service.settings import Camera, VideoSettings

if TYPE_CHECKING:
    from faceverify.gallery.gallery import Gallery
    from faceverify.video.watch import Watch

log = logging.getLogger("faceverify.service")

#: Seconds a camera keeps watching with nobody subscribed.
IDLE_S = 10.0
#: What an EventSource waits before reconnecting (milliseconds, sent on every stream).
RETRY_MS = 5000


class _WatchStoppedError(Exception):
    """Raised inside a watch, from its per-frame callback, so it stops in its own thread."""


@dataclass(frozen=True)
class Message:
    """One server-sent event: its type, its JSON data and, for a track's event, its number."""

    kind: str
    data: dict[str, Any]
    id: int | None = None

    def encode(self) -> str:
        head = f"id: {self.id}\n" if self.id is not None else ""
        return f"{head}event: {self.kind}\ndata: {json.dumps(self.data, ensure_ascii=False)}\n\n"


class Subscriber:
    """One client's queue: filled by a camera's thread, emptied by the client's stream.

    Args:
        size: messages held at most; beyond, the oldest is dropped and counted.
        loop: the event loop of the client's stream (woken from the camera's thread).
    """

    def __init__(self, size: int, loop: asyncio.AbstractEventLoop) -> None:
        self.size = size
        self._items: collections.deque[Message] = collections.deque()
        self._dropped = 0
        self._closed = False
        self._lock = threading.Lock()
        self._loop = loop
        self._wake = asyncio.Event()

    def offer(self, message: Message, *, final: bool = False) -> None:
        """Queue a message without ever waiting; ``final``: nothing follows it."""
        with self._lock:
            if self._closed:
                return
            if len(self._items) >= self.size:
                self._items.popleft()
                self._dropped += 1
            self._items.append(message)
            self._closed = final
        with contextlib.suppress(RuntimeError):  # a stopped loop: the service is going down
            self._loop.call_soon_threadsafe(self._wake.set)

    async def take(self, timeout: float) -> tuple[list[Message], int, bool]:
        """Waits up to ``timeout`` s, then ``(messages, dropped since the last call, final)``."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()  # before taking: a message offered after it wakes the next call
        with self._lock:
            items, self._items = list(self._items), collections.deque()
            dropped, self._dropped = self._dropped, 0
            return items, dropped, self._closed


class CameraFeed:
    """One camera's watch and its subscribers.

    Args:
        camera: its name, gallery and source.
        settings: the subscribers' limits.
        gallery_of: the open gallery of a name (the service's own).
    """

    def __init__(self, camera: Camera, settings: VideoSettings, gallery_of: Callable[[str], Gallery]) -> None:
        self.camera = camera
        self.settings = settings
        self._gallery_of = gallery_of
        self._subscribers: set[Subscriber] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._watch: Watch | None = None
        self._idle_since: float | None = None
        self._seq = 0
        self._stop = threading.Event()

    @property
    def running(self) -> bool:
        return self._thread is not None

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def subscribe(self, loop: asyncio.AbstractEventLoop) -> Subscriber:
        """A new subscriber (the watch starts if it was not running); 503 when full."""
        with self._lock:
            if self._stop.is_set():
                raise NotReadyError("the service is stopping")
            if len(self._subscribers) >= self.settings.max_subscribers:
                raise OverloadedError(
                    f"camera {self.camera.name!r} has {len(self._subscribers)} subscribers, the most "
                    "it serves; retry later",
                    retry_after_s=RETRY_MS // 1000,
                )
            subscriber = Subscriber(self.settings.subscriber_queue, loop)
            self._subscribers.add(subscriber)
            self._idle_since = None
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"faceverify-camera-{self.camera.name}", daemon=True
                )
                self._thread.start()
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(subscriber)
            if not self._subscribers:
                self._idle_since = time.monotonic()

    async def stream(self, subscriber: Subscriber) -> AsyncIterator[str]:
        """The subscriber's event stream: its messages, ``dropped`` counts, keep-alive comments."""
        try:
            yield f"retry: {RETRY_MS}\n\n"
            while True:
                messages, dropped, final = await subscriber.take(self.settings.keepalive_s)
                if dropped:
                    yield Message("dropped", {"dropped": dropped}).encode()
                for message in messages:
                    yield message.encode()
                if final:
                    return
                if not messages and not dropped:
                    yield ": keep-alive\n\n"
        finally:
            self.unsubscribe(subscriber)

    def close(self) -> None:
        """Ask the watch to stop (at its next frame); :meth:`join` waits for it."""
        self._stop.set()

    def join(self, timeout: float) -> None:
        thread = self._thread
        if thread is None:
            return
        thread.join(timeout)
        watch = self._watch
        if thread.is_alive() and watch is not None:  # no frame came to stop it: close its reader
            log.warning("camera %s: its watch did not stop; closing its source", self.camera.name)
            watch.source.close()

    # -- the camera's thread --------------------------------------------------------------

    def _check(self, *_: object) -> None:
        """The watch's per-frame callback: stops it when the service stops or nobody listens."""
        if self._stop.is_set():
            raise _WatchStoppedError("the service is stopping")
        with self._lock:
            idle = self._idle_since is not None and time.monotonic() - self._idle_since > IDLE_S
        if idle:
            raise _WatchStoppedError("nobody is listening")

    def _publish(self, message: Message, *, final: bool = False) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            subscriber.offer(message, final=final)

    def _run(self) -> None:
        reason, summary = "the source ended", None
        try:
            summary = self._watch_camera()
        except _WatchStoppedError as exc:
            reason = str(exc)
        except VideoError as exc:  # the reason only: the source is the operator's, not the client's
            reason = f"the camera cannot be read: {exc.reason}"
        except FaceVerifyError as exc:  # e.g. its gallery is missing or of another model
            reason = self._hidden(str(exc))
        except Exception:
            log.exception("camera %s: the watch failed", self.camera.name)
            reason = "internal error; the server's log has the details"
        finally:
            with self._lock:
                subscribers, self._subscribers = self._subscribers, set()
                self._thread = self._watch = None
            log.info("camera %s stopped: %s", self.camera.name, reason)
            end = Message("end", {"camera": self.camera.name, "reason": reason, "summary": summary})
            for subscriber in subscribers:
                subscriber.offer(end, final=True)

    def _hidden(self, message: str) -> str:
        """A message without the camera's source (a URL may name hosts and hold a password)."""
        from faceverify.video.source import mask_password

        for text in (self.camera.source, mask_password(self.camera.source)):
            message = message.replace(text, "<source>")
        return message

    def _watch_camera(self) -> dict[str, Any]:
        from faceverify.video.source import open_video
        from faceverify.video.watch import Watch, WatchOptions

        gallery = self._gallery_of(self.camera.gallery)
        source = open_video(self.camera.source)  # files play once; cameras and streams are live
        try:
            watch = Watch(source, gallery, WatchOptions(), on_frame=self._check)
        except BaseException:
            source.close()
            raise
        self._watch = watch
        log.info("camera %s: watching for %d subscribers", self.camera.name, self.subscribers)
        try:
            for event in watch:
                self._seq += 1
                self._publish(Message(event.kind, event.to_dict(), self._seq))
        finally:
            watch.close()
        data = watch.summary.to_dict()
        data.pop("source", None)
        return data


class Cameras:
    """The configured cameras, by name."""

    def __init__(self, settings: VideoSettings, gallery_of: Callable[[str], Gallery]) -> None:
        self.feeds = {camera.name: CameraFeed(camera, settings, gallery_of) for camera in settings.cameras}

    def close(self, wait_s: float = 10.0) -> None:
        """Stop every watch (each at its next frame), waiting ``wait_s`` at most in all."""
        for feed in self.feeds.values():
            feed.close()
        deadline = time.monotonic() + wait_s
        for feed in self.feeds.values():
            feed.join(max(deadline - time.monotonic(), 0.0))
