"""Faces followed across frames, and one identity per track decided from its best shots.

Association is ByteTrack (Roboflow's ``trackers`` package: Kalman-predicted boxes matched
to detections by IoU, confident detections first, then weak ones), fed with frame times so
that detecting on every Nth frame only lengthens its prediction step. Between detections a
track's box is extrapolated from its last two detections (:meth:`Track.box_at`).

Identity, per track (:class:`Track`):

* a face is a **shot** when its quality (:func:`faceverify.faces.face_quality`) reaches the
  gate; a track keeps its ``keep`` best shots and their embeddings;
* the track's probe is the quality-weighted mean of those embeddings (a sharp frontal shot
  counts more than a passable one), searched in the gallery each time the set improves;
* the answer changes with **hysteresis**: a name is taken at the threshold when it also
  leads the next person by ``margin`` (a blurred face drifts towards several people at
  once; a genuine match stands out), left only when the score falls ``margin`` below it,
  and another name replaces it only when it beats the current one by ``margin``.
  ``margin`` is a share (default 0.1) of the distance from the threshold to a perfect
  match, so it means the same for dlib's 0.91 and an ArcFace 0.3;
* a track that never gets a shot good enough is ``unidentified``, never a guess.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from faceverify.errors import Choice
from faceverify.faces.detect import Face
from faceverify.faces.quality import FaceQuality

Box = tuple[float, float, float, float]


class Status(Choice):
    """What a track's answer is."""

    KNOWN = "known"  # an enrolled person, at or above the threshold
    UNKNOWN = "unknown"  # good shots, nobody enrolled matches: a stranger
    UNIDENTIFIED = "unidentified"  # no shot good enough to judge


@dataclass(frozen=True)
class Shot:
    """One good face of a track: when, where, how good, its embedding and a crop to show."""

    time: float
    frame: int
    face: Face
    quality: FaceQuality
    vector: np.ndarray


@dataclass(frozen=True)
class Answer:
    """A track's identity: who (None unless known), how sure, against which threshold."""

    status: Status
    name: str | None = None
    score: float | None = None


@dataclass
class Track:
    """One face followed through the video.

    Attributes:
        id: its number, unique within one watch (1 first).
        start, end: seconds of its first and latest detection.
        detections: how many detections were associated with it.
        shots: its best shots, best first (at most ``keep``).
        answer: the current identity; ``announced`` once it has been reported.
        best_quality: the best quality any of its faces reached (passing the gate or not).
    """

    id: int
    start: float
    end: float
    first_frame: int
    last_frame: int
    keep: int = 3
    detections: int = 0
    shots: list[Shot] = field(default_factory=list)
    answer: Answer = field(default_factory=lambda: Answer(Status.UNIDENTIFIED))
    announced: bool = False
    best_quality: float = 0.0
    best_face: Face | None = None
    best_crop: np.ndarray | None = field(default=None, repr=False)
    checked: float = -math.inf  # when its face was last embedded
    doubted: bool = False  # its last embedded face was unlike its best shots
    _last: list[tuple[float, Box]] = field(default_factory=list, repr=False)

    def seen(self, time: float, frame: int, face: Face, quality: float, pixels: np.ndarray) -> None:
        """Record a detection of this track's face (``pixels``: the frame it was found in;
        a crop around the face is kept while it is the track's best)."""
        self.end, self.last_frame = time, frame
        self.detections += 1
        self._last = [*self._last[-1:], (time, face.box)]
        better = (quality, face.width * face.height) > (
            self.best_quality,
            self.best_face.width * self.best_face.height if self.best_face is not None else -1.0,
        )
        if better:  # equal quality (it saturates at 1): the larger face
            self.best_quality, self.best_face = quality, face
            self.best_crop = face_crop(pixels, face.box)

    def wants(self, quality: float, minimum: float) -> bool:
        """Whether a face of this quality would join the best shots (then embed it)."""
        if quality < minimum:
            return False
        return len(self.shots) < self.keep or quality > self.shots[-1].quality.score + 0.02

    def add(self, shot: Shot) -> None:
        self.shots = sorted([*self.shots, shot], key=lambda s: s.quality.score, reverse=True)[: self.keep]

    def probe(self) -> np.ndarray:
        """The quality-weighted mean of the best shots' unit vectors, normalised."""
        weights = np.array([s.quality.score for s in self.shots], dtype=np.float32)
        mean = (weights[:, None] * np.stack([s.vector for s in self.shots])).sum(axis=0)
        return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)

    @property
    def best(self) -> Shot | None:
        return self.shots[0] if self.shots else None

    def box_at(self, time: float, horizon: float) -> Box:
        """Its box at ``time``: the last detection moved on at the speed between the last
        two detections, for at most ``horizon`` seconds (then it stays put)."""
        last_time, last = self._last[-1]
        if len(self._last) < 2:
            return last
        prev_time, prev = self._last[0]
        span = last_time - prev_time
        if span <= 0:
            return last
        ahead = min(max(time - last_time, 0.0), horizon) / span
        return tuple(b + (b - a) * ahead for a, b in zip(prev, last))  # type: ignore[return-value]


