"""Scoring pairs: each distinct image embedded once, in batches; bad images reported."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from faceverify.evaluate.pairs import Pair, PairSet

if TYPE_CHECKING:
    from faceverify.photos import FaceOptions
    from faceverify.runtime.base import Embedder


@dataclass
class ScoredPairs:
    """Cosine similarities of the pairs whose two images could both be embedded."""

    pairs: list[Pair]
    scores: np.ndarray
    problems: list[str] = field(default_factory=list)

    @property
    def labels(self) -> np.ndarray:
        return np.array([p.label for p in self.pairs], dtype=np.int8)


def score_pairs(
    model: Embedder,
    pair_set: PairSet,
    *,
    batch_size: int = 32,
    progress: bool | None = None,
    faces: FaceOptions | None = None,
) -> ScoredPairs:
    """Embed every distinct image once and score every pair whose images both embedded.

    ``faces`` says how faces are found in the images, as for :func:`faceverify.embed_images`
    (default: detect and align exactly when the model needs aligned faces).
    """
    from faceverify.embed import embed_images

    images = pair_set.images()
    result = embed_images(
        model, [str(p) for p in images], batch_size=batch_size, normalize=True, progress=progress, faces=faces
    )
    vectors = result.embeddings.numpy()
    row = {images[index]: r for r, index in enumerate(result.indices)}
    failed = {images[f.index]: f.reason for f in result.failures}
    problems = list(pair_set.problems)
    kept: list[Pair] = []
    for pair in pair_set.pairs:
        bad = [f"{p} ({failed[p]})" for p in (pair.a, pair.b) if p in failed]
        if bad:
            problems.append(f"line {pair.line}: image {' and '.join(bad)} could not be used")
        else:
            kept.append(pair)
    a = vectors[[row[p.a] for p in kept]] if kept else np.empty((0, model.embedding_dim))
    b = vectors[[row[p.b] for p in kept]] if kept else np.empty((0, model.embedding_dim))
    return ScoredPairs(pairs=kept, scores=(a * b).sum(axis=1).astype(np.float64), problems=problems)
