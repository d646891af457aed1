"""``faceverify models``: the curated menu of models."""

from __future__ import annotations

import argparse
import json
from typing import Any

from faceverify.cli.common import EXIT_OK, log


def models(args: argparse.Namespace) -> int:
    """The curated models with their embedding dims, read off the architectures."""
    from faceverify.models.registry import DEFAULT_MODEL, list_models

    infos = list_models()
    if args.json:
        print(json.dumps([{**i.to_dict(), "default": i.name == DEFAULT_MODEL} for i in infos], indent=2))
        return EXIT_OK
    rows = [("NAME", "FAMILY", "DIM", "INPUT", "NOTE")]
    for info in infos:
        mark = " *" if info.name == DEFAULT_MODEL else ""
        known = info.embedding_dim > 0  # 0: not readable without the torch extra (the note says)
        size = "x".join(str(s) for s in info.input_size) if known else "-"
        rows.append(
            (info.name + mark, info.family, str(info.embedding_dim) if known else "-", size, info.note)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[4])
    if not args.quiet:
        log.info("* default. Any timm model name also works with --model (with the torch extra).")
    return EXIT_OK


def register(sub: Any, common: argparse.ArgumentParser, model_opts: argparse.ArgumentParser) -> None:
    p = sub.add_parser("models", parents=[common], help="list curated models and their embedding dims")
    p.set_defaults(handler=models)
