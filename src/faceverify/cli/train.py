"""``faceverify synth`` and ``faceverify train``: data to learn from, and learning."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

from faceverify.cli.common import EXIT_OK


def synth(args: argparse.Namespace) -> int:
    from faceverify.data.synthetic_faces import generate

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
    from faceverify.extras import TORCH

    TORCH.require("training")
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
