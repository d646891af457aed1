"""``faceverify prepare``: a training set in the course layout from a folder-per-person tree."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields
from typing import Any

from faceverify.cli.common import (
    EXIT_OK,
    EXIT_PARTIAL,
    add_detector_arguments,
    face_options,
    log,
    positive_int,
)


def prepare(args: argparse.Namespace) -> int:
    from faceverify.data.prepare import CropOptions, prepare_photos
    from faceverify.data.split import SplitOptions

    crop = CropOptions(size=args.size, grayscale=args.grayscale, faces=face_options(args, "prepare"))
    # the split options are named as SplitOptions' fields
    split = SplitOptions(**{f.name: getattr(args, f.name) for f in fields(SplitOptions)})
    report = prepare_photos(
        args.photos,
        args.out,
        crop=crop,
        split=split,
        force=args.force,
        workers=args.workers,
        progress=False if args.quiet else None,
    )
    log.info("%s; train with: faceverify train %s", report.summary(), " ".join(report.train_overrides))
    print(json.dumps(report.to_dict()) if args.json else str(report.manifest))
    return EXIT_PARTIAL if report.skipped else EXIT_OK


def register(sub: Any, common: argparse.ArgumentParser, model_opts: argparse.ArgumentParser) -> None:
    from faceverify.data.prepare import SIZES

    p = sub.add_parser(
        "prepare",
        parents=[common],
        help="detect, align and crop photos of people into a training set (course layout)",
        description="Turn PHOTOS_DIR/<person>/*.jpg into OUT_DIR/classification_train, classification_val, "
        "verification_data and verification_pairs_val.txt, ready for 'faceverify train data.root=OUT_DIR'. "
        "Every photo's outcome is in OUT_DIR/prepare.json; a rerun reuses unchanged photos' faces. "
        "Exit code 3: done, but some photos were skipped (no face, several faces, unreadable).",
    )
    p.add_argument("photos", metavar="PHOTOS_DIR", help="one sub-folder of photos per person")
    p.add_argument("out", metavar="OUT_DIR", help="created if missing; an earlier prepare output is updated")
    crops = p.add_argument_group("crops")
    crops.add_argument(
        "--size",
        type=int,
        choices=tuple(SIZES),
        default=64,
        help="64: dlib-style chip for the course's face_resnet (default); 112: ArcFace template; "
        "150: dlib's chip, for fine-tuning dlib_resnet_v1",
    )
    crops.add_argument("--grayscale", action="store_true", help="save one-channel crops")
    add_detector_arguments(crops, embeds=False)
    p.set_defaults(detect=True)  # for face_options(): prepare always detects
    split = p.add_argument_group("split (deterministic for a seed)")
    split.add_argument(
        "--val-share", type=float, default=0.2, help="share of each person's photos for val (0.2)"
    )
    split.add_argument(
        "--min-photos", type=positive_int, default=2, help="leave out people with fewer usable photos (2)"
    )
    split.add_argument(
        "--pairs-people", type=int, help="people held out for the verification pairs (default: --pairs-share)"
    )
    split.add_argument(
        "--pairs-share", type=float, default=0.2, help="share of people held out, at least 2 when any (0.2)"
    )
    split.add_argument(
        "--impostor-ratio", type=float, default=1.0, help="different-person pairs per same-person pair"
    )
    split.add_argument(
        "--max-pairs-per-person",
        type=positive_int,
        default=50,
        help="cap on one person's same-person pairs (50)",
    )
    split.add_argument("--seed", type=int, default=0, help="every choice follows from it (0)")
    p.add_argument("--force", action="store_true", help="write into a non-empty folder prepare did not make")
    p.add_argument("--workers", type=positive_int, default=1, help="processes detecting at once (1)")
    p.set_defaults(handler=prepare)
