"""Watching a video: faces detected, tracked, quality-gated and identified once per track.

:func:`watch` reads a source (:mod:`faceverify.video.source`), detects faces on some frames
(every frame when the CPU allows, every Nth otherwise: see :class:`Pace`), follows them with
ByteTrack, embeds a track's faces only when they improve its best shots, and answers once
per track (:mod:`faceverify.video.tracks`). What it yields are :class:`VideoEvent`\\ s:

* ``appeared``: a track's first answer: an enrolled name, or ``unknown`` (a stranger);
* ``changed``: a better shot changed the answer (rare: hysteresis);
* ``ended``: the track was lost for ``lost_after`` seconds, or the video ended, with its
  final answer, times and best shot; a track that never had a face good enough to judge
  ends ``unidentified`` (and is announced only then).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from faceverify.errors import ConfigError
from faceverify.faces.detect import VIDEO_DETECTOR, VIDEO_MAX_SIDE
from faceverify.faces.quality import MIN_QUALITY
from faceverify.video.source import VideoFrame, VideoSource, open_video
from faceverify.video.tracks import Answer, FaceTracker, Shot, Status, Track, decide, track_record

if TYPE_CHECKING:
    from faceverify.faces.detect import Face
    from faceverify.gallery.gallery import Gallery
    from faceverify.runtime.threshold import Threshold

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WatchOptions:
    """How a video is watched.

    Attributes:
        detector, upsample, max_side, min_size: face detection on a frame, as for photos.
            Frames are reduced to ``max_side`` (default 640) for detection: at
            ``upsample=1`` the smallest face found is 1/16 of the frame's longer side (80 px
            in 720p); raise it for small faces, at a cost in detections per second. ``hog``
            is the default: in video most frames hold no face, where ``hog+mmod`` would run
            the slower CNN every time.
        detect_every: detect on every Nth frame; None (default) adapts N to the CPU so that
            processing keeps pace with the video (:attr:`speed`).
        speed: the pace to keep for files, as a multiple of real time (default 1.0; live
            sources always 1.0). When even tracking alone cannot keep it, frames are skipped
            (counted). 0 processes every frame of a file, detecting on ``detect_every`` (or 1).
        min_quality: faces below it are never used to identify (default
            :data:`~faceverify.faces.quality.MIN_QUALITY`, the enrolment gate).
        keep: best shots per track whose embeddings make its probe.
        margin: hysteresis, as a share of ``1 - threshold`` (0 turns it off).
        lost_after: seconds a track lives on without a detection.
        recheck: seconds between checks that a track's face is still the same person (an
            embedding of a good face compared with the track's best shots; a track the
            tracker carried over to someone else is split there).
        min_hits: detections in a row that confirm a track.
        threshold: the decision threshold; None takes the model's (calibrated or published).
    """

    detector: str = VIDEO_DETECTOR
    upsample: int = 1
    max_side: int | None = VIDEO_MAX_SIDE
    min_size: float = 0.0
    detect_every: int | None = None
    speed: float = 1.0
    min_quality: float = MIN_QUALITY
    keep: int = 3
    margin: float = 0.1
    lost_after: float = 1.0
    recheck: float = 1.0
    min_hits: int = 2
    threshold: float | None = None

    def __post_init__(self) -> None:
        from faceverify.photos import FaceOptions

        FaceOptions(detector=self.detector, upsample=self.upsample, max_side=self.max_side)  # validates
        checks = {
            "detect_every": self.detect_every is None or self.detect_every >= 1,
            "speed": self.speed >= 0,
            "min_quality": 0.0 <= self.min_quality <= 1.0,
            "keep": self.keep >= 1,
            "margin": 0.0 <= self.margin < 1.0,
            "lost_after": self.lost_after > 0,
            "recheck": self.recheck > 0,
            "min_hits": self.min_hits >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(
                f"invalid watch option {bad[0]}={getattr(self, bad[0])!r}: detect_every >= 1, "
                "speed >= 0, 0 <= min_quality <= 1, keep >= 1, 0 <= margin < 1, lost_after > 0, "
                "recheck > 0, min_hits >= 1"
            )


@dataclass(frozen=True)
class VideoEvent:
    """Something that happened to a track (see the module docstring).

    ``record`` holds the track's fields: ``track``, ``start``/``end`` (seconds), ``status``
    (``known``/``unknown``/``unidentified``), ``name``, ``score``, ``threshold``,
    ``threshold_source``, the best shot's ``box`` and ``quality``, ``shots``, ``detections``.
    """

    kind: str
    time: float
    record: dict[str, Any]
    snapshot: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {"event": self.kind, "time": round(self.time, 3), **self.record}
        return {**data, "snapshot": self.snapshot} if self.snapshot else data


@dataclass
class WatchSummary:
    """What a watch did, filled in as it runs (final when the events are exhausted)."""

    source: str = ""
    frames_read: int = 0
    frames_processed: int = 0
    frames_skipped: int = 0
    frames_dropped: int = 0
    frames_corrupt: int = 0
    reconnects: int = 0
    detections: int = 0
    tracks: int = 0
    known: int = 0
    unknown: int = 0
    unidentified: int = 0
    people: list[str] = field(default_factory=list)
    video_seconds: float = 0.0
    wall_seconds: float = 0.0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "people"}
        wall = max(self.wall_seconds, 1e-9)
        return {
            **data,
            "people": sorted(self.people),
            "fps": round(self.frames_processed / wall, 2),
            "speed": round(self.video_seconds / wall, 2),
            "video_seconds": round(self.video_seconds, 3),
            "wall_seconds": round(self.wall_seconds, 3),
        }


class Pace:
    """When to detect, and when to skip frames, so processing keeps up with the video.

    Costs are measured as it runs (moving averages of a detecting frame and of a tracking
    one); detection runs every ``n`` frames with ``n`` the smallest that fits the frame
    budget (90% of the frame interval divided by the speed), and at most half of
    ``lost_after`` apart. Files skip frames when they fall behind; live sources never skip
    here (their reader drops).
    """

    def __init__(self, fps: float | None, options: WatchOptions, live: bool) -> None:
        self.fixed = options.detect_every
        # never let detections drift further apart than half a track's memory: tracks would
        # be lost between them (a live source drops frames instead; a file skips them)
        self.longest = max(1, math.floor((fps or 25.0) * options.lost_after / 2))
        self.longest_s = options.lost_after / 2  # the same in the video's seconds: frames
        self.last_detection = -math.inf  # a live source dropped do not count above
        speed = 1.0 if live else options.speed
        self.budget = 0.9 / ((fps or 25.0) * speed) if speed > 0 else math.inf
        self.live = live
        self.detect_cost: float | None = None
        self.track_cost = 0.0
        self.since_detection = math.inf
        self.lag = 0.0  # seconds behind the target pace (files)

    @property
    def every(self) -> int:
        if self.fixed is not None:
            return self.fixed
        if self.detect_cost is None or math.isinf(self.budget):
            return 1
        spare = self.budget - self.track_cost
        if spare <= 0:
            return self.longest
        return min(max(1, math.ceil((self.detect_cost - self.track_cost) / spare)), self.longest)

    def detect_now(self, at: float) -> bool:
        """Whether to detect on the frame of time ``at`` (and remember it if so)."""
        due = self.since_detection >= self.every or at - self.last_detection >= self.longest_s
        if due:
            self.last_detection = at
        return due

    def skip_now(self) -> bool:
        return not self.live and not math.isinf(self.budget) and self.lag > 4 * self.budget

    def record(self, seconds: float, detected: bool) -> None:
        if detected:
            self.detect_cost = seconds if self.detect_cost is None else 0.8 * self.detect_cost + 0.2 * seconds
            self.since_detection = 1
        else:
            self.track_cost = 0.9 * self.track_cost + 0.1 * seconds
            self.since_detection += 1
        if not math.isinf(self.budget):
            self.lag = max(self.lag + seconds - self.budget, 0.0)

    def skipped(self) -> None:
        self.lag = max(self.lag - self.budget, 0.0)
        self.since_detection += 1


class Watch:
    """An iterator of :class:`VideoEvent` over one source; :attr:`summary` is complete once
    it is exhausted (or closed). Use :func:`watch` to make one."""

    def __init__(
        self,
        source: VideoSource,
        gallery: Gallery | None,
        options: WatchOptions,
        *,
        on_frame: Callable[[VideoFrame, list[tuple[Track, tuple[float, float, float, float]]]], None]
        | None = None,
        on_end: Callable[[Track], str | None] | None = None,
    ) -> None:
        from faceverify.photos import FaceOptions

        self.source = source
        self.gallery = gallery
        self.options = options
        self.faces = FaceOptions(
            detect=True,
            detector=options.detector,
            upsample=options.upsample,
            max_side=options.max_side,
            min_size=options.min_size,
        )
        self.threshold = _threshold(gallery, options.threshold)
        self.summary = WatchSummary(source=source.name)
        self._on_frame, self._on_end = on_frame, on_end
        self._tracks: dict[int, Track] = {}  # by the tracker's id; a Track has its own
        self._next_id = 0
        band = options.margin * (1.0 - self.threshold.value)
        self._same_face = self.threshold.value - band  # below it, a track's new face is someone else
        self._tracker = FaceTracker(
            source.fps or 25.0, lost_after=options.lost_after, min_hits=options.min_hits
        )
        self._pace = Pace(source.fps, options, source.live)
        self._events = self._run()

    def __iter__(self) -> Iterator[VideoEvent]:
        return self

    def __next__(self) -> VideoEvent:
        return next(self._events)

    def stop(self) -> None:
        """End the watch at the next frame, as if the video had ended: the tracks still end
        with their events (what Ctrl-C on a camera should do; safe from a signal handler)."""
        self.source.stop()

    def close(self) -> None:
        """Stop reading now (events not yet taken are lost; the summary stays)."""
        self._events.close()
        self.source.close()

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the loop -----------------------------------------------------------------------

    def _run(self) -> Generator[VideoEvent, None, None]:
        from faceverify.errors import VideoError

        started = time.perf_counter()
        last_time, error = 0.0, None
        try:
            for frame in self.source:
                last_time = frame.time
                if self._pace.skip_now():
                    self._pace.skipped()
                    self.summary.frames_skipped += 1
                    continue
                tick = time.perf_counter()
                detected = self._pace.detect_now(frame.time)
                if detected:
                    yield from self._detect(frame)
                if self._on_frame is not None:
                    horizon = self._pace.every / (self.source.fps or 25.0)
                    self._on_frame(frame, [(t, t.box_at(frame.time, horizon)) for t in self._tracks.values()])
                self.summary.frames_processed += 1
                self._pace.record(time.perf_counter() - tick, detected)
                self._update_counts(started, last_time)
        except VideoError as exc:  # the tracks so far still end, then the caller hears why
            error = exc
            self.summary.error = str(exc)
        for key in list(self._tracks):
            yield self._end(key, last_time)
        self._update_counts(started, last_time)
        if error is not None:
            raise error

    def _detect(self, frame: VideoFrame) -> Iterator[VideoEvent]:
        from faceverify.faces.quality import detector_confidence, face_quality
        from faceverify.photos import find_faces

        pixels = frame.pixels()
        faces = find_faces(pixels, self.faces)
        self.summary.detections += 1
        confidences = [detector_confidence(f.detector, f.score) for f in faces]
        followed = self._tracker.update(faces, confidences, frame.time)
        wanted: list[tuple[int, Face, Any]] = []
        crowded = _crowded([f.box for f in faces])
        for index, key in followed.items():
            face = faces[index]
            track = self._tracks.get(key) or self._new_track(key, frame)
            quality = face_quality(pixels, face)
            score = quality.score
            if _at_edge(face, pixels.shape):
                score = 0.0  # never a shot: its chip would be partly black
            elif index in crowded:
                # faces crossing: the tracker may swap them, and one hides part of the other;
                # no shot, and whose face it is gets checked once they are apart
                score, track.checked = 0.0, -math.inf
            good = score >= self.options.min_quality
            if self.gallery is not None and (
                track.wants(score, self.options.min_quality)
                or (good and frame.time - track.checked >= self.options.recheck)
            ):
                wanted.append((key, face, quality))  # seen once we know whose face it is
                continue
            track.seen(frame.time, frame.index, face, score, pixels)
            if self.gallery is None and good and not track.announced:
                track.answer = Answer(Status.UNKNOWN)  # nobody to compare with: a stranger
                track.announced = True
                yield VideoEvent("appeared", frame.time, track_record(track, self.threshold))
        if wanted:
            yield from self._identify(frame, pixels, wanted)
        alive = self._tracker.alive()
        for key in [k for k in self._tracks if k not in alive]:
            yield self._end(key, frame.time)

    def _new_track(self, key: int, frame: VideoFrame) -> Track:
        track = self._tracks[key] = self._make_track(frame)
        return track

    def _make_track(self, frame: VideoFrame) -> Track:
        """A new track starting at ``frame`` (numbered and counted, not yet followed)."""
        self._next_id += 1
        self.summary.tracks += 1
        return Track(self._next_id, frame.time, frame.time, frame.index, frame.index, keep=self.options.keep)

    def _identify(
        self, frame: VideoFrame, pixels: np.ndarray, wanted: list[tuple[int, Face, Any]]
    ) -> Iterator[VideoEvent]:
        assert self.gallery is not None
        vectors = _embed(self.gallery, pixels, [face for _, face, _ in wanted])
        for (key, face, quality), vector in zip(wanted, vectors):
            track = self._continuity(key, vector, frame)
            if track is None:
                continue  # held out: one odd face does not split a track
            if track.id != self._tracks[key].id:
                yield self._end(key, frame.time)  # a newcomer carried on an old track
                self._tracks[key] = track
            track.seen(frame.time, frame.index, face, quality.score, pixels)
            track.checked = frame.time
            if not track.wants(quality.score, self.options.min_quality):
                continue  # a check of who it is, not a better shot
            track.add(Shot(frame.time, frame.index, face, quality, vector))
            found = self.gallery.store.search(track.probe(), 2, self.gallery.match)
            answer = decide(
                track.answer, [(m.name, m.score) for m in found], self.threshold.value, self.options.margin
            )
            changed = (answer.status, answer.name) != (track.answer.status, track.answer.name)
            track.answer = answer
            if not track.announced:
                track.announced = True
                yield VideoEvent("appeared", frame.time, track_record(track, self.threshold))
            elif changed:
                yield VideoEvent("changed", frame.time, track_record(track, self.threshold))

    def _continuity(self, key: int, vector: np.ndarray, frame: VideoFrame) -> Track | None:
        """The track this face belongs to, checked against the track the tracker gave it.

        A face unlike its track's best shots is first compared with the other live tracks:
        a match means the tracker swapped two people (they crossed) and the tracks are
        swapped back. Otherwise the face is held out once; unlike again at the next
        detection, it is someone new (the tracker carried a fading track over to a newcomer)
        and gets a new track (returned unregistered; the caller ends the old one).
        """
        track = self._tracks[key]
        if not track.shots or float(vector @ track.probe()) >= self._same_face:
            track.doubted = False
            return track
        others = [(float(vector @ t.probe()), k) for k, t in self._tracks.items() if k != key and t.shots]
        score, other = max(others, default=(-1.0, -1))
        if score >= self._same_face:
            self._tracks[key], self._tracks[other] = self._tracks[other], track
            self._tracks[other].checked = -math.inf  # check the other face at once too
            self._tracks[key].doubted = False
            return self._tracks[key]
        if not track.doubted:
            track.doubted, track.checked = True, -math.inf
            return None
        return self._make_track(frame)

    def _end(self, key: int, at: float) -> VideoEvent:
        track = self._tracks.pop(key)
        status = track.answer.status
        if status is Status.KNOWN and track.answer.name is not None:
            self.summary.known += 1
            if track.answer.name not in self.summary.people:
                self.summary.people.append(track.answer.name)
        elif status is Status.UNKNOWN:
            self.summary.unknown += 1
        else:
            self.summary.unidentified += 1
        snapshot = self._on_end(track) if self._on_end is not None else None
        return VideoEvent("ended", at, track_record(track, self.threshold), snapshot)

    def _update_counts(self, started: float, last_time: float) -> None:
        stats = self.source.stats
        self.summary.frames_read = stats.read
        self.summary.frames_dropped = stats.dropped
        self.summary.frames_corrupt = stats.corrupt
        self.summary.reconnects = stats.reconnects
        self.summary.video_seconds = last_time
        self.summary.wall_seconds = time.perf_counter() - started


def _crowded(boxes: list[tuple[float, float, float, float]], grow: float = 0.1) -> set[int]:
    """The indices of boxes that touch another box grown by ``grow`` of its size."""
    touching: set[int] = set()
    for i, a in enumerate(boxes):
        for j in range(i + 1, len(boxes)):
            b = boxes[j]
            pad_x, pad_y = grow * (b[2] - b[0]), grow * (b[3] - b[1])
            if (
                a[0] <= b[2] + pad_x
                and b[0] - pad_x <= a[2]
                and a[1] <= b[3] + pad_y
                and b[1] - pad_y <= a[3]
            ):
                touching.update((i, j))
    return touching


def _at_edge(face: Face, shape: tuple[int, ...]) -> bool:
    left, top, right, bottom = face.box
    return left <= 0 or top <= 0 or right >= shape[1] - 1 or bottom >= shape[0] - 1


def _threshold(gallery: Gallery | None, given: float | None) -> Threshold:
    from faceverify.runtime.threshold import Threshold, ThresholdSource, resolve_threshold

    if gallery is None:
        return Threshold(
            given if given is not None else 0.5,
            ThresholdSource.GIVEN if given is not None else ThresholdSource.DEFAULT,
        )
    return resolve_threshold(given, gallery.model)


def _embed(gallery: Gallery, pixels: np.ndarray, faces: list[Face]) -> np.ndarray:
    """Unit embeddings of faces of one frame, in one batch, through the gallery's model."""
    from PIL import Image

    from faceverify.embed import compute_embedding
    from faceverify.faces import align_faces
    from faceverify.photos import face_template

    model = gallery.model
    chips = align_faces(pixels, faces, face_template(model))
    batch = np.stack([model.prepare(Image.fromarray(chip)) for chip in chips])
    return compute_embedding(model, batch, normalize=True)


