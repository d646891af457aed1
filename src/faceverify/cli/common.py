"""What every CLI command module shares: exit codes, the shared options, one-line errors,
building the model the options describe, and the verdict line of a verification.

The command modules (``models``, ``embed``, ``evaluate``, ``gallery``, ``train``) import
this module and nothing from ``main``, which imports them all: no cycle.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from faceverify.errors import ConfigError
from faceverify.faces.detect import DEFAULT_DETECTOR, DEFAULT_MAX_SIDE, VIDEO_DETECTOR, VIDEO_MAX_SIDE
from faceverify.models.registry import DEFAULT_MODEL
from faceverify.photos import POLICIES
from faceverify.runtime import BACKENDS

if TYPE_CHECKING:
    from faceverify.cluster.library import Library
    from faceverify.compare.verification import Verification
    from faceverify.gallery.base import GalleryStore
    from faceverify.models.spec import ModelSpec
    from faceverify.photos import FaceOptions
    from faceverify.runtime.base import Embedder

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL = 0, 1, 2, 3
PROG = "faceverify"
log = logging.getLogger("faceverify.cli")


class Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line on stderr too."""

    def error(self, message: str) -> NoReturn:
        print_error(f"{message} (see '{self.prog} --help')")
        sys.exit(EXIT_USAGE)


def done_code(skipped: bool, *, under_torchrun: bool = False) -> int:
    """EXIT_PARTIAL when some inputs were skipped, else EXIT_OK. torchrun takes any non-zero
    exit for a failed rank (and may restart the job), so under it skips are only reported."""
    return EXIT_PARTIAL if skipped and not under_torchrun else EXIT_OK


def print_error(message: str) -> None:
    one_line = " ".join(message.split())
    print(f"{PROG}: error: {one_line}", file=sys.stderr)


def cli_actor() -> str:
    """Who the audit logs name for a command: ``cli:<the OS user>``."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for this uid (a bare container)
        import os

        return f"cli:uid-{os.getuid()}" if hasattr(os, "getuid") else "cli"


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def shared_options() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """Parent parsers: the options of every command, and those of commands that embed."""
    common = Parser(add_help=False)
    common.add_argument("-v", "--verbose", action="store_true", help="log details (and tracebacks)")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summaries")
    common.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")

    model_opts = Parser(add_help=False)
    add_model_arguments(model_opts)
    faces = model_opts.add_argument_group("faces in photos")
    faces.add_argument(
        "--detect",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="find and align faces in photos (default: when the model needs it, e.g. dlib_resnet_v1); "
        "--no-detect takes images as ready crops",
    )
    add_detector_arguments(faces)
    return common, model_opts


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model, --weights, --device... and the foreign-graph options: which model embeds."""
    group = parser.add_argument_group("model")
    group.add_argument("--model", help=f"timm model name or a trained checkpoint (default: {DEFAULT_MODEL})")
    group.add_argument(
        "--weights", help="local .safetensors file or folder; default: the model's published weights"
    )
    group.add_argument("--device", default="auto", help="auto (GPU if present), cpu, cuda, cuda:N, mps")
    group.add_argument("--batch-size", type=positive_int, default=32, help="images per batch (32)")
    group.add_argument("--input-size", type=positive_int, help="network input side, e.g. 112 for small crops")
    group.add_argument(
        "--crop-pct", type=float, help="centre-crop fraction; 1.0 keeps tight face crops whole"
    )
    group.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="auto: ONNX Runtime on CPUs when installed (faster there), PyTorch otherwise",
    )
    graph = parser.add_argument_group(
        "ONNX face models faceverify did not write (--model model.onnx; default: insightface's convention)"
    )
    graph.add_argument(
        "--face-template", help="the alignment it was trained on: arcface112 (default) or dlib150"
    )
    graph.add_argument(
        "--pixel-mean", type=float, nargs="+", metavar="V", help="per channel (RGB), 0-255 units (127.5)"
    )
    graph.add_argument(
        "--pixel-std", type=float, nargs="+", metavar="V", help="per channel, 0-255 units (127.5)"
    )
    graph.add_argument(
        "--channel-order", choices=("RGB", "BGR"), help="what the graph's first channel is (RGB)"
    )
    group.add_argument(
        "--tta",
        choices=("flip",),
        help="flip: embed each face with its mirror image too (steadier vectors, twice the work)",
    )


