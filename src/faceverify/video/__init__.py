"""Faces in video: files, webcams and network streams, tracked and identified per track.

Needs the ``video`` extra (``pip install "faceverify[video]"``: PyAV for FFmpeg, Roboflow's
``trackers`` for ByteTrack). Importing this package loads neither.

* :mod:`~faceverify.video.source`: one reader for files, cameras and streams (bounded
  queue, dropped and corrupt frames counted, reconnection with back-off);
* :mod:`~faceverify.video.tracks`: ByteTrack over faces, best shots, identity with hysteresis;
* :mod:`~faceverify.video.watch`: the loop (:func:`faceverify.watch`), its events and summary;
* :mod:`~faceverify.video.outputs`: JSON-lines events, annotated video, snapshots, strangers;
* :mod:`~faceverify.video.scenes`: synthetic clips made from photos (tests, benchmarks).

May import: ``faces``, ``photos``, ``embed``, ``gallery`` (its search) and what they may.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "Watch": "faceverify.video.watch",
    "WatchOptions": "faceverify.video.watch",
    "WatchSummary": "faceverify.video.watch",
    "VideoEvent": "faceverify.video.watch",
    "open_video": "faceverify.video.source",
    "VideoSource": "faceverify.video.source",
    "VideoFrame": "faceverify.video.source",
}

__all__ = [
    "VideoEvent",
    "VideoFrame",
    "VideoSource",
    "Watch",
    "WatchOptions",
    "WatchSummary",
    "open_video",
]

if TYPE_CHECKING:
    from faceverify.video.source import VideoFrame, VideoSource, open_video
    from faceverify.video.watch import VideoEvent, Watch, WatchOptions, WatchSummary


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'faceverify.video' has no attribute '{name}'")
