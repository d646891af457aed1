"""``faceverify embed`` and ``faceverify verify``: embeddings of images, and a decision on two."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from faceverify.cli.common import EXIT_OK, build_from_args, done_code, face_options, log, verdict_line
from faceverify.errors import ConfigError, FaceVerifyError

if TYPE_CHECKING:
    from faceverify.distributed import World


def embed(args: argparse.Namespace) -> int:
    """Embeddings for files and folders; bad files are reported and the rest written.

    Under ``torchrun`` each rank embeds every ``world_size``-th file of the sorted list and
    writes its shard; rank 0 then merges the shards into ``--out``.
    """
    from faceverify.decode import iter_image_paths
    from faceverify.distributed import world as start_world

    paths = [str(p) for p in iter_image_paths(args.inputs)]
    if not paths:
        raise ConfigError(f"no images found in {', '.join(args.inputs)} (folders are searched recursively)")
    world = start_world(args.device)
    try:
        started = time.perf_counter()
        skipped, dim = _embed_share(args, paths, world)
        elapsed = time.perf_counter() - started
    finally:
        world.close()
    if skipped is None:
        return EXIT_OK  # a rank other than 0: rank 0 reports for all
    log.info(
        "embedded %d of %d images (%d-dim) in %.1f s, %.1f img/s%s%s",
        len(paths) - skipped,
        len(paths),
        dim,
        elapsed,
        len(paths) / elapsed,
        f" on {world.world_size} processes" if world.active else "",
        f"; {skipped} skipped" if skipped else "",
    )
    return done_code(bool(skipped), under_torchrun=world.active)


def _embed_share(args: argparse.Namespace, paths: list[str], world: World) -> tuple[int | None, int]:
    """Embed this rank's share and write it: (inputs skipped in all, or None off rank 0; dim)."""
    from faceverify import embedding_files as files
    from faceverify.embed import embed_images

    out = files.check_destination(args.out) if args.out is not None else None  # before any slow work
    if world.active and out is None:
        raise ConfigError("under torchrun every rank writes a shard: give --out FILE.npy or FILE.jsonl")
    model = build_from_args(args)
    positions = list(world.share(len(paths)))
    result = embed_images(
        model,
        [paths[i] for i in positions],
        batch_size=args.batch_size,
        normalize=args.normalize,
        progress=None if world.main and not args.quiet else False,
        faces=face_options(args, "embed"),
    )
    for failure in result.failures:
        log.warning("skipped %s", failure)
    if not world.active:
        if not result.indices:
            raise _nothing_embedded(len(paths), str(result.failures[0]))
        if out is None:
            files.write_jsonl(sys.stdout, result)
        else:
            files.write_embeddings(out, result, model, normalized=args.normalize)
        return len(result.failures), model.embedding_dim
    assert out is not None  # checked above: every rank writes a shard
    shard = files.Shard(world.rank, world.world_size, positions, files.inputs_sha256(paths))
    files.write_embeddings(out, result, model, normalized=args.normalize, shard=shard)
    world.barrier()  # every shard is written before rank 0 reads them
    if not world.main:
        return None, model.embedding_dim
    merged = files.merge_shards(out, world_size=world.world_size, remove=True)
    if not merged["count"]:
        first = merged["skipped"][0]
        raise _nothing_embedded(len(paths), f"{first['path']}: {first['reason']}")
    return len(merged["skipped"]), model.embedding_dim


def _nothing_embedded(count: int, first: str) -> FaceVerifyError:
    return FaceVerifyError(f"none of the {count} images could be embedded; first: {first}")


def embed_merge(args: argparse.Namespace) -> int:
    """Join shards written under torchrun (when rank 0 could not, e.g. on several machines)."""
    from faceverify.embedding_files import merge_shards

    merged = merge_shards(args.out, remove=args.remove)
    if args.json:
        print(json.dumps({"file": args.out, "count": merged["count"], "shards": merged["shards"]}))
    else:
        print(args.out)
    log.info(
        "merged %d shards into %s: %d rows, %d skipped",
        merged["shards"],
        args.out,
        merged["count"],
        len(merged["skipped"]),
    )
    return EXIT_OK


def verify(args: argparse.Namespace) -> int:
    """The score of two images and SAME/DIFFERENT."""
    from faceverify.compare.verification import verify as decide
    from faceverify.embed import embed_images
    from faceverify.embedding_files import face_json

    model = build_from_args(args)
    result = embed_images(
        model, [args.image_a, args.image_b], batch_size=2, faces=face_options(args, "verify")
    )
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
        "--out",
        help="write FILE.npy (with FILE.meta.json) or FILE.jsonl; default: JSONL on stdout. "
        "Under torchrun each rank writes FILE.rank-R-of-W.npy and rank 0 merges them into FILE",
    )
    p.add_argument("--normalize", action="store_true", help="L2-normalise the embeddings")
    p.set_defaults(handler=embed)

    p = sub.add_parser(
        "embed-merge",
        parents=[common],
        help="join the shards that `torchrun ... -m faceverify embed --out FILE` wrote",
    )
    p.add_argument("out", metavar="FILE", help="the --out of the sharded run; its shards lie beside it")
    p.add_argument("--remove", action="store_true", help="delete the shards once merged")
    p.set_defaults(handler=embed_merge)

    p = sub.add_parser("verify", parents=[common, model_opts], help="are two face images the same person?")
    p.add_argument("image_a", metavar="IMAGE_A")
    p.add_argument("image_b", metavar="IMAGE_B")
    p.add_argument("--threshold", type=float, help="cosine threshold (default: the model's, else 0.5)")
    p.set_defaults(handler=verify)
