"""Faces in video: 720p read live, 1080p files at twice real time, identity switches.

Clips are synthetic (:mod:`faceverify.video.scenes`): people of
``../shared/photos-dev/people`` walk across a textured backdrop in two lanes (one left to
right, one right to left; people follow one another in a lane, so faces never overlap),
each entering and leaving the frame in ``--cross`` seconds (4-6; 3-4 in ``switches``). The
walkers' cut-outs are 0.5 of the frame's height (faces about 150 px wide at 720p, LFW's
60 px faces enlarged). The cast, seeded (:func:`cast`): ``--known`` people are enrolled with
up to 3 photos and walk with another one, ``--distractors`` more are enrolled and never
walk, ``--strangers`` walk and are not enrolled. A walker's own photo must show one face
and be answered right *on its own* with room to spare (its owner at least the hysteresis
band, 0.009, above the threshold; a stranger's best match that much below it), so that a
wrong name in video is the video's doing; the people left out are printed (most strangers
of photos-dev come within 0.009 of someone among 50 people with dlib's network). Model:
dlib's network (``dlib_resnet_v1``) and its threshold (0.91); :class:`WatchOptions`'s
defaults unless a section says otherwise. Ground truth: where each walker's face is at
each moment, from its :class:`Walker` and the sprite's size exactly as ``render`` draws
it; a face (a detection, or a track's box on a frame where it was detected) belongs to the
walker whose true face centre lies within half a face width of its centre. A track
belongs to the walker most of its detections belong to; tracks belonging to no walker are
"stray". Names: an enrolled walker's pass is named right when its tracks end with its name
and no other; a stranger's pass is named when any of its tracks ends with a name. Sections
(``--sections``):

* ``live``: a 1280x720, 25 fps clip (motion blur 0.5) of ``--live-seconds`` (45), encoded
  to MPEG-TS beforehand (H.264 ``veryfast``, a key frame every 2 s), is pushed packet by
  packet at its own pace by a separate process to ``udp://127.0.0.1`` (``--transport
  tcp``: over TCP) and watched with ``watch(url, gallery, live=True)``. Rates are taken
  over the steady part (from 2 s after the stream opened to 3 s before its last frame: the
  reader hands over at once the frames it probed when opening, and the last ones after its
  2 s read timeout): frames read per second (the reader's own clock; goal at least 15),
  processed per second (wall clock), the share of frames read that the reader dropped
  because the watcher was busy (in all, and in the steady part: opening a stream hands over
  about a second of frames at once, most of them dropped), detections per second and
  frames processed per detection (the adaptive interval), and whether every frame read was
  processed (detected or tracked) or counted dropped. Frame ``i`` read is frame ``i`` sent
  (none corrupt), which places it in the clip. ``--load N`` runs N processes that keep a
  core busy meanwhile.
* ``recorded``: a 1920x1080, 30 fps H.264 mp4 (blur 0.5) of ``--recorded-seconds`` (25)
  watched with ``WatchOptions(speed=2)`` (adaptive detection, frames skipped when behind;
  ``--speeds`` for others): speed (video seconds / wall seconds; goal at least 2), frames
  skipped, detections, tracks and names.
* ``switches``: a 1280x720, 25 fps mp4 with motion blur ``--blur`` (0.75: the shutter open
  three quarters of the frame interval) of ``--switch-seconds`` (20), read four ways with
  the same model, gallery and threshold: (i) ``watch`` at its defaults (real time,
  adaptive), (ii) ``watch`` on every frame (``speed=0, detect_every=1``), (iii) every frame
  on its own: each face found (the same detector options) embedded and answered by the
  gallery's top match at the threshold (``unknown`` below it), no memory between frames;
  (iv) the same with ``watch``'s gate (faces under ``MIN_QUALITY`` or cut by the frame's
  edge give no answer). A pass's answers in time order (``watch``: what its tracks
  announced, ``appeared`` and ``changed``; per frame: the answer on each frame its face was
  found, ``unknown`` an answer like a name) give its identity switches (changes of answer);
  ``watch`` also counts ``changed`` events per track. Wrong names: for ``watch`` the tracks
  that ever announced a wrong name (another enrolled person, or anyone for a stranger); per
  frame, the share of answers naming the wrong person. Goals: fewer switches than per-frame
  identification, one track per pass, no wrong name.

Each section prints a table; ``--json`` writes every figure, with each pass's tracks and
answers. About 4 minutes at the defaults on 2 cores, a third of it making the clips. The
machine's other work shows in the live and recorded figures (``--load`` shows how): note
the load average printed at the start. Figures and what they mean: docs/benchmarks.md,
"Video".

Run:
    python benchmarks/video.py [--sections live,recorded,switches] [--seconds N]
        [--transport udp|tcp] [--load N] [--speeds 2] [--known 8] [--strangers 4]
        [--distractors 40] [--cross 4 6] [--switch-cross 3 4] [--blur 0.75] [--seed 0]
        [--json FILE]
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import multiprocessing
import os
import socket
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

DEV = Path(__file__).resolve().parents[2] / "shared" / "photos-dev" / "people"
LANES = ((0.30, 1), (0.72, -1))  # (centre height, direction): faces of the two lanes never overlap
SPRITE_HEIGHT = 0.5
STEADY = (2.0, 3.0)  # seconds left out of live rates after the stream opened / before it ended
PORTRAIT_MARGIN = 0.9  # scenes.portrait's default


# -- the cast and the scene --------------------------------------------------------------


@dataclass
class Person:
    """Someone who walks (or is only enrolled): enrolment photos, and the cut-out shown."""

    name: str
    enrol: list[Path]
    known: bool
    walk: Path | None = None  # the photo the cut-out comes from
    sprite: np.ndarray | None = None
    face: tuple[float, float, float, float] | None = None  # the face's box in the sprite


def cut_out(path: Path) -> tuple[np.ndarray, tuple[float, float, float, float]] | None:
    """The photo's face as a walker's cut-out (:func:`portrait`) and the face's box in it; None
    unless the photo shows exactly one face."""
    from faceverify.photos import FaceOptions, find_faces
    from faceverify.video.scenes import portrait

    pixels = np.asarray(Image.open(path).convert("RGB"))
    faces = find_faces(pixels, FaceOptions(detect=True))
    if len(faces) != 1:
        return None  # nobody, or someone beside the person: the ground truth knows one face
    cx, cy = pixels.shape[1] / 2, pixels.shape[0] / 2
    face = min(
        faces, key=lambda f: ((f.box[0] + f.box[2]) / 2 - cx) ** 2 + ((f.box[1] + f.box[3]) / 2 - cy) ** 2
    )
    left, top, right, bottom = face.box
    x0 = max(int(left - PORTRAIT_MARGIN * (right - left)), 0)  # portrait()'s own crop
    y0 = max(int(top - PORTRAIT_MARGIN * (bottom - top)), 0)
    return portrait(pixels, face.box), (left - x0, top - y0, right - x0, bottom - y0)


def candidates(
    known: int, strangers: int, distractors: int, seed: int
) -> tuple[list[Person], list[Person], list[Person]]:
    """A seeded choice from photos-dev: people to enrol who walk (with a photo not enrolled),
    strangers who walk, and people enrolled who never walk."""
    rng = np.random.default_rng(seed)
    folders = sorted(p for p in DEV.iterdir() if p.is_dir())
    rng.shuffle(folders)
    walking: list[Person] = []
    others: list[Person] = []
    for folder in folders:
        photos = sorted(folder.glob("*.jpg"))
        want_known = sum(p.known for p in walking) < known and len(photos) >= 3
        want_stranger = sum(not p.known for p in walking) < strangers
        if want_known or want_stranger:
            made = cut_out(photos[-1])
            if made is not None:
                enrol = photos[:-1][:3] if want_known else []
                walking.append(Person(folder.name, enrol, want_known, photos[-1], *made))
        elif len(others) < distractors:
            others.append(Person(folder.name, photos[:3], True))
        if len(walking) == known + strangers and len(others) == distractors:
            break
    return [p for p in walking if p.known], [p for p in walking if not p.known], others


def cast(
    folder: Path, model: Any, known: int, strangers: int, distractors: int, seed: int
) -> tuple[Any, list[Person], dict[str, Any]]:
    """The gallery and the walkers: ``known`` enrolled people and ``strangers`` whose walking
    photo, on its own, the gallery answers right and clearly (its owner at least ``band`` above
    the threshold; a stranger's best match at least ``band`` below it, ``band`` being watch's
    hysteresis margin), so that a wrong name in video is the video's doing, not a tie at the
    threshold that a still photo would get wrong as often. Up to 4 more enrolled people and 5
    times as many strangers are tried (most strangers of photos-dev come within the band of
    someone among 50 people); enrolled ones left out stay enrolled (more distractors)."""
    import faceverify as fv
    from faceverify.photos import FaceOptions
    from faceverify.video.watch import WatchOptions

    enrolled, outsiders, others = candidates(known + 4, 5 * strangers, distractors, seed)
    # a few photos show someone beside the person: take the largest face, usually theirs
    gallery = fv.open_gallery(folder, model=model, faces=FaceOptions(several="largest"))
    for person in [*enrolled, *others]:
        gallery.enroll(person.name, [str(p) for p in person.enrol])
    threshold = gallery.model.threshold.value
    band = WatchOptions().margin * (1 - threshold)
    walkers: list[Person] = []
    left_out: dict[str, Any] = {}
    for person in [*enrolled, *outsiders]:
        top = gallery.identify(str(person.walk), top_k=1)
        answer = top.name or "unknown"
        score = top.matches[0].score if top.matches else -1.0
        if person.known:
            right = answer == person.name and score >= threshold + band
        else:
            right = score < threshold - band
        room = sum(p.known == person.known for p in walkers) < (known if person.known else strangers)
        if right and room:
            walkers.append(person)
        elif not right:
            left_out[person.name] = (
                f"{'enrolled' if person.known else 'stranger'}: {top.matches[0].name} {score:.3f}"
            )
    report = {
        "enrolled": len(enrolled) + len(others),
        "walking_enrolled": sum(p.known for p in walkers),
        "walking_strangers": sum(not p.known for p in walkers),
        "band": round(band, 4),
        "left_out": left_out,
    }
    return gallery, walkers, report


@dataclass
class Walk:
    """One pass of one person across the scene."""

    person: Person
    walker: Any  # faceverify.video.scenes.Walker
    lane: int


def choreography(
    people: Sequence[Person],
    duration: float,
    size: tuple[int, int],
    seed: int,
    cross: tuple[float, float] = (4.0, 6.0),
) -> list[Walk]:
    """People one after another in each lane, each crossing in ``cross`` seconds (uniform), each
    pass whole within ``duration``."""
    from faceverify.video.scenes import Walker

    rng = np.random.default_rng(seed)
    order = list(people)
    rng.shuffle(order)
    walks: list[Walk] = []
    clocks = [0.3, 0.3 + sum(cross) / 4]  # the lanes start out of step
    turn = 0
    while True:
        lane = int(np.argmin(clocks))
        crossing = float(rng.uniform(*cross))
        start = clocks[lane]
        if start + crossing > duration - 0.2:
            break
        person = order[turn % len(order)]
        turn += 1
        sprite_h = SPRITE_HEIGHT * size[1]
        half = person.sprite.shape[1] * sprite_h / person.sprite.shape[0] / size[0] / 2 + 0.01
        y, direction = LANES[lane]
        y += float(rng.uniform(-0.02, 0.02))
        xs = (-half, 1 + half) if direction > 0 else (1 + half, -half)
        walks.append(
            Walk(
                person,
                Walker(person.sprite, start, start + crossing, (xs[0], y), (xs[1], y), SPRITE_HEIGHT),
                lane,
            )
        )
        clocks[lane] = start + crossing + float(rng.uniform(0.3, 1.2))
    return walks


def face_at(walk: Walk, t: float, size: tuple[int, int]) -> tuple[float, float, float] | None:
    """The walker's true face centre and width in the frame at ``t`` (None when off stage),
    placed exactly as ``render`` pastes the sprite."""
    centre = walk.walker.centre(t)
    if centre is None:
        return None
    sprite = walk.person.sprite
    height = max(int(walk.walker.height * size[1]), 8)
    width = max(int(sprite.shape[1] * height / sprite.shape[0]), 1)
    x = int(centre[0] * size[0] - width / 2)
    y = int(centre[1] * size[1] - height / 2)
    scale = height / sprite.shape[0]
    left, top, right, bottom = walk.person.face
    return x + scale * (left + right) / 2, y + scale * (top + bottom) / 2, scale * (right - left)


def owner(walks: Sequence[Walk], box: Sequence[float], t: float, size: tuple[int, int]) -> int | None:
    """The index of the walk whose face is at ``box`` at ``t``, or None."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    best, where = None, None
    for index, walk in enumerate(walks):
        face = face_at(walk, t, size)
        if face is None:
            continue
        distance = float(np.hypot(face[0] - cx, face[1] - cy))
        if distance <= face[2] / 2 and (best is None or distance < best):
            best, where = distance, index
    return where