def watch(
    source: str | int | os.PathLike[str] | VideoSource,
    gallery: Gallery | None = None,
    *,
    options: WatchOptions | None = None,
    on_frame: Callable[[VideoFrame, list[tuple[Track, tuple[float, float, float, float]]]], None]
    | None = None,
    on_end: Callable[[Track], str | None] | None = None,
    **source_options: Any,
) -> Watch:
    """Watch a video file, camera or stream; iterate the result for events.

    Args:
        source: a file, ``/dev/videoN`` (or N), an ``rtsp://``/``http://``/``udp://``...
            URL, or an open :class:`VideoSource`.
        gallery: who can be named (:func:`faceverify.open_gallery`); None only tracks
            (every judged face is then ``unknown``).
        options: :class:`WatchOptions`.
        on_frame: called for every processed frame with the live tracks' boxes (drawing).
        on_end: called when a track ends; may return a path (its snapshot) for the event.
        source_options: passed to :class:`VideoSource` (``live``, ``retries``...).

    Example::

        with fv.open_gallery("people.db") as gallery:
            for event in fv.watch("door.mp4", gallery):
                print(event.to_dict())
    """
    opened = source if isinstance(source, VideoSource) else open_video(source, **source_options)
    return Watch(opened, gallery, options or WatchOptions(), on_frame=on_frame, on_end=on_end)
