"""``faceverify watch``: faces in a video file, webcam or stream, one answer per person
passing; ``faceverify strangers``: the strangers' shots a watch kept."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceverify.cli.common import (
    EXIT_ERROR,
    EXIT_OK,
    add_detector_arguments,
    add_model_arguments,
    build_from_args,
    cli_actor,
    default_to_gallery_model,
    positive_int,
    print_error,
)
from faceverify.errors import ConfigError, VideoError

if TYPE_CHECKING:
    from faceverify.gallery.gallery import Gallery
    from faceverify.video.watch import Watch, WatchSummary

log = logging.getLogger("faceverify.cli")


def register(sub: Any, common: argparse.ArgumentParser, model_opts: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "watch",
        parents=[common],
        help="faces in a video, webcam or stream: tracked, and named once per person (JSON-lines events)",
        description="Events go to stdout as JSON lines (or to --events); a summary ends on stderr. "
        "Ctrl-C stops a live source cleanly.",
    )
    add_model_arguments(p)
    add_detector_arguments(p.add_argument_group("faces in frames"), video=True)
    p.add_argument(
        "source", metavar="SOURCE", help="a video file, /dev/videoN (or N), or an rtsp/http/udp/tcp URL"
    )
    p.add_argument("--db", help="gallery of the people to name (default: ~/.local/share/faceverify/gallery)")
    p.add_argument("--no-gallery", action="store_true", help="track and judge faces only; name nobody")
    p.add_argument(
        "--events", metavar="FILE", help="write the events here (JSON lines, 0600) instead of stdout"
    )
    p.add_argument("--out", metavar="VIDEO", help="write an annotated copy (H.264: boxes, names, unknown)")
    p.add_argument("--snapshots", metavar="DIR", help="one best-shot JPEG per track")
    p.add_argument(
        "--enroll-unknown",
        metavar="DIR",
        help="keep strangers' best shots here (0700) for naming later with `faceverify enroll`",
    )
    p.add_argument(
        "--keep-days", type=float, default=30.0, help="strangers' shots are erased after this many days (30)"
    )
    p.add_argument("--summary", metavar="FILE", help="also write the summary as JSON here")
    pace = p.add_argument_group("pace and judgement")
    pace.add_argument(
        "--detect-every",
        type=positive_int,
        help="detect faces on every Nth frame (default: as often as the CPU allows)",
    )
    pace.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="files: keep this multiple of real time, skipping frames if needed (1); 0 processes every frame",
    )
    pace.add_argument(
        "--min-quality", type=float, default=None, help="faces below this quality never identify (0.75)"
    )
    pace.add_argument("--threshold", type=float, help="cosine threshold (default: the model's)")
    pace.add_argument(
        "--lost-after", type=float, default=1.0, help="seconds a face may vanish and keep its track (1)"
    )
    src = p.add_argument_group("source")
    src.add_argument(
        "--live",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="treat as live (drop frames, reconnect) or not; default: cameras and streams are live",
    )
    src.add_argument(
        "--retries", type=int, default=5, help="reconnection attempts in a row for live sources (5)"
    )
    src.add_argument("--input-format", help="FFmpeg input format, e.g. v4l2, avfoundation, dshow, mjpeg")
    src.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="FFmpeg input option, e.g. rtsp_transport=udp or video_size=1280x720 (repeatable)",
    )
    p.set_defaults(handler=watch_command)

    p = sub.add_parser(
        "strangers", parents=[common], help="the strangers' shots `watch --enroll-unknown` kept"
    )
    p.add_argument(
        "action", choices=("list", "erase", "expire"), help="list them, erase them, or erase expired ones"
    )
    p.add_argument("folder", metavar="DIR")
    p.add_argument(
        "shots", nargs="*", metavar="SHOT", help="erase: these shots (default with --all: every one)"
    )
    p.add_argument("--all", action="store_true", help="erase: every shot in the folder")
    p.add_argument("--keep-days", type=float, default=30.0, help="expire: the retention period (30)")
    p.set_defaults(handler=strangers_command)


def _options(args: argparse.Namespace) -> Any:
    from faceverify.faces.quality import MIN_QUALITY
    from faceverify.video.watch import WatchOptions

    return WatchOptions(
        detector=args.detector,
        upsample=args.upsample,
        max_side=args.max_side,
        min_size=args.min_face,
        detect_every=args.detect_every,
        speed=args.speed,
        min_quality=MIN_QUALITY if args.min_quality is None else args.min_quality,
        threshold=args.threshold,
        lost_after=args.lost_after,
    )


def _ffmpeg_options(pairs: list[str]) -> dict[str, str]:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option {pair!r} must be KEY=VALUE, e.g. rtsp_transport=udp")
        options[key] = value
    return options


def _open_gallery(args: argparse.Namespace) -> Gallery | None:
    if args.no_gallery:
        return None
    from faceverify.gallery.gallery import Gallery, open_store

    store = open_store(args.db)
    default_to_gallery_model(args, store)
    try:
        return Gallery(store, build_from_args(args), actor=cli_actor())
    except BaseException:
        store.close()
        raise


def watch_command(args: argparse.Namespace) -> int:
    """Run the watch, writing events as they happen; outputs are closed properly whatever
    ends it (the video's end, Ctrl-C, a stream that could not be restored)."""
    from faceverify.video.outputs import AnnotatedVideo, EventLog, Snapshots, StrangerFolder
    from faceverify.video.source import open_video
    from faceverify.video.watch import Watch

    options = _options(args)  # bad options fail before anything opens
    source = open_video(
        args.source,
        live=args.live,
        retries=args.retries,
        input_format=args.input_format,
        options=_ffmpeg_options(args.option),
    )
    closers: list[Any] = [source]
    try:
        gallery = _open_gallery(args)
        if gallery is not None:
            closers.append(gallery)
        events = EventLog(args.events or "-")
        closers.append(events)
        annotated = AnnotatedVideo(args.out, source.fps) if args.out else None
        if annotated is not None:
            closers.append(annotated)
        snapshots = Snapshots(args.snapshots) if args.snapshots else None
        strangers = (
            StrangerFolder(args.enroll_unknown, retention_days=args.keep_days)
            if args.enroll_unknown
            else None
        )

        def on_end(track: Any) -> str | None:
            if strangers is not None:
                strangers.add(track, source.name)
            return snapshots(track) if snapshots is not None else None

        run = Watch(source, gallery, options, on_frame=annotated, on_end=on_end)
        _drain(run, events)
        _report(run.summary, args)
        if run.summary.error:  # a stream lost for good: after the summary, one line, non-zero
            print_error(run.summary.error)
            return EXIT_ERROR
        return EXIT_OK
    finally:
        for closer in reversed(closers):
            closer.close()


def _drain(run: Watch, events: Any) -> None:
    import signal

    def stop(signum: int, frame: Any) -> None:  # the first Ctrl-C ends the watch cleanly
        log.info("stopping: the tracks end and the outputs are finished (Ctrl-C again to abort)")
        signal.signal(signal.SIGINT, previous)
        run.stop()

    import threading

    handled = threading.current_thread() is threading.main_thread()  # signals go to it only
    previous = signal.signal(signal.SIGINT, stop) if handled else None
    try:
        for event in run:
            events.write(event.to_dict())
    except VideoError:
        pass  # the tracks ended first; the summary holds the error, reported below
    finally:
        if handled:
            signal.signal(signal.SIGINT, previous)


def _report(summary: WatchSummary, args: argparse.Namespace) -> None:
    data = summary.to_dict()
    if args.summary:
        from faceverify.paths import write_private

        write_private(Path(args.summary), json.dumps(data, indent=1))
    if not args.quiet:
        print(
            f"{data['tracks']} tracks: {data['known']} known ({', '.join(data['people']) or 'nobody'}), "
            f"{data['unknown']} unknown, {data['unidentified']} unidentified; "
            f"frames read {data['frames_read']}, "
            f"processed {data['frames_processed']}, skipped {data['frames_skipped']}, dropped "
            f"{data['frames_dropped']}, corrupt {data['frames_corrupt']}; {data['fps']} fps, "
            f"{data['speed']}x real time",
            file=sys.stderr,
        )


def strangers_command(args: argparse.Namespace) -> int:
    from faceverify.video.outputs import StrangerFolder

    if not Path(args.folder).is_dir():
        raise ConfigError(f"{args.folder!r} is not a folder of strangers' shots")
    folder = StrangerFolder(args.folder, retention_days=args.keep_days)  # opening expires old ones
    if args.action == "list":
        for shot in folder.shots():
            print(shot)
        return EXIT_OK
    if args.action == "erase":
        if not args.shots and not args.all:
            raise ConfigError("strangers erase needs SHOT... or --all")
        erased = folder.erase(None if args.all else args.shots)
        print(json.dumps({"erased": erased}) if args.json else f"erased {erased}")
        return EXIT_OK
    print(json.dumps({"erased": folder.expired}) if args.json else f"erased {folder.expired}")
    return EXIT_OK
