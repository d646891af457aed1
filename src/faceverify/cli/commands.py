"""The CLI subcommands; each takes parsed arguments and returns an exit code."""

from __future__ import annotations

import argparse
import json
import logging
import time
from typing import TYPE_CHECKING

from faceverify.cli.main import EXIT_OK, EXIT_PARTIAL
from faceverify.errors import ConfigError, FaceVerifyError

if TYPE_CHECKING:
    from faceverify.compare.verification import Verification
    from faceverify.runtime.base import Embedder

log = logging.getLogger("faceverify.cli")


def models(args: argparse.Namespace) -> int:
    """``faceverify models``: the curated menu, dims read off the architectures."""
    from faceverify.models.registry import DEFAULT_MODEL, list_models

    infos = list_models()
    if args.json:
        print(json.dumps([{**i.to_dict(), "default": i.name == DEFAULT_MODEL} for i in infos], indent=2))
        return EXIT_OK
    rows = [("NAME", "FAMILY", "DIM", "INPUT", "NOTE")]
    for info in infos:
        mark = " *" if info.name == DEFAULT_MODEL else ""
        size = "x".join(str(s) for s in info.input_size)
        rows.append((info.name + mark, info.family, str(info.embedding_dim), size, info.note))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[4])
    if not args.quiet:
        log.info("* default. Any timm model name also works with --model.")
    return EXIT_OK


def embed(args: argparse.Namespace) -> int:
    """``faceverify embed``: embeddings for files and folders, bad files reported."""
    from faceverify.cli.output import EmbeddingWriter
    from faceverify.decode import iter_image_paths
    from faceverify.embed import embed_images

    writer = EmbeddingWriter(args.out)  # validates --out before any slow work
    paths = [str(p) for p in iter_image_paths(args.inputs)]
    if not paths:
        raise ConfigError(f"no images found in {', '.join(args.inputs)} (folders are searched recursively)")
    model = build_from_args(args)
    started = time.perf_counter()
    result = embed_images(
        model,
        paths,
        batch_size=args.batch_size,
        normalize=args.normalize,
        progress=None if not args.quiet else False,
    )
    for failure in result.failures:
        log.warning("skipped %s", failure)
    if not result.indices:
        raise FaceVerifyError(
            f"none of the {len(paths)} images could be embedded; first: {result.failures[0]}"
        )
    writer(result, model, normalized=args.normalize)
    elapsed = time.perf_counter() - started
    log.info(
        "embedded %d of %d images (%d-dim) in %.1f s, %.1f img/s%s",
        len(result.indices),
        len(paths),
        model.embedding_dim,
        elapsed,
        len(paths) / elapsed,
        f"; {len(result.failures)} skipped" if result.failures else "",
    )
    return EXIT_PARTIAL if result.failures else EXIT_OK


def verify(args: argparse.Namespace) -> int:
    """``faceverify verify A B``: the score and SAME/DIFFERENT."""
    from faceverify.compare.verification import verify as decide
    from faceverify.embed import embed_images

    model = build_from_args(args)
    result = embed_images(model, [args.image_a, args.image_b], batch_size=2)
    if result.failures:
        raise FaceVerifyError("; ".join(str(f) for f in result.failures))
    outcome = decide(result.embeddings[0], result.embeddings[1], args.threshold, model=model)
    if args.json:
        print(json.dumps({"a": args.image_a, "b": args.image_b, **outcome.to_dict(), "model": model.name}))
    else:
        print(verdict_line(outcome))
    return EXIT_OK


def verdict_line(outcome: Verification) -> str:
    """``score<TAB>SAME|DIFFERENT<TAB>(threshold t)``: what verify and verify-id print."""
    verdict = "SAME" if outcome.same else "DIFFERENT"
    return f"{outcome.score:.4f}\t{verdict}\t(threshold {outcome.threshold:g})"


def build_from_args(args: argparse.Namespace) -> Embedder:
    """The model described by the common ``--model/--weights/--device/...`` options."""
    from pathlib import Path

    from faceverify.runtime.build import build_model

    name, weights = args.model, args.weights
    if name is not None and weights is None and Path(name).exists():
        name, weights = None, name  # `--model run/best.pt`: a checkpoint names its own architecture
    return build_model(
        name,
        weights=weights,
        device=args.device,
        input_size=args.input_size,
        crop_pct=args.crop_pct,
    )