def write_scene(
    path: Path,
    walks: Sequence[Walk],
    size: tuple[int, int],
    fps: float,
    duration: float,
    blur: float,
    seed: int,
) -> float:
    """Render and encode the clip (a key frame every 2 s); seconds it took."""
    from faceverify.video.scenes import render, write_clip

    started = time.perf_counter()
    frames = render(
        [w.walker for w in walks], size=size, fps=fps, duration=duration, motion_blur=blur, seed=seed
    )
    write_clip(path, frames, fps=fps, options={"g": str(int(2 * fps))})
    return time.perf_counter() - started


# -- scoring watch's answers ---------------------------------------------------------------


class Recorder:
    """What a watch did to each track (on_frame: which walk each detected box belongs to)
    and the events it yielded."""

    def __init__(self, walks: Sequence[Walk], size: tuple[int, int], clock: Any) -> None:
        self.walks, self.size, self.clock = walks, size, clock
        self.votes: dict[int, Counter[int | None]] = defaultdict(Counter)
        self.events: dict[int, list[tuple[str, float, str | None, str]]] = defaultdict(list)
        self.marks: list[tuple[float, int, int, float, int]] = []
        self.watch: Any = None

    def on_frame(self, frame: Any, tracks: list[tuple[Any, tuple[float, float, float, float]]]) -> None:
        # (wall clock, frames processed so far, frame index, frame time: for a live source the
        # moment the reader decoded it, so index / time between two frames is the reading rate)
        summary = self.watch.summary
        self.marks.append(
            (time.perf_counter(), summary.frames_processed + 1, frame.index, frame.time, summary.detections)
        )
        t = self.clock(frame)
        for track, box in tracks:
            if track.last_frame == frame.index:  # detected on this frame, not extrapolated
                self.votes[track.id][owner(self.walks, box, t, self.size)] += 1

    def event(self, event: Any) -> None:
        record = event.record
        self.events[record["track"]].append((event.kind, event.time, record["name"], record["status"]))

    def score(self) -> dict[str, Any]:
        """Tracks per pass, names right and wrong, answer changes (see the docstring)."""
        belongs = {tid: votes.most_common(1)[0][0] for tid, votes in self.votes.items()}
        for tid in self.events:  # tracks never seen in on_frame (none expected)
            belongs.setdefault(tid, None)
        per_walk: dict[int, list[int]] = defaultdict(list)
        for tid, where in belongs.items():
            if where is not None:
                per_walk[where].append(tid)
        wrong_any = wrong_final = right_final = changed = 0
        switches: list[int] = []
        passes: list[dict[str, Any]] = []
        known_passes = named_right = stranger_passes = stranger_named = 0
        for index, walk in enumerate(self.walks):
            tids = sorted(per_walk.get(index, []))
            answers: list[tuple[float, str]] = []
            final_names = []
            for tid in tids:
                events = self.events.get(tid, [])
                changed += sum(kind == "changed" for kind, *_ in events)
                names = [name for _, _, name, status in events if status == "known"]
                bad = [n for n in names if not walk.person.known or n != walk.person.name]
                wrong_any += bool(bad)
                ended = [e for e in events if e[0] == "ended"]
                final = ended[-1][2] if ended else None
                final_names.append(final)
                wrong_final += final is not None and (not walk.person.known or final != walk.person.name)
                right_final += walk.person.known and final == walk.person.name
                answers += [
                    (t, name or status) for kind, t, name, status in events if kind in ("appeared", "changed")
                ]
                if ended and not any(kind == "appeared" for kind, *_ in events):
                    answers.append((ended[-1][1], ended[-1][3]))  # announced only when it ended
            answers.sort()
            switches.append(sum(a[1] != b[1] for a, b in itertools.pairwise(answers)))
            passes.append(
                {
                    "person": walk.person.name,
                    "enrolled": walk.person.known,
                    "start": round(walk.walker.start, 2),
                    "end": round(walk.walker.end, 2),
                    "lane": walk.lane,
                    "tracks": tids,
                    "answers": [a for _, a in answers],
                    "final": final_names,
                }
            )
            if walk.person.known:
                known_passes += 1
                named_right += walk.person.name in final_names and all(
                    n in (None, walk.person.name) for n in final_names
                )
            else:
                stranger_passes += 1
                stranger_named += any(n is not None for n in final_names)
        counts = [len(per_walk.get(i, [])) for i in range(len(self.walks))]
        tracked = sum(counts)
        return {
            "passes": len(self.walks),
            "passes_missed": sum(c == 0 for c in counts),
            "passes_one_track": sum(c == 1 for c in counts),
            "tracks_per_pass": round(tracked / max(len(self.walks), 1), 3),
            "tracks": len(belongs),
            "stray_tracks": sum(w is None for w in belongs.values()),
            "known_passes": known_passes,
            "known_named_right": named_right,
            "stranger_passes": stranger_passes,
            "strangers_named": stranger_named,
            "tracks_wrong_name_ever": wrong_any,
            "tracks_wrong_name_final": wrong_final,
            "tracks_right_name_final": right_final,
            "changed_events": changed,
            "changed_per_track": round(changed / max(tracked, 1), 3),
            "switches_per_pass": round(float(np.mean(switches)) if switches else 0.0, 3),
            "switches_max": max(switches, default=0),
            "per_pass": passes,
            "stray": {
                tid: [e[0] + ":" + str(e[2] or e[3]) for e in self.events.get(tid, [])]
                for tid, w in belongs.items()
                if w is None
            },
        }