def add_detector_arguments(
    group: argparse._ActionsContainer, *, embeds: bool = True, video: bool = False
) -> None:
    """--detector, --upsample, --min-face, --faces and --whole-if-no-face: how faces are
    found and which count, for every command that finds them (``embeds=False``, for
    commands that only cut faces out, leaves out --whole-if-no-face; ``video=True`` gives
    video's defaults, hog at 640 px, and no photo policies)."""
    group.add_argument(
        "--detector",
        default=VIDEO_DETECTOR if video else DEFAULT_DETECTOR,
        help=(
            "hog (default: most frames hold no face, where hog+mmod would run the CNN), "
            if video
            else "hog+mmod (default: hog, then mmod on photos where hog finds no face), hog (fast on CPUs), "
        )
        + "mmod (dlib's CNN on ONNX Runtime: turned faces and tight crops; 2-3x slower), "
        "cnn (the same CNN in dlib: slow), or an installed plugin's",
    )
    group.add_argument(
        "--upsample", type=int, default=1, help="0 finds faces of 80 px and more, 1 (default) 40 px, 2 20 px"
    )
    max_side = VIDEO_MAX_SIDE if video else DEFAULT_MAX_SIDE
    group.add_argument(
        "--max-side",
        type=positive_int,
        default=max_side,
        help=f"detect on {'frames' if video else 'photos'} reduced to this longer side ({max_side}); smaller "
        "is faster on large ones and misses more small faces (landmarks and chips keep every pixel)",
    )
    group.add_argument("--min-face", type=float, default=0.0, help="ignore faces narrower than this (px)")
    if video:
        return
    if embeds:  # what a photo without a face gives matters only where photos are embedded
        group.add_argument(
            "--whole-if-no-face",
            action="store_true",
            help="embed a photo in which no face is found whole (reported as such) instead of skipping it",
        )
    group.add_argument(
        "--faces",
        choices=POLICIES,
        help="a photo with several faces: largest, all, refuse or skip; default: the command's "
        "own (largest for embed and verify, all for identify and detect, refuse for enroll, "
        "skip for prepare)",
    )


def face_options(args: argparse.Namespace, job: str | None) -> FaceOptions:
    """The face-finding options the ``faces in photos`` arguments describe, for ``job``
    (which decides what a photo with several faces gives, unless --faces says); None
    leaves that to the gallery, which knows the job of each call."""
    from faceverify.photos import FaceOptions

    options = FaceOptions(
        detect=args.detect,
        detector=args.detector,
        upsample=args.upsample,
        max_side=args.max_side,
        min_size=args.min_face,
        several=getattr(args, "faces", None),
        whole_if_no_face=getattr(args, "whole_if_no_face", False),
        min_quality=getattr(args, "face_min_quality", None),
    )
    return options if job is None else options.for_job(job)


def model_spec_from_args(args: argparse.Namespace) -> ModelSpec:
    """The model the common ``--model/--weights/--device/...`` options describe (every
    command that builds one, ``serve`` included, reads them here)."""
    from faceverify.models.spec import ModelSpec

    name, weights = args.model, args.weights
    if name is not None and weights is None and Path(name).exists():
        name, weights = None, name  # `--model run/best.pt`: a checkpoint names its own architecture
    return ModelSpec(
        model=name,
        weights=weights,
        device=args.device,
        input_size=args.input_size,
        crop_pct=args.crop_pct,
        backend=args.backend,
        face_template=args.face_template,
        pixel_mean=_one_or_three(args.pixel_mean),
        pixel_std=_one_or_three(args.pixel_std),
        channel_order=args.channel_order,
        tta=args.tta,
    )


def _one_or_three(values: list[float] | None) -> float | tuple[float, float, float] | None:
    if values is None or len(values) == 1:
        return values[0] if values else None
    if len(values) != 3:
        raise ConfigError(f"{len(values)} values given; give one for every channel, or three (R G B)")
    return (values[0], values[1], values[2])


def build_from_args(args: argparse.Namespace) -> Embedder:
    """The model described by the common ``--model/--weights/--device/...`` options."""
    from faceverify.runtime.build import build_from_spec

    return build_from_spec(model_spec_from_args(args))


def verdict_line(outcome: Verification) -> str:
    """``score<TAB>SAME|DIFFERENT<TAB>(threshold t, source)``: what verify and verify-id print."""
    verdict = "SAME" if outcome.same else "DIFFERENT"
    return f"{outcome.score:.4f}\t{verdict}\t(threshold {outcome.threshold:g}, {outcome.threshold_source})"


#: The model a new library uses when none is named: the face network that ships with the
#: base install (an ImageNet backbone groups photos by scene, not by person).
LIBRARY_MODEL = "dlib_resnet_v1"


def default_to_gallery_model(args: argparse.Namespace, store: GalleryStore) -> None:
    """Without ``--model``: the model the gallery was enrolled with, or dlib's network for a
    new one (library and video commands: they need a face model, whatever the global default)."""
    if args.model is None:
        manifest = store.manifest()
        args.model = manifest.get("model", LIBRARY_MODEL) if manifest else LIBRARY_MODEL


def open_library_from_args(args: argparse.Namespace, *, threshold: float | None = None) -> Library:
    """The library of ``--db``, with the gallery's model unless ``--model`` names one."""
    from faceverify.cluster.library import Library
    from faceverify.cluster.method import Thresholds
    from faceverify.gallery.base import Change
    from faceverify.gallery.gallery import Gallery, open_store

    store = open_store(args.db)  # a bad --db fails before the model loads
    default_to_gallery_model(args, store)
    try:
        gallery = Gallery(
            store, build_from_args(args), faces=face_options(args, "cluster"), actor=cli_actor()
        )
    except BaseException:
        store.close()
        raise
    thresholds = None if threshold is None else Thresholds.from_group(threshold)
    quality = getattr(args, "min_quality", None)
    return Library(gallery, thresholds=thresholds, min_quality=quality, change=Change(cli_actor()))
