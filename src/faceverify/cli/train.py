"""``faceverify synth``, ``faceverify train`` and ``faceverify predict``."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from faceverify.cli.commands import build_from_args
from faceverify.cli.main import EXIT_OK, EXIT_PARTIAL

log = logging.getLogger("faceverify.cli")


def synth(args: argparse.Namespace) -> int:
    from faceverify.data.synthetic import generate

    root = generate(
        args.out,
        identities=args.identities,
        images_per_identity=args.images,
        held_out=args.held_out,
        size=args.size,
        seed=args.seed,
    )
    print(json.dumps({"root": str(root)}) if args.json else str(root))
    return EXIT_OK


def train(args: argparse.Namespace) -> int:
    from faceverify.train.config import load_config
    from faceverify.train.loop import train as run

    config = load_config(args.config, args.overrides)
    main_process = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 reports
    if not main_process:
        logging.getLogger("faceverify").setLevel(logging.ERROR)
    metrics = run(config, resume=args.resume)
    if main_process:
        print(json.dumps(metrics) if args.json else f"{Path(config.out) / 'best.pt'}")
    return EXIT_OK


def predict(args: argparse.Namespace) -> int:
    """One cosine score per pair (labels optional), for submission files or analysis."""
    from faceverify.evaluate.pairs import read_pairs
    from faceverify.evaluate.report import log_problems
    from faceverify.evaluate.scoring import score_pairs

    pairs = read_pairs(args.pairs, args.root, format=args.format)
    model = build_from_args(args)
    scored = score_pairs(model, pairs, batch_size=args.batch_size, progress=False if args.quiet else None)
    log_problems(log, scored.problems)
    rows = _rows(scored, Path(args.root))
    if args.out:
        with open(args.out, "w", newline="", encoding="utf-8") as stream:
            _write(stream, rows)
        log.info("%d scores written to %s", len(rows), args.out)
    else:
        _write(sys.stdout, rows)
    return EXIT_PARTIAL if scored.problems else EXIT_OK


def _rows(scored: Any, root: Path) -> list[dict[str, Any]]:
    rows = []
    for pair, score in zip(scored.pairs, scored.scores.tolist()):
        row = {"a": _relative(pair.a, root), "b": _relative(pair.b, root), "score": f"{score:.6f}"}
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


def register(sub: Any, common: argparse.ArgumentParser, model_opts: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "synth", parents=[common], help="generate a synthetic face-like dataset (course layout)"
    )
    p.add_argument("out", metavar="FOLDER")
    p.add_argument("--identities", type=int, default=200, help="people in the classification sets (200)")
    p.add_argument("--images", type=int, default=20, help="training images per person (20)")
    p.add_argument("--held-out", type=int, default=40, help="people only in the verification pairs (40)")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (64)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler=synth)

    p = sub.add_parser("train", parents=[common], help="train an embedding CNN by identity classification")
    p.add_argument("--config", help="YAML config (see configs/); settings not given keep their defaults")
    p.add_argument("--resume", metavar="CKPT", help="continue a run from its last.pt")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. epochs=20 optim.lr=0.05")
    p.set_defaults(handler=train)

    p = sub.add_parser("predict", parents=[common, model_opts], help="score verification pairs into a CSV")
    p.add_argument("--pairs", required=True, help="pairs file (labels optional)")
    p.add_argument("--root", required=True, help="folder the pair paths are relative to")
    p.add_argument("--format", default="auto", choices=("auto", "course", "lfw", "csv"))
    p.add_argument("--out", help="CSV file to write (default: stdout)")
    p.set_defaults(handler=predict)