def run_watch(
    source: Any, gallery: Any, options: Any, recorder: Recorder, **source_options: Any
) -> tuple[Any, str | None]:
    """Watch to the end; the summary and the error that ended it (live sources end with one)."""
    from faceverify.errors import VideoError
    from faceverify.video.watch import watch  # (faceverify.video.watch is shadowed by its module)

    w = watch(source, gallery, options=options, on_frame=recorder.on_frame, **source_options)
    recorder.watch = w
    error = None
    try:
        for event in w:
            recorder.event(event)
    except VideoError as exc:
        error = str(exc)
    return w.summary, error


# -- sections -----------------------------------------------------------------------------


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def push(path: str, url: str, delay: float, loops: int | None = 1, paced: bool = True) -> None:
    """Send the packets of an MPEG-TS file to ``url`` at the pace of their times (a camera;
    ``paced=False``: as fast as the connection takes them), ``loops`` times over (None: until
    killed), the times running on from one loop to the next."""
    import av

    with av.open(path) as source:
        stream = source.streams.video[0]
        packets = [
            (bytes(p), p.pts, p.dts, p.is_keyframe)
            for p in source.demux(stream)
            if p.dts is not None and p.size
        ]
        base = stream.time_base
        step = round(1 / (float(stream.average_rate or 25) * base))  # one frame, in time-base units
        span = packets[-1][2] - packets[0][2] + step
        time.sleep(delay)
        with av.open(url, "w", format="mpegts") as out:
            sent = out.add_stream_from_template(stream)
            start, first, loop = time.monotonic(), packets[0][2], 0
            while loops is None or loop < loops:
                for data, pts, dts, key in packets:
                    wait = start + float((dts - first + loop * span) * base) - time.monotonic()
                    if wait > 0 and paced:
                        time.sleep(wait)
                    packet = av.Packet(data)
                    packet.pts, packet.dts = pts + loop * span, dts + loop * span
                    packet.time_base, packet.is_keyframe, packet.stream = base, key, sent
                    out.mux(packet)
                loop += 1