def face_crop(
    pixels: np.ndarray, box: Sequence[float], margin: float = 0.4, *, below: float = 1.0
) -> np.ndarray:
    """A copy of the face with ``margin`` box sizes around it, ``below`` times that under
    it (shoulders), clipped to the picture: a track's snapshot, a scene's cut-out."""
    left, top, right, bottom = (float(v) for v in box)
    pad_x, pad_y = margin * (right - left), margin * (bottom - top)
    height, width = pixels.shape[:2]
    x0, y0 = max(int(left - pad_x), 0), max(int(top - pad_y), 0)
    x1, y1 = min(int(right + pad_x) + 1, width), min(int(bottom + pad_y * below) + 1, height)
    return np.array(pixels[y0:y1, x0:x1])


def decide(current: Answer, matches: list[tuple[str, float]], threshold: float, margin: float) -> Answer:
    """The track's next answer from the gallery's best matches for its probe, best first
    (hysteresis: see the module docstring). No matches (an empty gallery): unknown."""
    if not matches:
        return Answer(Status.UNKNOWN)
    band = margin * (1.0 - threshold)
    name, score = matches[0]
    # a name is taken only when it also leads the next person by the band: a face blurred
    # or seen badly drifts towards several people at once, a genuine match stands out
    distinct = len(matches) < 2 or score - matches[1][1] >= band
    if current.status is not Status.KNOWN:
        if score >= threshold and distinct:
            return Answer(Status.KNOWN, name, score)
        return Answer(Status.UNKNOWN, None, score)
    mine = next((s for n, s in matches if n == current.name), None)
    if name == current.name:
        kept = score >= threshold - band
        return Answer(Status.KNOWN, name, score) if kept else Answer(Status.UNKNOWN, None, score)
    if score >= threshold and (mine is None or score >= mine + band):
        return Answer(Status.KNOWN, name, score)  # another person, clearly better
    if mine is not None and mine >= threshold - band:
        return Answer(Status.KNOWN, current.name, mine)  # still within the band: keep
    return Answer(Status.UNKNOWN, None, score)


class FaceTracker:
    """ByteTrack over faces; :meth:`update` gives the track id of each face it confirmed.

    Args:
        fps: the source's frame rate (ByteTrack's reference for its motion model).
        lost_after: seconds a track survives without a detection (faces hidden briefly, or
            missed by the detector, keep their track).
        min_hits: detections in a row before a track gets an id (1 in a still photo is noise).
    """

    def __init__(self, fps: float, *, lost_after: float = 1.0, min_hits: int = 2) -> None:
        from trackers import ByteTrackTracker, GIoU

        self._tracker = ByteTrackTracker(
            # generalised IoU is negative for boxes apart, and less so the closer they are: a
            # face that moved up to ~3 widths between two detections (a walker, detection
            # every few frames) is still matched to its track, where plain IoU is 0
            iou=GIoU(),
            lost_track_buffer=max(round(lost_after * 30), 1),  # in 30 fps frames, by its convention
            frame_rate=fps,
            track_activation_threshold=0.5,
            minimum_consecutive_frames=min_hits,
            minimum_iou_threshold=-0.5,
            high_conf_det_threshold=0.5,
        )

    def update(self, faces: list[Face], confidences: list[float], time: float) -> dict[int, int]:
        """``{face index: track id}`` for the faces found at ``time`` that belong to a
        confirmed track (faces of tracks still being confirmed are left out)."""
        import supervision as sv

        if faces:
            detections = sv.Detections(
                xyxy=np.array([f.box for f in faces], dtype=np.float32),
                confidence=np.array(confidences, dtype=np.float32),
                data={"face": np.arange(len(faces))},
            )
        else:
            detections = sv.Detections.empty()
            detections.data = {"face": np.zeros(0, dtype=int)}
        tracked = self._tracker.update(detections, timestamp=time)
        ids: dict[int, int] = {}
        track_ids: Any = tracked.tracker_id if tracked.tracker_id is not None else []
        for face, track_id in zip(tracked.data.get("face", []), track_ids):
            if int(track_id) >= 0:
                ids[int(face)] = int(track_id)
        return ids

    def alive(self) -> set[int]:
        """The ids of the confirmed tracks ByteTrack still follows (lost ones included
        until ``lost_after`` has passed)."""
        return {int(t.tracker_id) for t in self._tracker.tracks if int(t.tracker_id) >= 0}


def track_record(track: Track, threshold: Any) -> dict[str, Any]:
    """The JSON fields every event about ``track`` carries."""
    best = track.best
    shown = best.face if best is not None else track.best_face
    return {
        "track": track.id,
        "start": round(track.start, 3),
        "end": round(track.end, 3),
        "status": track.answer.status.value,
        "name": track.answer.name,
        "score": None if track.answer.score is None else round(float(track.answer.score), 4),
        **threshold.to_fields(),
        "box": None if shown is None else shown.to_dict()["box"],
        "quality": round(best.quality.score if best is not None else track.best_quality, 4),
        "shots": len(track.shots),
        "detections": track.detections,
    }
