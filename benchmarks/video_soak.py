"""Soak: an endless live stream watched for an hour; does the process's memory stay flat?

The source: a 1280x720, 25 fps clip of ``--clip-seconds`` (people of
``../shared/photos-dev/people`` walking past, made as in ``benchmarks/video.py``: 8
enrolled people and 4 strangers walk, 44 more people are enrolled; motion blur 0.5),
encoded once to MPEG-TS, then (``--source``):

* ``udp`` (default): sent by a separate process to ``udp://127.0.0.1`` at its own pace,
  over and over with its times running on (``benchmarks/video.py``'s ``push``): an endless
  720p camera stream, watched with ``watch(url, gallery)`` (live);
* ``file``: the clip itself read with ``live=True``, which plays a file at its own rate and
  reopens it when it ends, as it would a broken stream (a reconnection every loop);
* ``fast``: sent over TCP as fast as the connection takes it, never paced: the reader
  decodes frames as fast as it can and drops those the watcher has no time for. Frames
  are produced as fast as they can be, but the faces jump between the frames the watcher
  takes, so few tracks form (the paced sources exercise tracks beginning and ending).

Default :class:`~faceverify.video.WatchOptions`, dlib's network (``dlib_resnet_v1``).

The resident memory of the process (``VmRSS`` in ``/proc/self/status``) is sampled every
``--every`` seconds (60) by a thread, with the watch's counts; after ``--minutes`` (60) the
source is closed, the watch ends, and a last sample is taken. Growth is measured from the
first sample after the warm-up (the first 5 minutes, or the first 10% of shorter runs) to
the last one, with the largest sample and a least-squares slope (MB per hour) over the
samples after the warm-up. Goal: growth under 5%.

Run:
    python benchmarks/video_soak.py [--minutes 60] [--every 60] [--source udp|file|fast]
        [--clip-seconds 30] [--seed 0] [--json FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import logging
import multiprocessing
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np


def sibling(name: str) -> Any:
    """``benchmarks/<name>.py`` as a module (the scene and gallery helpers of video.py)."""
    path = Path(__file__).with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def send_forever(clip: str, url: str, delay: float, paced: bool) -> None:
    """The sender process: the clip over and over (paced: at its own rate)."""
    with contextlib.suppress(OSError):  # the reader hung up: the soak is over
        sibling("video").push(clip, url, delay, None, paced)


def memory() -> dict[str, float]:
    """``VmRSS`` and ``VmHWM`` of this process, in MB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024  # kB
    return fields


class Sampler(threading.Thread):
    """Samples memory and the watch's counts every ``every`` seconds; closes the source at
    ``seconds`` so that the watch ends."""

    def __init__(self, watch: Any, every: float, seconds: float, counts: dict[str, int]) -> None:
        super().__init__(name="soak-sampler", daemon=True)
        self.watch, self.every, self.seconds, self.counts = watch, every, seconds, counts
        self.samples: list[dict[str, Any]] = []
        self.started = time.monotonic()
        self.done = threading.Event()

    def sample(self) -> dict[str, Any]:
        s = self.watch.summary
        row = {
            "seconds": round(time.monotonic() - self.started, 1),
            **{k: round(v, 1) for k, v in memory().items()},
            "read": self.watch.source.stats.read,
            "processed": s.frames_processed,
            "dropped": self.watch.source.stats.dropped,
            "detections": s.detections,
            "tracks": s.tracks,
            "live_tracks": len(getattr(self.watch, "_tracks", {})),
            "events": self.counts["events"],
            "reconnects": self.watch.source.stats.reconnects,
            "threads": threading.active_count(),
        }
        self.samples.append(row)
        print(line(row), flush=True)
        return row

    def run(self) -> None:
        self.sample()
        while not self.done.wait(min(self.every, max(self.started + self.seconds - time.monotonic(), 0.0))):
            if time.monotonic() - self.started >= self.seconds - 1e-3:
                break
            self.sample()
        self.watch.source.close()  # the watch ends its tracks and stops


COLUMNS = (
    "seconds",
    "VmRSS",
    "VmHWM",
    "read",
    "processed",
    "dropped",
    "detections",
    "tracks",
    "live_tracks",
    "events",
    "reconnects",
    "threads",
)
WIDTHS = (8, 8, 8, 9, 9, 9, 10, 7, 11, 7, 10, 7)


def line(row: dict[str, Any]) -> str:
    return "  " + "  ".join(str(row.get(c, "")).rjust(w) for c, w in zip(COLUMNS, WIDTHS))