def burn() -> None:
    """A process that keeps one core busy (``--load``)."""
    while True:
        pass


def live_section(ctx: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    from faceverify.video.watch import WatchOptions

    size, fps = (1280, 720), 25.0
    seconds = args.seconds or args.live_seconds
    walks = choreography(ctx["walkers"], seconds, size, args.seed, tuple(args.cross))
    clip = ctx["work"] / "live720.ts"
    made = write_scene(clip, walks, size, fps, seconds, 0.5, args.seed)
    print(
        f"\nlive: {len(walks)} passes, {seconds:g} s of 720p at {fps:g} fps encoded in {made:.0f} s; "
        f"sent over {args.transport}" + (f"; {args.load} busy processes beside" if args.load else ""),
        flush=True,
    )
    if args.transport == "udp":
        port = free_port(socket.SOCK_DGRAM)
        send_url = f"udp://127.0.0.1:{port}?pkt_size=1316"
        read_url = f"udp://127.0.0.1:{port}?overrun_nonfatal=1&fifo_size=100000"
        delay = 1.5  # the reader binds its port first
    else:
        port = free_port(socket.SOCK_STREAM)
        send_url = f"tcp://127.0.0.1:{port}?listen=1"
        read_url = f"tcp://127.0.0.1:{port}"
        delay = 0.0
    spawn = multiprocessing.get_context("spawn")
    sender = spawn.Process(target=push, args=(str(clip), send_url, delay), daemon=True)
    sender.start()
    burners = [spawn.Process(target=burn, daemon=True) for _ in range(args.load)]  # other work on the machine
    for burner in burners:
        burner.start()
    if args.transport == "tcp":
        time.sleep(1.5)  # the sender listens first
    recorder = Recorder(walks, size, lambda frame: frame.index / fps)
    summary, error = run_watch(
        read_url, ctx["gallery"], WatchOptions(), recorder, live=True, retries=0, read_timeout=2.0
    )
    sender.join(timeout=10)
    for burner in burners:
        burner.terminate()
        burner.join()
    # the steady part: the reader delivers the frames it probed at once when it opens, and
    # the last few after the stream's read timeout
    end = recorder.marks[-1][3]
    steady = [m for m in recorder.marks if STEADY[0] <= m[3] <= end - STEADY[1]] or recorder.marks
    (t0, done0, index0, read_at0, found0), (t1, done1, index1, read_at1, found1) = steady[0], steady[-1]
    span = max(t1 - t0, 1e-9)
    s = summary
    result = {
        "transport": args.transport,
        "load": args.load,
        "stream_fps": fps,
        "stream_seconds": seconds,
        "window_seconds": round(span, 2),
        "read_fps": round((index1 - index0) / max(read_at1 - read_at0, 1e-9), 2),
        "processed_fps": round((done1 - done0) / span, 2),
        "dropped_share": round(s.frames_dropped / max(s.frames_read, 1), 4),
        # frames decoded in the steady part that were not processed: dropped there
        "dropped_share_steady": round(1 - (done1 - done0) / max(index1 - index0, 1), 4),
        "detections_per_s": round((found1 - found0) / span, 2),
        "frames_per_detection": round((done1 - done0) / max(found1 - found0, 1), 2),
        "every_frame_accounted": s.frames_processed + s.frames_dropped == s.frames_read,
        "summary": s.to_dict(),
        "ended_with": error,
        **recorder.score(),
    }
    print(
        table(
            [
                "read fps",
                "processed fps",
                "dropped (steady)",
                "detections/s",
                "frames/detection",
                "frames read",
                "corrupt",
            ],
            [
                [
                    result["read_fps"],
                    result["processed_fps"],
                    f"{result['dropped_share']:.1%} ({result['dropped_share_steady']:.1%})",
                    result["detections_per_s"],
                    result["frames_per_detection"],
                    s.frames_read,
                    s.frames_corrupt,
                ]
            ],
        )
    )
    print(names_line(result), flush=True)
    return result


def recorded_section(ctx: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    from faceverify.video.watch import WatchOptions

    size, fps = (1920, 1080), 30.0
    seconds = args.seconds or args.recorded_seconds
    walks = choreography(ctx["walkers"], seconds, size, args.seed + 1, tuple(args.cross))
    clip = ctx["work"] / "recorded1080.mp4"
    made = write_scene(clip, walks, size, fps, seconds, 0.5, args.seed + 1)
    print(
        f"\nrecorded: {len(walks)} passes, {seconds:g} s of 1080p at {fps:g} fps encoded in {made:.0f} s",
        flush=True,
    )
    rows, results = [], {}
    for speed in args.speeds:
        recorder = Recorder(walks, size, lambda frame: frame.time)
        summary, error = run_watch(str(clip), ctx["gallery"], WatchOptions(speed=speed), recorder)
        s = summary.to_dict()
        results[f"speed_{speed:g}"] = {"summary": s, "error": error, **recorder.score()}
        r = results[f"speed_{speed:g}"]
        rows.append(
            [
                f"{speed:g}",
                s["speed"],
                s["frames_read"],
                s["frames_skipped"],
                s["detections"],
                round(s["frames_processed"] / max(s["detections"], 1), 2),
                r["tracks"],
                r["tracks_per_pass"],
                f"{r['known_named_right']}/{r['known_passes']}",
                r["tracks_wrong_name_ever"],
            ]
        )
    print(
        table(
            [
                "speed asked",
                "speed",
                "read",
                "skipped",
                "detections",
                "frames/det",
                "tracks",
                "tracks/pass",
                "known named",
                "wrong names",
            ],
            rows,
        )
    )
    for key, r in results.items():
        print(f"  {key}: {names_line(r)}")
    return {"passes": len(walks), "seconds": seconds, "fps": fps, **results}


def per_frame(
    clip: Path, walks: Sequence[Walk], size: tuple[int, int], gallery: Any, options: Any
) -> dict[str, Any]:
    """Every frame on its own: each face embedded and answered by the top match (see the docstring)."""
    from faceverify.embed import compute_embedding
    from faceverify.faces import align_faces
    from faceverify.faces.quality import face_quality
    from faceverify.photos import FaceOptions, face_template, find_faces
    from faceverify.runtime.threshold import resolve_threshold
    from faceverify.video import open_video

    model = gallery.model
    threshold = resolve_threshold(options.threshold, model).value
    finding = FaceOptions(
        detect=True,
        detector=options.detector,
        upsample=options.upsample,
        max_side=options.max_side,
        min_size=options.min_size,
    )
    answers: dict[str, dict[int, list[str]]] = {"all": defaultdict(list), "gated": defaultdict(list)}
    frames = faces_seen = strays = 0
    started = time.perf_counter()
    with open_video(clip) as video:
        for frame in video:
            frames += 1
            pixels = frame.pixels()
            faces = find_faces(pixels, finding)
            if not faces:
                continue
            chips = align_faces(pixels, faces, face_template(model))
            vectors = compute_embedding(
                model, np.stack([model.prepare(Image.fromarray(c)) for c in chips]), normalize=True
            )
            for face, vector in zip(faces, vectors):
                where = owner(walks, face.box, frame.time, size)
                if where is None:
                    strays += 1
                    continue
                faces_seen += 1
                top = gallery.store.search(vector, 1, gallery.match)
                answer = top[0].name if top and top[0].score >= threshold else "unknown"
                answers["all"][where].append(answer)
                left, upper, right, lower = face.box
                inside = left > 0 and upper > 0 and right < size[0] - 1 and lower < size[1] - 1
                if inside and face_quality(pixels, face).score >= options.min_quality:
                    answers["gated"][where].append(answer)
    out: dict[str, Any] = {
        "frames": frames,
        "faces": faces_seen,
        "stray_faces": strays,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    for key, per_walk in answers.items():
        switches, wrong, right, total, passes_wrong = [], 0, 0, 0, 0
        for index, walk in enumerate(walks):
            seq = per_walk.get(index, [])
            switches.append(sum(a != b for a, b in itertools.pairwise(seq)))
            bad = [a for a in seq if a != "unknown" and (not walk.person.known or a != walk.person.name)]
            wrong += len(bad)
            passes_wrong += bool(bad)
            right += (
                sum(a == walk.person.name for a in seq)
                if walk.person.known
                else sum(a == "unknown" for a in seq)
            )
            total += len(seq)
        out[key] = {
            "answers": total,
            "switches_per_pass": round(float(np.mean(switches)), 3),
            "switches_max": max(switches, default=0),
            "wrong_answer_share": round(wrong / max(total, 1), 4),
            "right_answer_share": round(right / max(total, 1), 4),
            "passes_with_a_wrong_name": passes_wrong,
            "per_pass": [
                {
                    "person": w.person.name,
                    "enrolled": w.person.known,
                    "answers": dict(Counter(per_walk.get(i, []))),
                    "switches": n,
                }
                for i, (w, n) in enumerate(zip(walks, switches))
            ],
        }
    return out


def switches_section(ctx: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    from faceverify.video.watch import WatchOptions

    size, fps = (1280, 720), 25.0
    seconds = args.seconds or args.switch_seconds
    walks = choreography(ctx["walkers"], seconds, size, args.seed + 2, tuple(args.switch_cross))
    clip = ctx["work"] / "blurred720.mp4"
    made = write_scene(clip, walks, size, fps, seconds, args.blur, args.seed + 2)
    print(
        f"\nswitches: {len(walks)} passes ({sum(w.person.known for w in walks)} enrolled people), "
        f"{seconds:g} s of 720p at {fps:g} fps, motion blur {args.blur:g}, encoded in {made:.0f} s",
        flush=True,
    )
    results: dict[str, Any] = {"passes": len(walks), "seconds": seconds, "blur": args.blur}
    rows = []
    for key, options in (
        ("watch", WatchOptions()),
        ("watch_every_frame", WatchOptions(speed=0, detect_every=1)),
    ):
        recorder = Recorder(walks, size, lambda frame: frame.time)
        summary, error = run_watch(str(clip), ctx["gallery"], options, recorder)
        r = results[key] = {"summary": summary.to_dict(), "error": error, **recorder.score()}
        rows.append(
            [
                key,
                r["switches_per_pass"],
                r["switches_max"],
                r["changed_per_track"],
                r["tracks_per_pass"],
                f"{r['passes_one_track']}/{r['passes']}",
                r["stray_tracks"],
                f"{r['tracks_wrong_name_ever']} of {r['tracks'] - r['stray_tracks']} tracks",
                f"{r['known_named_right']}/{r['known_passes']}",
            ]
        )
        print(f"  {key}: {summary.to_dict()['wall_seconds']:.0f} s", flush=True)
    frame_results = per_frame(clip, walks, size, ctx["gallery"], WatchOptions())
    results["per_frame"] = frame_results
    for key in ("all", "gated"):
        r = frame_results[key]
        rows.append(
            [
                f"per frame ({key})",
                r["switches_per_pass"],
                r["switches_max"],
                "-",
                "-",
                "-",
                "-",
                f"{r['wrong_answer_share']:.1%} of {r['answers']} answers",
                f"{r['right_answer_share']:.1%} right",
            ]
        )
    print(f"  per frame: {frame_results['wall_seconds']:.0f} s", flush=True)
    print(
        table(
            [
                "answer",
                "switches/pass",
                "max",
                "changed/track",
                "tracks/pass",
                "one track",
                "stray",
                "wrong names",
                "named right",
            ],
            rows,
        )
    )
    return results


# -- output ----------------------------------------------------------------------------------


def names_line(r: dict[str, Any]) -> str:
    return (
        f"  passes {r['passes']} (missed {r['passes_missed']}), tracks {r['tracks']} "
        f"({r['stray_tracks']} stray), one track per pass {r['passes_one_track']}/{r['passes']}; "
        f"enrolled named right {r['known_named_right']}/{r['known_passes']}, "
        f"strangers named {r['strangers_named']}/{r['stranger_passes']}, "
        f"tracks with a wrong name {r['tracks_wrong_name_ever']}, changed events {r['changed_events']}"
    )


def table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [list(map(str, head)), *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    lines = ["  " + "  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  " + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


SECTIONS = {"live": live_section, "recorded": recorded_section, "switches": switches_section}


def setup(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import faceverify as fv

    model = fv.build_model("dlib_resnet_v1")
    gallery, walkers, report = cast(
        work / "gallery", model, args.known, args.strangers, args.distractors, args.seed
    )
    print(
        f"gallery: {report['enrolled']} people enrolled, {report['walking_enrolled']} of them walk, and "
        f"{report['walking_strangers']} strangers; threshold {gallery.model.threshold.value:.3f}; "
        f"left out, their walking photo alone not answered right by {report['band']:.4f}: "
        f"{report['left_out'] or 'none'}",
        flush=True,
    )
    return {"model": model, "gallery": gallery, "walkers": walkers, "work": work, "cast": report}


def main() -> None:
    logging.getLogger("faceverify.photos").setLevel(
        logging.ERROR
    )  # enrolment's "2 faces found; using the largest"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help="comma-separated: " + ", ".join(SECTIONS)
    )
    parser.add_argument("--seconds", type=float, help="length of every clip (default: each section's own)")
    parser.add_argument("--live-seconds", type=float, default=45.0)
    parser.add_argument("--recorded-seconds", type=float, default=25.0)
    parser.add_argument("--switch-seconds", type=float, default=20.0)
    parser.add_argument("--transport", choices=("udp", "tcp"), default="udp")
    parser.add_argument(
        "--load", type=int, default=0, help="processes keeping a core busy during the live section"
    )
    parser.add_argument(
        "--speeds", type=float, nargs="+", default=[2.0], help="speeds of the recorded section"
    )
    parser.add_argument("--known", type=int, default=8, help="enrolled people who walk")
    parser.add_argument("--strangers", type=int, default=4, help="people who walk, not enrolled")
    parser.add_argument("--distractors", type=int, default=40, help="enrolled people who never walk")
    parser.add_argument(
        "--cross",
        type=float,
        nargs=2,
        default=[4.0, 6.0],
        metavar=("LOW", "HIGH"),
        help="seconds a walker takes to cross the frame (live, recorded)",
    )
    parser.add_argument(
        "--switch-cross",
        type=float,
        nargs=2,
        default=[3.0, 4.0],
        metavar=("LOW", "HIGH"),
        help="the same for the switches section",
    )
    parser.add_argument("--blur", type=float, default=0.75, help="motion blur of the switches clip")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    chosen = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    if not DEV.is_dir():
        parser.error(f"{DEV} is not there (the clips are made from its photos)")
    print(
        f"load average at the start: {os.getloadavg()} on {os.cpu_count()} cores; {time.ctime()}", flush=True
    )
    with tempfile.TemporaryDirectory(prefix="fv-video-") as tmp:
        ctx = setup(args, Path(tmp))
        try:
            results = {"cast": ctx["cast"], **{name: SECTIONS[name](ctx, args) for name in chosen}}
        finally:
            ctx["gallery"].close()
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
