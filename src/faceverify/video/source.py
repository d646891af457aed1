"""Reading video: files, webcams and network streams through FFmpeg (PyAV), one reader.

:func:`open_video` takes a file path (mp4, mkv, webm, avi, mov... whatever FFmpeg reads), a
camera (``/dev/video0``, or its number ``0``), or a URL (``rtsp://``, ``rtmp://``,
``http(s)://``, ``udp://``, ``tcp://``, ``srt://``). Frames are decoded in a thread into a
bounded queue, so decoding overlaps the face work:

* a **file** is read whole: the queue blocks the decoder when the consumer is slower;
* a **live** source (a camera, a stream; a file when asked, played at its own rate and
  started again when it ends: an endless source for trials) cannot wait: when the queue is full the oldest
  frame is dropped and counted (:attr:`SourceStats.dropped`), so the consumer always works
  on recent frames instead of falling further behind;
* a live source that breaks or ends is reopened with exponential back-off (0.5 s doubling
  to 8 s) until ``retries`` attempts in a row have failed, then the stream ends with a
  :class:`~faceverify.errors.VideoError`; a source that never opens fails the same way;
  FFmpeg's own timeouts (``open_timeout``/``read_timeout``) keep a silent stream from hanging;
* a packet FFmpeg's decoder rejects is skipped and counted (:attr:`SourceStats.corrupt`); a
  source whose frames all fail is a :class:`VideoError` naming its codec. (Much damage
  never reaches the decoder: MPEG-TS resynchronises past it and decoders conceal errors,
  so ``corrupt`` counts what FFmpeg reports, not every damaged byte.)

Frame times are the stream's own presentation times for files (seconds from the start) and
seconds since the source opened for live sources (their clocks restart on reconnection).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from faceverify.errors import ConfigError, VideoError
from faceverify.extras import VIDEO

log = logging.getLogger(__name__)

#: URL schemes of live network sources (``http(s)`` is live only without a known duration).
LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "udp", "tcp", "srt", "rtp")
NETWORK_SCHEMES = (*LIVE_SCHEMES, "http", "https")
#: Frames a live source may hold while the consumer is busy (a second at 30 fps would be
#: stale by the time it is reached; a few frames absorb a slow detection).
LIVE_QUEUE = 4
FILE_QUEUE = 16
#: Packets in a row that fail to decode before the source is judged undecodable.
MAX_BAD_IN_A_ROW = 64
_BACKOFF_START, _BACKOFF_MAX = 0.5, 8.0
_END = object()


@dataclass
class SourceStats:
    """What a source has delivered so far (updated while it runs).

    Attributes:
        read: frames decoded. dropped: decoded frames thrown away because the consumer was
        behind (live sources only). corrupt: packets or frames FFmpeg could not decode.
        reconnects: times a live source was reopened.
    """

    read: int = 0
    dropped: int = 0
    corrupt: int = 0
    reconnects: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "read": self.read,
            "dropped": self.dropped,
            "corrupt": self.corrupt,
            "reconnects": self.reconnects,
        }


@dataclass(frozen=True)
class VideoFrame:
    """One decoded frame.

    Attributes:
        index: its number among the frames the source decoded (0 first; dropped ones count).
        time: seconds (see the module docstring).
        width, height: its size in pixels.
    """

    index: int
    time: float
    width: int
    height: int
    _frame: Any = field(repr=False, compare=False)
    _cache: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    def pixels(self) -> np.ndarray:
        """``[H, W, 3]`` uint8 RGB, converted on first use (frames that are only counted or
        skipped never pay for the conversion)."""
        if "rgb" not in self._cache:
            array = self._frame.to_ndarray(format="rgb24")
            array.setflags(write=False)
            self._cache["rgb"] = array
        return self._cache["rgb"]


def mask_password(source: str) -> str:
    """``rtsp://user:secret@host`` as ``rtsp://user:***@host`` (logs and errors only)."""
    return re.sub(r"(://[^/:@]+:)[^@/]*@", r"\1***@", source)


def describe_source(source: str | int | os.PathLike[str]) -> tuple[str, str | None, bool | None]:
    """``(path or URL, FFmpeg input format or None, live or None when unknown yet)``."""
    text = str(source)
    if isinstance(source, int) or text.isdigit():
        return f"/dev/video{int(text)}", "v4l2", True
    if text.startswith("/dev/video"):
        return text, "v4l2", True
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in LIVE_SCHEMES:
        return text, None, True
    if scheme in ("http", "https"):
        return text, None, None  # decided by the container: no duration means a live stream
    if scheme and scheme != "file":
        raise ConfigError(
            f"video source {mask_password(text)!r}: unknown scheme {scheme!r}; use a file, a camera "
            f"(/dev/videoN or its number) or one of {', '.join(NETWORK_SCHEMES)}"
        )
    return text, None, False


