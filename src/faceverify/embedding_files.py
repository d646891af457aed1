"""Embeddings on disk: ``.npy`` or ``.jsonl`` files, the shards of a sharded run, their merge.

Every file gets a ``<name>.meta.json`` beside it with the model, weights, preprocessing
contract, row order and skipped inputs, so the numbers can always be traced back to what
produced them (and a gallery can refuse vectors of another model).

Under ``torchrun`` each rank writes its share as a shard, ``<name>.rank-R-of-W<suffix>``
with its own sidecar (the same fields, plus where each row stands in the whole input
list); :func:`merge_shards` puts them back together exactly as one process would have
written them.

Every file is written through :func:`faceverify.paths.write_private`: whole or not at all
(a reader, or the rank that merges, never sees half a file), and owner-only, since face
embeddings identify people as the galleries' do.

It stands where :mod:`faceverify.embed` does: it may import ``errors``, ``paths`` and, for
types, ``embed``, ``faces`` and ``runtime.base``; the CLI and any other caller import it.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from faceverify import __version__
from faceverify.errors import ConfigError
from faceverify.paths import timestamp, write_private

if TYPE_CHECKING:
    import numpy as np

    from faceverify.embed import EmbeddingResult
    from faceverify.faces.detect import Face
    from faceverify.runtime.base import Embedder

FORMATS = (".npy", ".jsonl")

#: Fields that differ between shards of one run; every other field must agree.
_PER_SHARD = ("created", "file", "count", "paths", "faces", "skipped", "shard")


@dataclass(frozen=True)
class Shard:
    """One rank's share of the inputs.

    Attributes:
        rank, world_size: which share of how many.
        positions: for each input of this share, its position in the whole input list.
        inputs_sha256: the identity of the whole input list, so shards of other runs are refused.
    """

    rank: int
    world_size: int
    positions: list[int]
    inputs_sha256: str

    def to_dict(self, result: EmbeddingResult) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "world_size": self.world_size,
            "inputs_sha256": self.inputs_sha256,
            "rows": [self.positions[i] for i in result.indices],
            "skipped": [self.positions[f.index] for f in result.failures],
        }


def check_destination(out: str | Path) -> Path:
    """``out`` as a path, once it is clear that embeddings can be written there.

    Raises:
        ConfigError: an unknown suffix (see :data:`FORMATS`), or a folder that does not exist.
    """
    path = Path(out)
    if path.suffix not in FORMATS:
        raise ConfigError(f"{str(out)!r} has an unknown format; valid suffixes: {', '.join(FORMATS)}")
    if not path.parent.is_dir():
        raise ConfigError(f"cannot write {str(out)!r}: folder '{path.parent}' does not exist")
    return path


def write_embeddings(
    out: Path, result: EmbeddingResult, model: Embedder, *, normalized: bool, shard: Shard | None = None
) -> Path:
    """Write ``result`` to ``out`` and its sidecar (with ``shard``: to that rank's shard file).

    Returns:
        the file written.
    """
    target = out if shard is None else shard_path(out, shard.rank, shard.world_size)
    if target.suffix == ".npy":
        write_private(target, _npy_bytes(result.embeddings))
    else:
        write_private(target, "".join(jsonl_lines(result)))
    meta = metadata(model, result, normalized=normalized, file=target.name)
    if shard is not None:
        meta["shard"] = shard.to_dict(result)
    _write_meta(target, meta)
    return target


def write_jsonl(stream: TextIO, result: EmbeddingResult) -> None:
    """The rows of ``result`` as JSON lines on ``stream`` (e.g. stdout), flushed."""
    for line in jsonl_lines(result):
        stream.write(line)
    stream.flush()


def jsonl_lines(result: EmbeddingResult) -> Iterator[str]:
    """One JSON line (ending in a newline) per row: its input, its face, its embedding."""
    for source, face, row in zip(result.sources, result.faces, result.embeddings.tolist()):
        face_field = {"face": face_json(face)} if face is not None else {}
        yield json.dumps({"path": source, **face_field, "embedding": row}) + "\n"


def shard_path(out: Path, rank: int, world_size: int) -> Path:
    """Where rank ``rank`` writes its share of ``out``: ``emb.npy`` -> ``emb.rank-0-of-2.npy``."""
    return out.with_name(f"{out.stem}.rank-{rank}-of-{world_size}{out.suffix}")


def inputs_sha256(paths: list[str]) -> str:
    """The identity of a run's whole input list, recorded in each of its shards."""
    return hashlib.sha256("\n".join(paths).encode()).hexdigest()


def merge_shards(out: str | Path, *, world_size: int | None = None, remove: bool = False) -> dict[str, Any]:
    """Join the shards of ``out`` into ``out`` itself, as one process would have written it.

    Args:
        out: the file the shards were written for (``.npy`` or ``.jsonl``).
        world_size: merge the shards of a run of this many ranks; None takes the only
            run whose shards lie beside ``out``.
        remove: delete the shards once the merged file is written.

    Returns:
        the merged file's metadata (also written to its ``.meta.json``).

    Raises:
        ConfigError: shards are missing, or belong to different runs or models.
    """
    target = Path(out)
    shards = _find_shards(target, world_size)
    metas = [json.loads(p.with_suffix(".meta.json").read_text(encoding="utf-8")) for p in shards]
    _check_one_run(target, shards, metas)
    # each input went to exactly one rank, so its position orders the rows of all shards
    rows = sorted(
        (position, s, r) for s, meta in enumerate(metas) for r, position in enumerate(meta["shard"]["rows"])
    )
    if target.suffix == ".npy":
        import numpy as np

        parts = [np.load(p) for p in shards]
        offsets = np.cumsum([0] + [len(part) for part in parts])
        order = np.array([offsets[s] + r for _, s, r in rows], dtype=np.int64)
        write_private(target, _npy_bytes(np.concatenate(parts)[order]))
    else:
        lines = [p.read_text(encoding="utf-8").splitlines(keepends=True) for p in shards]
        write_private(target, "".join(lines[s][r] for _, s, r in rows))
    skipped = sorted(
        (position, item)
        for meta in metas
        for position, item in zip(meta["shard"]["skipped"], meta["skipped"])
    )
    merged = {
        **{k: v for k, v in metas[0].items() if k != "shard"},
        "created": timestamp(),
        "file": target.name,
        "count": len(rows),
        "paths": [metas[s]["paths"][r] for _, s, r in rows],
        "faces": [metas[s]["faces"][r] for _, s, r in rows],
        "skipped": [item for _, item in skipped],
        "shards": len(shards),
    }
    _write_meta(target, merged)
    if remove:
        for path in shards:
            path.unlink()
            path.with_suffix(".meta.json").unlink()
    return merged


def _find_shards(target: Path, world_size: int | None) -> list[Path]:
    if target.suffix not in FORMATS:
        raise ConfigError(f"{str(target)!r} has an unknown format; valid suffixes: {', '.join(FORMATS)}")
    pattern = f"{glob.escape(target.stem)}.rank-*-of-{world_size or '*'}{target.suffix}"
    name = re.compile(rf"{re.escape(target.stem)}\.rank-\d+-of-(\d+)")
    found = [m for m in (name.fullmatch(p.stem) for p in target.parent.glob(pattern)) if m]
    worlds = {m.group(1) for m in found}
    if not found:
        raise ConfigError(
            f"no shards of '{target}' found (looked for {target.parent / pattern}); "
            "shards are written by `torchrun ... -m faceverify embed ... --out` beside its --out"
        )
    if len(worlds) > 1:
        raise ConfigError(
            f"shards of '{target}' from runs of {', '.join(sorted(worlds))} ranks lie side by side; "
            "remove the stale ones (or the merge cannot tell which belong together)"
        )
    size = int(worlds.pop())
    expected = [shard_path(target, r, size) for r in range(size)]
    missing = [p for p in expected for f in (p, p.with_suffix(".meta.json")) if not f.is_file()]
    if missing:
        raise ConfigError(
            f"{len(missing)} of {size} shards of '{target}' are missing, first {missing[0]}; "
            "copy every rank's shard (and its .meta.json) beside the others, or rerun"
        )
    return expected


def _check_one_run(target: Path, shards: list[Path], metas: list[dict[str, Any]]) -> None:
    """Refuse shards of different input lists or models: their rows cannot be joined."""
    for path, meta in zip(shards, metas):
        if not isinstance(meta.get("shard"), dict):
            raise ConfigError(f"'{path.with_suffix('.meta.json')}' does not describe a shard; rerun")
    first = metas[0]
    for path, meta in zip(shards, metas):
        if meta["shard"]["inputs_sha256"] != first["shard"]["inputs_sha256"]:
            raise ConfigError(f"shard '{path}' embedded another list of images than '{shards[0]}'; rerun")
        differs = [k for k in first if k not in _PER_SHARD and meta.get(k) != first[k]]
        if differs:
            raise ConfigError(f"shard '{path}' differs from '{shards[0]}' in {', '.join(differs)}; rerun")


def _npy_bytes(array: np.ndarray) -> bytes:
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _write_meta(target: Path, meta: dict[str, Any]) -> None:
    write_private(target.with_suffix(".meta.json"), json.dumps(meta, indent=2) + "\n")


def metadata(model: Embedder, result: EmbeddingResult, *, normalized: bool, file: str) -> dict[str, Any]:
    """The sidecar that travels with an embeddings file."""
    return {
        "faceverify_version": __version__,
        "created": timestamp(),
        "file": file,
        **model.describe(),
        "normalized": normalized,
        "count": len(result.indices),
        "paths": result.sources,
        "faces": [face_json(face) for face in result.faces],
        "skipped": [{"path": f.source, "reason": f.reason} for f in result.failures],
    }


def face_json(face: Face | None) -> dict[str, Any] | None:
    """A detected face in the one JSON shape faces have (:meth:`Face.to_dict`); None for an
    input embedded without detection."""
    return face.to_dict() if face is not None else None
