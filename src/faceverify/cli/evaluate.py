"""``faceverify evaluate``, ``calibrate`` and ``predict``: the commands that read pairs files."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceverify.cli.common import (
    EXIT_OK,
    EXIT_PARTIAL,
    build_from_args,
    face_options,
    log,
    open_library_from_args,
)
from faceverify.errors import ConfigError
from faceverify.evaluate.report import log_problems

if TYPE_CHECKING:
    from faceverify.evaluate.pairs import PairSet
    from faceverify.evaluate.scoring import ScoredPairs


def add_pairs_options(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    """``--pairs/--root/--format`` and the CSV column names; ``required`` for commands that
    do nothing else (otherwise the command checks what it needs)."""
    from faceverify.evaluate.pairs import FORMATS

    group = parser.add_argument_group("pairs")
    group.add_argument(
        "--pairs", required=required, help="pairs file: course 'a b label' lines, LFW pairs.txt, or CSV"
    )
    group.add_argument(
        "--root", required=required, help="folder the image paths in the pairs file are relative to"
    )
    group.add_argument("--format", default="auto", choices=FORMATS)
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
    """Verification metrics and/or identification, a summary, and optionally a report.

    Headline figures count pairs with a failed image as non-matches; see
    :func:`faceverify.evaluate.run.evaluate`.
    """
    from faceverify.evaluate.report import summary, write_report
    from faceverify.evaluate.run import evaluate as run

    if args.clusters is not None:
        if args.pairs is not None or args.gallery is not None:
            raise ConfigError("--clusters scores a grouping on its own; run --pairs or --gallery separately")
        return evaluate_clusters(args)
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
        faces=face_options(args, "verify"),
        by=args.by or (),
    )
    log_problems(log, report["problems"], where="all are in the JSON report")
    if args.report:
        files = write_report(args.report, report, scored=scored)
        log.info("report written: %s", ", ".join(str(f) for f in files))
    print(json.dumps(report, indent=2) if args.json else summary(report))
    return EXIT_PARTIAL if report["problems"] else EXIT_OK


def evaluate_clusters(args: argparse.Namespace) -> int:
    """Group a labelled folder (folder = person) into a library and score the groups."""
    import tempfile

    from faceverify.evaluate.clusters import cluster_metrics

    with tempfile.TemporaryDirectory(prefix="faceverify-clusters-") as scratch:
        if args.db is None:
            args.db = scratch  # a library thrown away afterwards
        library = open_library_from_args(args, threshold=args.cluster_threshold)
        with library.gallery:
            scanned = library.scan(args.clusters, progress=False if args.quiet else None)
            grouped = library.group(full=True)
            metrics = cluster_metrics(library.export(), args.clusters)
    for path, reason in scanned.failed:
        log.warning("%s: %s", path, reason)
    log.info("%s", grouped.summary())
    print(json.dumps(metrics.to_dict(), indent=2) if args.json else metrics.describe())
    return EXIT_PARTIAL if scanned.failed else EXIT_OK


def calibrate(args: argparse.Namespace) -> int:
    """Choose a threshold on labelled pairs and store it with the model."""
    from faceverify.compare.calibration import save_calibration
    from faceverify.evaluate.run import calibrate as run

    pairs = _read_pairs(args, required=True)
    assert pairs is not None  # required=True raised otherwise
    model = build_from_args(args)
    far = None if args.at == "eer" else args.far
    calibration, problems = run(
        model,
        pairs,
        far=far,
        batch_size=args.batch_size,
        progress=False if args.quiet else None,
        faces=face_options(args, "verify"),
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


def predict(args: argparse.Namespace) -> int:
    """One cosine score per pair (labels optional), for submission files or analysis."""
    from faceverify.evaluate.scoring import score_pairs

    pairs = _read_pairs(args, required=True)
    assert pairs is not None  # required=True raised otherwise
    model = build_from_args(args)
    scored = score_pairs(
        model,
        pairs,
        batch_size=args.batch_size,
        progress=False if args.quiet else None,
        faces=face_options(args, "verify"),
    )
    log_problems(log, scored.problems)
    rows = _rows(scored, Path(args.root))
    if args.out:
        with open(args.out, "w", newline="", encoding="utf-8") as stream:
            _write(stream, rows)
        log.info("%d scores written to %s", len(rows), args.out)
    else:
        _write(sys.stdout, rows)
    return EXIT_PARTIAL if scored.problems else EXIT_OK


def _rows(scored: ScoredPairs, root: Path) -> list[dict[str, Any]]:
    rows = []
    for pair, score in zip(scored.pairs, scored.scores.tolist()):
        row: dict[str, Any] = {
            "a": _relative(pair.a, root),
            "b": _relative(pair.b, root),
            "score": f"{score:.6f}",
        }
        if pair.label is not None:
            row["label"] = pair.label
        rows.append(row)
    return rows


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _write(stream: Any, rows: list[dict[str, Any]]) -> None:
    columns = ["a", "b", "score"] + (["label"] if rows and "label" in rows[0] else [])
    writer = csv.DictWriter(stream, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)


def quantize(args: argparse.Namespace) -> int:
    """An int8 ONNX graph of the model, saved only when it keeps the embeddings."""
    from faceverify.decode import iter_image_paths
    from faceverify.evaluate.quantize import MIN_MEAN_COSINE, quantize_model
    from faceverify.extras import ONNX

    ONNX.require("int8 quantisation (ONNX Runtime's quantisation tools)")  # before loading anything
    args.backend = "onnxruntime"  # the fp32 graph the int8 one is made from
    model = build_from_args(args)
    images = list(iter_image_paths([args.calibration_images]))
    pairs = _read_pairs(args, required=False)
    report = quantize_model(model, images, Path(args.out), pairs=pairs, force=args.force)
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        auc = "" if report.auc_fp32 is None else f"\tAUC {report.auc_fp32:.4f} -> {report.auc_int8:.4f}"
        print(f"mean cosine {report.mean_cosine:.4f}\tmin {report.min_cosine:.4f}{auc}")
    if not report.saved:
        raise ConfigError(
            f"the int8 graph's mean cosine to fp32 is {report.mean_cosine:.4f} < {MIN_MEAN_COSINE} on "
            f"{report.held_out_images} held-out images; not saved (give more or more typical "
            "--calibration-images, or --force to save it anyway)"
        )
    log.info("wrote %s; load it with --weights %s", args.out, args.out)
    return EXIT_OK


def register(sub: Any, common: argparse.ArgumentParser, model_opts: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "quantize",
        parents=[common, model_opts],
        help="write an int8 ONNX graph (faster on CPUs with VNNI/AMX), behind an accuracy gate",
    )
    p.add_argument("--calibration-images", required=True, metavar="DIR", help="a few hundred typical images")
    p.add_argument("--out", required=True, metavar="FILE.onnx")
    p.add_argument("--force", action="store_true", help="save even when the accuracy gate fails")
    add_pairs_options(p)
    p.set_defaults(handler=quantize)

    p = sub.add_parser(
        "evaluate", parents=[common, model_opts], help="verification metrics, identification, reports"
    )
    add_pairs_options(p)
    group = p.add_argument_group("identification")
    group.add_argument("--gallery", help="folder of enrolled people: <gallery>/<person>/*.jpg")
    group.add_argument("--probes", help="folder of probe people: <probes>/<person>/*.jpg")
    p.add_argument(
        "--by",
        action="append",
        metavar="COLUMN",
        help="also report every figure per value of this CSV pairs column (e.g. age_group); repeatable",
    )
    group = p.add_argument_group("clustering")
    group.add_argument(
        "--clusters",
        metavar="FOLDER",
        help="group the faces of FOLDER/<person>/* by person (as `faceverify cluster`) and score the "
        "groups against the folders: BCubed and pairwise precision/recall/F1, groups, unassigned",
    )
    group.add_argument("--db", help="keep that library in this gallery (default: a temporary one)")
    group.add_argument(
        "--cluster-threshold", type=float, help="grouping threshold in cosine (default: from the model's)"
    )
    p.add_argument("--report", metavar="DIR", help="write report.json and PNG plots into DIR")
    p.add_argument("--threshold", type=float, help="operating threshold (default: the model's, else 0.5)")
    p.set_defaults(handler=evaluate)

    p = sub.add_parser("calibrate", parents=[common, model_opts], help="choose and store a threshold")
    add_pairs_options(p)
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--far", type=float, help="target false accept rate, e.g. 1e-3")
    target.add_argument("--at", choices=("eer",), help="the equal error rate point")
    p.add_argument("--dry-run", action="store_true", help="print the threshold without storing it")
    p.set_defaults(handler=calibrate)

    p = sub.add_parser("predict", parents=[common, model_opts], help="score verification pairs into a CSV")
    add_pairs_options(p, required=True)
    p.add_argument("--out", help="CSV file to write (default: stdout)")
    p.set_defaults(handler=predict)