def growth(samples: list[dict[str, Any]], warm: float) -> dict[str, Any]:
    after = [s for s in samples if s["seconds"] >= warm]
    if len(after) < 2:
        return {"warm_up_seconds": warm, "growth": None}
    base, last = after[0]["VmRSS"], after[-1]["VmRSS"]
    t = np.array([s["seconds"] for s in after]) / 3600
    rss = np.array([s["VmRSS"] for s in after])
    slope = float(np.polyfit(t, rss, 1)[0]) if len(after) >= 3 else (last - base) / max(t[-1] - t[0], 1e-9)
    return {
        "warm_up_seconds": warm,
        "baseline_mb": base,
        "baseline_at_s": after[0]["seconds"],
        "final_mb": last,
        "max_mb": float(rss.max()),
        "growth": round((last - base) / base, 4),
        "max_growth": round((float(rss.max()) - base) / base, 4),
        "slope_mb_per_hour": round(slope, 1),
        "goal_met": (last - base) / base < 0.05,
    }


def main() -> None:
    logging.getLogger("faceverify.photos").setLevel(logging.ERROR)  # enrolment's "2 faces found"
    logging.getLogger("faceverify.video.source").setLevel(logging.ERROR)  # a reopening per loop
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--every", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--source", choices=("udp", "file", "fast"), default="udp", help="see the docstring")
    parser.add_argument("--clip-seconds", type=float, default=30.0, help="length of the looped clip")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the samples and figures here")
    args = parser.parse_args()
    video = sibling("video")
    if not video.DEV.is_dir():
        parser.error(f"{video.DEV} is not there (the clip is made from its photos)")

    import faceverify as fv
    from faceverify.errors import VideoError
    from faceverify.video.watch import WatchOptions, watch

    print(
        f"load average at the start: {os.getloadavg()} on {os.cpu_count()} cores; {time.ctime()}", flush=True
    )
    seconds = args.minutes * 60
    warm = min(300.0, 0.1 * seconds)
    with tempfile.TemporaryDirectory(prefix="fv-soak-") as tmp:
        work = Path(tmp)
        model = fv.build_model("dlib_resnet_v1")
        gallery, walkers, cast = video.cast(work / "gallery", model, 8, 4, 40, args.seed)
        size = (1280, 720)
        walks = video.choreography(walkers, args.clip_seconds, size, args.seed)
        clip = work / "soak720.ts"
        made = video.write_scene(clip, walks, size, 25.0, args.clip_seconds, 0.5, args.seed)
        sender = None
        if args.source == "file":
            url = str(clip)
        else:
            if args.source == "udp":
                port = video.free_port(socket.SOCK_DGRAM)
                url = f"udp://127.0.0.1:{port}?overrun_nonfatal=1&fifo_size=100000"
                target = (str(clip), f"udp://127.0.0.1:{port}?pkt_size=1316", 1.5, True)
            else:
                port = video.free_port(socket.SOCK_STREAM)
                url = f"tcp://127.0.0.1:{port}"
                target = (str(clip), f"tcp://127.0.0.1:{port}?listen=1", 0.0, False)
            sender = multiprocessing.get_context("spawn").Process(
                target=send_forever, args=target, daemon=True
            )
            sender.start()
            if args.source == "fast":
                time.sleep(1.5)  # the sender listens first
        with gallery:
            print(
                f"source: {args.source}; clip: {args.clip_seconds:g} s of 720p, {len(walks)} passes, "
                f"encoded in {made:.0f} s; gallery of {cast['enrolled']} people; {args.minutes:g} min, "
                f"a sample every {args.every:g} s, warm-up {warm:g} s",
                flush=True,
            )
            print(line({c: c for c in COLUMNS}), flush=True)
            counts = {"events": 0}
            w = watch(url, gallery, options=WatchOptions(), live=True)
            sampler = Sampler(w, args.every, seconds, counts)
            sampler.start()
            error = None
            try:
                for _ in w:
                    counts["events"] += 1
            except VideoError as exc:  # closing the source during a reopening ends it so
                error = str(exc)
            sampler.done.set()
            sampler.join()
            sampler.sample()
            if sender is not None:
                sender.terminate()
                sender.join(timeout=5)
    summary = w.summary.to_dict()
    result = {
        "source": args.source,
        "minutes": args.minutes,
        "every": args.every,
        "clip_seconds": args.clip_seconds,
        "samples": sampler.samples,
        "summary": summary,
        "ended_with": error,
        **growth(sampler.samples, warm),
    }
    g = result
    if g["growth"] is None:
        print("too few samples after the warm-up to measure growth")
    else:
        print(
            f"RSS after the warm-up ({g['baseline_at_s']:g} s) {g['baseline_mb']:.0f} MB, "
            f"at the end {g['final_mb']:.0f} MB: growth {g['growth']:+.1%} (largest {g['max_growth']:+.1%}, "
            f"slope {g['slope_mb_per_hour']:+.1f} MB/h); goal < 5%: {'met' if g['goal_met'] else 'NOT met'}"
        )
    print(
        f"frames read {summary['frames_read']}, processed {summary['frames_processed']} "
        f"({summary['fps']} fps), dropped {summary['frames_dropped']}, tracks {summary['tracks']}, "
        f"reconnects {summary['reconnects']}, events {counts['events']}"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
