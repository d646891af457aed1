"""Writing embeddings: ``.npy`` or ``.jsonl`` files, or JSONL on stdout.

A file output gets a ``<name>.meta.json`` beside it with the model, weights,
preprocessing contract, row order and skipped inputs, so the numbers can always be
traced back to what produced them (and a gallery can refuse vectors of another model).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from faceverify import __version__
from faceverify.errors import ConfigError
from faceverify.paths import timestamp

if TYPE_CHECKING:
    from faceverify.embed import EmbeddingResult
    from faceverify.runtime.base import Embedder

FORMATS = (".npy", ".jsonl")


class EmbeddingWriter:
    """Writes one :class:`EmbeddingResult` to the destination chosen by ``--out``."""

    def __init__(self, out: str | None) -> None:
        self.out = Path(out) if out else None
        if self.out is not None:
            if self.out.suffix not in FORMATS:
                raise ConfigError(
                    f"--out {out!r} has an unknown format; valid suffixes: {', '.join(FORMATS)}"
                )
            if not self.out.parent.is_dir():
                raise ConfigError(f"--out {out!r}: folder '{self.out.parent}' does not exist")

    def __call__(self, result: EmbeddingResult, model: Embedder, *, normalized: bool) -> None:
        if self.out is None:
            _write_jsonl(sys.stdout, result)
            return
        if self.out.suffix == ".npy":
            import numpy as np

            np.save(self.out, result.embeddings.numpy())
        else:
            with self.out.open("w", encoding="utf-8") as stream:
                _write_jsonl(stream, result)
        meta = metadata(model, result, normalized=normalized, file=self.out.name)
        meta_path = self.out.with_suffix(".meta.json")
        meta_path.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


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


def face_json(face: Any) -> dict[str, Any] | None:
    """A detected face as JSON: its box and landmarks in the photo's pixels."""
    if face is None:
        return None
    return {
        "box": [round(v, 1) for v in face.box],
        "score": round(face.score, 3),
        "landmarks": [[round(x, 1), round(y, 1)] for x, y in face.landmarks.tolist()],
    }


def _write_jsonl(stream: TextIO, result: EmbeddingResult) -> None:
    lines: Iterable[str] = (
        json.dumps(
            {"path": source, **({"face": face_json(face)} if face is not None else {}), "embedding": row}
        )
        for source, face, row in zip(result.sources, result.faces, result.embeddings.tolist())
    )
    for line in lines:
        stream.write(line + "\n")
    stream.flush()
