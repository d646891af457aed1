"""``faceverify embed`` and ``faceverify verify``: embeddings of images, and a decision on two."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from faceverify.cli.common import EXIT_OK, EXIT_PARTIAL, build_from_args, face_options, log, verdict_line
from faceverify.errors import ConfigError, FaceVerifyError


def embed(args: argparse.Namespace) -> int:
    """Embeddings for files and folders; bad files are reported and the rest written."""
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
        faces=face_options(args, all_faces=args.face == "all"),
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
    """The score of two images and SAME/DIFFERENT."""
    from faceverify.cli.output import face_json
    from faceverify.compare.verification import verify as decide
    from faceverify.embed import embed_images

    model = build_from_args(args)
    result = embed_images(model, [args.image_a, args.image_b], batch_size=2, faces=face_options(args))
    if result.failures:
        raise FaceVerifyError("; ".join(str(f) for f in result.failures))
    outcome = decide(result.embeddings[0], result.embeddings[1], args.threshold, model=model)
    if args.json:
        faces = {"face_a": face_json(result.faces[0]), "face_b": face_json(result.faces[1])}
        print(
            json.dumps(
                {"a": args.image_a, "b": args.image_b, **outcome.to_dict(), **faces, "model": model.name}
            )
        )
    else:
        print(verdict_line(outcome))
    return EXIT_OK


def register(sub: Any, common: argparse.ArgumentParser, model_opts: argparse.ArgumentParser) -> None:
    p = sub.add_parser("embed", parents=[common, model_opts], help="embed images and folders of images")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files or folders (recursive)")
    p.add_argument(
        "--out", help="write FILE.npy (with FILE.meta.json) or FILE.jsonl; default: JSONL on stdout"
    )
    p.add_argument("--normalize", action="store_true", help="L2-normalise the embeddings")
    p.add_argument(
        "--face",
        choices=("largest", "all"),
        default="largest",
        help="with detection: embed the largest face of each photo (default) or every face",
    )
    p.set_defaults(handler=embed)

    p = sub.add_parser("verify", parents=[common, model_opts], help="are two face images the same person?")
    p.add_argument("image_a", metavar="IMAGE_A")
    p.add_argument("image_b", metavar="IMAGE_B")
    p.add_argument("--threshold", type=float, help="cosine threshold (default: the model's, else 0.5)")
    p.set_defaults(handler=verify)