class VideoSource:
    """Frames of one video source; iterate it, then :meth:`close` (or use ``with``).

    Args:
        source: file path, camera (``/dev/video0`` or ``0``) or URL.
        live: force live handling (drop frames, reconnect) on or off; None decides from the
            source (cameras and streams are live, files are not).
        retries: failed (re)connections in a row before giving up, live sources only.
        open_timeout, read_timeout: seconds FFmpeg waits to open the source / for data.
        input_format: FFmpeg's input format (``v4l2``, ``avfoundation``, ``dshow``, ``mjpeg``...),
            when the name does not tell.
        options: FFmpeg options for the input (e.g. ``{"rtsp_transport": "udp"}``,
            ``{"video_size": "1280x720"}`` for a camera).
        queue_size: frames held for the consumer (default 4 live, 16 files).
    """

    def __init__(
        self,
        source: str | int | os.PathLike[str],
        *,
        live: bool | None = None,
        retries: int = 5,
        open_timeout: float = 10.0,
        read_timeout: float = 5.0,
        input_format: str | None = None,
        options: dict[str, str] | None = None,
        queue_size: int | None = None,
    ) -> None:
        VIDEO.require("reading video")
        if retries < 0:
            raise ConfigError(f"retries {retries!r} must be 0 or more")
        if min(open_timeout, read_timeout) <= 0:
            raise ConfigError(f"timeouts must be positive, got open {open_timeout!r}, read {read_timeout!r}")
        self.url, guessed_format, guessed_live = describe_source(source)
        self.name = mask_password(self.url)
        self.input_format = input_format or guessed_format
        self.options = dict(options or {})
        if self.url.lower().startswith(("rtsp://", "rtsps://")):
            self.options.setdefault("rtsp_transport", "tcp")  # UDP loses packets: grey smears
        self.retries = retries
        self.timeouts = (open_timeout, read_timeout)
        self.stats = SourceStats()
        self._check_exists()
        # fails here, in the caller's thread, when the source is bad
        container = self._first_open(network="://" in self.url and guessed_live is not False)
        self.fps, self.duration, self.size, self.codec = _describe(container)
        self.live = (
            live
            if live is not None
            else (guessed_live if guessed_live is not None else self.duration is None)
        )
        self._queue: queue.Queue[Any] = queue.Queue(queue_size or (LIVE_QUEUE if self.live else FILE_QUEUE))
        self._stop = threading.Event()
        self._error: VideoError | None = None
        self._started = time.monotonic()
        self._last_time = 0.0
        self._plays_file = "://" not in self.url and self.input_format is None
        self._thread = threading.Thread(
            target=self._run, args=(container,), name="faceverify-video", daemon=True
        )
        self._thread.start()

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[VideoFrame]:
        """Frames in order until the source ends; raises the source's VideoError, if any,
        after the frames decoded before it."""
        while True:
            try:
                item = self._queue.get(timeout=0.2)
            except queue.Empty:
                if self._stop.is_set():  # stopped while the source had nothing to give
                    return
                continue
            if item is _END:
                if self._error is not None and not self._stop.is_set():
                    raise self._error
                return
            yield item

    def stop(self) -> None:
        """Ask the reader to end: iteration stops within a frame or 0.2 s, without waiting
        for the decoding thread (safe from a signal handler; :meth:`close` still releases)."""
        self._stop.set()

    def close(self) -> None:
        """Stop decoding and release the source (safe to call twice)."""
        self._stop.set()
        while True:  # unblock a decoder waiting on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=max(self.timeouts) + 1.0)

    # -- the decoding thread ------------------------------------------------------------

    def _check_exists(self) -> None:
        if self.input_format == "v4l2" and not Path(self.url).exists():
            found = sorted(str(p) for p in Path("/dev").glob("video*"))
            raise VideoError(
                self.name,
                "no such camera; cameras on this machine: "
                + (", ".join(found) or "none")
                + " (give another device, or a file or stream URL)",
            )
        if "://" not in self.url and self.input_format is None and not Path(self.url).is_file():
            raise VideoError(self.name, "no such file")

    def _open(self) -> Any:
        import av

        try:
            container = av.open(
                self.url, format=self.input_format, options=self.options, timeout=self.timeouts
            )
        except (av.FFmpegError, OSError) as exc:
            raise VideoError(self.name, _reason(exc, "cannot be opened as a video")) from exc
        if not container.streams.video:
            container.close()
            raise VideoError(self.name, "holds no video stream (is it audio only, or not a video?)")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # FFmpeg's frame and slice threads: 1080p H.264 at 2-3x
        return container

    def _run(self, container: Any) -> None:
        offset, failures = 0.0, 0
        try:
            while not self._stop.is_set():
                ended_cleanly = self._decode(container, offset)
                container.close()
                if not self.live or self._stop.is_set():
                    return
                offset = time.monotonic() - self._started
                container, failures = self._reconnect(failures if not ended_cleanly else 0)
        except VideoError as exc:
            self._error = exc
        except Exception as exc:  # anything else must still end the consumer's loop
            self._error = VideoError(self.name, f"reading stopped: {exc}")
        finally:
            self._put(_END, final=True)

    def _reconnect(self, failures: int) -> tuple[Any, int]:
        log.warning(
            "%s: the stream ended or broke; reconnecting (%d attempts at most)", self.name, self.retries
        )
        delay = _BACKOFF_START
        while not self._stop.is_set():
            if failures >= self.retries:
                raise VideoError(self.name, f"the stream broke and {failures} reconnection attempts failed")
            if self._stop.wait(delay):
                break
            failures += 1
            try:
                container = self._open()
            except VideoError as exc:
                delay = min(delay * 2, _BACKOFF_MAX)
                log.warning(
                    "%s: attempt %d failed (%s); next in %.1f s", self.name, failures, exc.reason, delay
                )
                continue
            self.stats.reconnects += 1
            return container, failures
        raise VideoError(self.name, "closed while reconnecting")

    def _first_open(self, network: bool) -> Any:
        """Open the source; a live network source gets ``retries`` more attempts with
        back-off (a camera server restarting), anything else fails at once."""
        delay, attempt = _BACKOFF_START, 0
        while True:
            try:
                return self._open()
            except VideoError as exc:
                if not network or attempt >= self.retries:
                    if attempt:
                        raise VideoError(self.name, f"{exc.reason}; {attempt + 1} attempts failed") from exc
                    raise
                attempt += 1
                log.warning("%s: %s; retrying in %.1f s", self.name, exc.reason, delay)
                time.sleep(delay)
                delay = min(delay * 2, _BACKOFF_MAX)

    def _decode(self, container: Any, offset: float) -> bool:
        """Decode until the container ends; True when it ended cleanly, False on an error."""
        import av

        stream = container.streams.video[0]
        bad_in_a_row = 0
        try:
            for packet in container.demux(stream):
                if self._stop.is_set():
                    return True
                try:
                    frames = packet.decode()
                except av.FFmpegError:
                    self.stats.corrupt += 1
                    bad_in_a_row += 1
                    if bad_in_a_row >= MAX_BAD_IN_A_ROW and self.stats.read == 0:
                        raise VideoError(
                            self.name, f"no frame of its {self.codec} video could be decoded"
                        ) from None
                    continue
                bad_in_a_row = 0 if frames else bad_in_a_row
                for frame in frames:
                    self._deliver(frame, offset)
        except av.FFmpegError as exc:
            if not self.live:
                if self.stats.read == 0:
                    raise VideoError(self.name, _reason(exc, "cannot be decoded")) from exc
                self.stats.corrupt += 1  # a truncated file: keep what was read
                log.warning("%s: reading stopped early: %s", self.name, exc)
            return False
        if not self.live and self.stats.read == 0:
            damaged = f" ({self.stats.corrupt} packets could not be decoded)" if self.stats.corrupt else ""
            raise VideoError(self.name, f"no frame of its {self.codec} video could be decoded{damaged}")
        return True

    def _deliver(self, frame: Any, offset: float) -> None:
        if self.live and self._plays_file and frame.time is not None:
            # a file read as live plays at its own rate, as a camera would (ffmpeg's -re)
            wait = self._started + offset + float(frame.time) - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                return
        if self.live:
            stamp = time.monotonic() - self._started
        else:
            stamp = float(frame.time) if frame.time is not None else self.stats.read / (self.fps or 25.0)
        # damaged streams can carry times out of order: a tracker needs them rising
        stamp = max(stamp, offset, self._last_time)
        self._last_time = stamp
        item = VideoFrame(self.stats.read, stamp, frame.width, frame.height, frame)
        self.stats.read += 1
        self._put(item)

    def _put(self, item: Any, *, final: bool = False) -> None:
        while not self._stop.is_set() or final:
            if self.live and not final:
                try:
                    self._queue.put_nowait(item)
                    return
                except queue.Full:
                    try:  # the consumer is behind: drop the oldest, keep the newest
                        self._queue.get_nowait()
                        self.stats.dropped += 1
                    except queue.Empty:
                        pass
                    continue
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                if final and self._stop.is_set():  # the consumer has gone: make room for the marker
                    with contextlib.suppress(queue.Empty):
                        self._queue.get_nowait()


def _describe(container: Any) -> tuple[float | None, float | None, tuple[int, int], str]:
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate
    fps = float(rate) if rate else None
    duration = container.duration / 1_000_000 if container.duration else None  # AV_TIME_BASE
    size = (stream.codec_context.width, stream.codec_context.height)
    return fps, duration, size, stream.codec_context.name


def _reason(exc: Exception, default: str) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return f"{default} ({text})" if text else default


def open_video(source: str | int | os.PathLike[str], **kwargs: Any) -> VideoSource:
    """A :class:`VideoSource` for ``source`` (same arguments)."""
    return VideoSource(source, **kwargs)
