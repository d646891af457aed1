"""``faceverify evaluate`` and ``faceverify calibrate``."""

from __future__ import annotations

import argparse
import json
import logging
from typing import TYPE_CHECKING

from faceverify.cli.commands import build_from_args
from faceverify.cli.main import EXIT_OK, EXIT_PARTIAL
from faceverify.errors import ConfigError
from faceverify.evaluate.report import log_problems

if TYPE_CHECKING:
    from faceverify.evaluate.pairs import PairSet

log = logging.getLogger("faceverify.cli")


def add_pairs_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("pairs")
    group.add_argument("--pairs", help="pairs file: course 'a b label' lines, LFW pairs.txt, or CSV")
    group.add_argument("--root", help="folder the image paths in the pairs file are relative to")
    group.add_argument("--format", default="auto", choices=("auto", "course", "lfw", "csv"))
    group.add_argument("--col-a", help="CSV column of the first image (default: a, image1, ...)")
    group.add_argument("--col-b", help="CSV column of the second image (default: b, image2, ...)")
    group.add_argument("--col-label", help="CSV column of the 0/1 label (default: label, same, ...)")


def _read_pairs(args: argparse.Namespace, *, required: bool) -> PairSet | None:
    from faceverify.evaluate.pairs import read_pairs

    if args.pairs is None:
        if required:
            raise ConfigError("--pairs FILE and --root DIR are required")
        return None
    if args.root is None:
        raise ConfigError("--pairs needs --root DIR, the folder its image paths are relative to")
    return read_pairs(
        args.pairs, args.root, format=args.format, columns=(args.col_a, args.col_b, args.col_label)
    )


def evaluate(args: argparse.Namespace) -> int:
    """Verification metrics and/or identification, a summary, and optionally a report."""
    from faceverify.evaluate.report import summary, write_report
    from faceverify.evaluate.run import evaluate as run

    if (args.gallery is None) != (args.probes is None):
        raise ConfigError("--gallery and --probes go together")
    pairs = _read_pairs(args, required=args.gallery is None)
    model = build_from_args(args)
    progress = False if args.quiet else None
    report, scored = run(
        model,
        pairs=pairs,
        gallery=args.gallery,
        probes=args.probes,
        threshold=args.threshold,
        batch_size=args.batch_size,
        progress=progress,
    )
    log_problems(log, report["problems"], where="all are in the JSON report")
    if args.report:
        scores, labels = (scored.scores, scored.labels) if scored is not None else (None, None)
        files = write_report(args.report, report, scores=scores, labels=labels)
        log.info("report written: %s", ", ".join(str(f) for f in files))
    print(json.dumps(report, indent=2) if args.json else summary(report))
    return EXIT_PARTIAL if report["problems"] else EXIT_OK


def calibrate(args: argparse.Namespace) -> int:
    """Choose a threshold on labelled pairs and store it with the model."""
    from faceverify.compare.calibration import save_calibration
    from faceverify.evaluate.run import calibrate as run

    pairs = _read_pairs(args, required=True)
    assert pairs is not None  # required=True raised otherwise
    model = build_from_args(args)
    far = None if args.at == "eer" else args.far
    calibration, problems = run(
        model, pairs, far=far, batch_size=args.batch_size, progress=False if args.quiet else None
    )
    log_problems(log, problems)
    if args.json:
        print(json.dumps(calibration.to_dict(), indent=2))
    else:
        c = calibration
        print(f"{c.threshold:.4f}\tFAR {c.far:.4g}\tFRR {c.frr:.4g}\t({c.target})")
    if args.dry_run:
        log.info("dry run: nothing stored")
    else:
        path = save_calibration(model, calibration)
        log.info("stored in %s; verify, evaluate and identification now use it for this model", path)
    return EXIT_PARTIAL if problems else EXIT_OK
