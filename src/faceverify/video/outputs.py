"""What a watch leaves behind: JSON-lines events, an annotated video, one snapshot per
track, and strangers' best shots kept for later naming.

Events and pictures of faces are personal data: every file here is written owner-only
(0600) in owner-only folders (0700). Strangers' shots (:class:`StrangerFolder`) are
biometric data of people who never agreed to anything: they expire after a retention
period (30 days unless chosen), are removed the way galleries remove erased faces (the
files are unlinked; keep the folder on an encrypted volume where a face must never survive
its erasure on disk), and can be erased at once (:meth:`StrangerFolder.erase`).
"""

from __future__ import annotations

import io
import json
import os
import time
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import numpy as np

from faceverify.errors import ConfigError
from faceverify.paths import open_private, private_dir, write_private
from faceverify.video.source import VideoFrame
from faceverify.video.tracks import Status, Track

#: Strangers' shots older than this many days are erased when a watch starts (and hourly).
RETENTION_DAYS = 30.0


def label_of(track: Track) -> str:
    """What a track is called in pictures: its name, ``unknown`` or ``unidentified``."""
    return (
        track.answer.name
        if track.answer.status is Status.KNOWN and track.answer.name
        else track.answer.status.value
    )


def jpeg_bytes(pixels: np.ndarray, quality: int = 90) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


class EventLog:
    """Events as JSON lines, flushed one by one (a ``tail -f`` sees each as it happens);
    ``-`` writes to standard output."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._own = str(path) != "-"
        if self._own:
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            self._stream: IO[bytes] = open_private(target)
        else:
            import sys

            self._stream = sys.stdout.buffer

    def write(self, record: dict[str, Any]) -> None:
        self._stream.write(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")
        self._stream.flush()

    def close(self) -> None:
        if self._own:
            self._stream.close()


class AnnotatedVideo:
    """An H.264 copy of the processed frames with each track boxed and labelled (green: a
    name, red: unknown, blue: not identified yet or unidentified). Frames skipped to keep
    pace are left out, so it plays faster than the source where frames were skipped."""

    def __init__(self, path: str | os.PathLike[str], fps: float | None) -> None:
        import av

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(fd)  # owner-only from the start; FFmpeg then writes into it
        self._container = av.open(str(self.path), mode="w")
        self._stream = self._container.add_stream(
            "libx264", rate=Fraction(fps or 25.0).limit_denominator(1001)
        )
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"preset": "veryfast", "crf": "23"}
        self._open = False

    def __call__(
        self, frame: VideoFrame, boxes: list[tuple[Track, tuple[float, float, float, float]]]
    ) -> None:
        import av

        from faceverify.faces.draw import draw_boxes, label_colour

        labels = [label_of(track) for track, _ in boxes]
        image = draw_boxes(
            frame.pixels(), [box for _, box in boxes], labels, [label_colour(label) for label in labels]
        )
        if not self._open:
            self._stream.width, self._stream.height = image.width // 2 * 2, image.height // 2 * 2
            self._open = True
        pixels = np.asarray(image)[: self._stream.height, : self._stream.width]
        packet = self._stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24"))
        self._container.mux(packet)

    def close(self) -> None:
        if self._open:
            self._container.mux(self._stream.encode(None))
        self._container.close()


class Snapshots:
    """One best-shot JPEG per track: ``track-000012-obama.jpg`` (or ``-unknown``)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = private_dir(Path(folder))

    def __call__(self, track: Track) -> str | None:
        if track.best_crop is None:
            return None
        path = self.folder / f"track-{track.id:06d}-{_safe(label_of(track))}.jpg"
        write_private(path, jpeg_bytes(track.best_crop))
        return str(path)


class StrangerFolder:
    """Strangers' best shots (tracks that ended ``unknown``), kept ``retention_days`` for
    someone to name them (``faceverify enroll NAME FILE``), each with a JSON sidecar (when
    and where it was seen, its quality).

    Args:
        folder: created 0700; shots are written 0600.
        retention_days: shots older than this are erased when the folder is opened and
            then at most hourly while a watch runs.
    """

    def __init__(self, folder: str | os.PathLike[str], *, retention_days: float = RETENTION_DAYS) -> None:
        if retention_days <= 0:
            raise ConfigError(f"retention of {retention_days!r} days must be positive")
        self.folder = private_dir(Path(folder))
        self.retention = retention_days * 86400.0
        self._expired_at = 0.0
        self.expired = self.expire()

    def add(self, track: Track, source: str) -> str | None:
        """Keep a stranger's best shot; None for a track that is not a stranger's."""
        if track.answer.status is not Status.UNKNOWN or track.best_crop is None:
            return None
        if time.time() - self._expired_at > 3600:
            self.expire()
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        stem = self.folder / f"stranger-{stamp}-track{track.id:06d}"
        write_private(stem.with_suffix(".jpg"), jpeg_bytes(track.best_crop))
        best = track.best
        meta = {
            "source": source,
            "track": track.id,
            "start": round(track.start, 3),
            "end": round(track.end, 3),
            "quality": round(best.quality.score, 4) if best is not None else None,
            "saved": stamp,
        }
        write_private(stem.with_suffix(".json"), json.dumps(meta, indent=1))
        return str(stem.with_suffix(".jpg"))

    def shots(self) -> list[Path]:
        return sorted(self.folder.glob("stranger-*.jpg"))

    def expire(self, now: float | None = None) -> int:
        """Erase shots older than the retention period; how many were erased."""
        now = time.time() if now is None else now
        self._expired_at = now
        old = [p for p in self.shots() if now - p.stat().st_mtime > self.retention]
        for path in old:
            self._remove(path)
        return len(old)

    def erase(self, shots: list[str] | None = None) -> int:
        """Erase the named shots (file names or paths in this folder), or all of them."""
        chosen = self.shots() if shots is None else [self._inside(name) for name in shots]
        for path in chosen:
            self._remove(path)
        return len(chosen)

    def _inside(self, name: str) -> Path:
        path = self.folder / Path(name).name
        if not path.name.startswith("stranger-") or path.suffix != ".jpg" or not path.is_file():
            raise ConfigError(f"{name!r} is not a stranger's shot in {self.folder}; list them with `ls`")
        return path

    @staticmethod
    def _remove(path: Path) -> None:
        path.unlink(missing_ok=True)
        path.with_suffix(".json").unlink(missing_ok=True)


def _safe(label: str) -> str:
    kept = "".join(c if c.isalnum() or c in "-_" else "_" for c in label)
    return kept[:60] or "face"
