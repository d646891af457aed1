"""Scoring pairs: each distinct image embedded once, in batches; bad images reported.

A pair whose image could not be embedded (unreadable, no face found...) has no score, but
it is not forgotten: :meth:`ScoredPairs.counted` gives it :data:`FAILED_SCORE`, below every
real cosine, so headline figures count it against the model as LFW's protocol does for
failures to detect. Otherwise a detector that misses the hard faces would make its model
look better by leaving the hard pairs out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from faceverify.errors import FailureKind
from faceverify.evaluate.pairs import Pair, PairSet

if TYPE_CHECKING:
    from pathlib import Path

    from faceverify.photos import FaceOptions
    from faceverify.runtime.base import Embedder

#: The score of a pair with a failed image: the lowest cosine, a certain non-match at
#: any threshold above it (genuine pairs become false rejects, impostors true rejects).
FAILED_SCORE = -1.0


@dataclass(frozen=True)
class FailedPair:
    """A pair left without a score; ``kind`` and ``reason`` are those of its first failed image."""

    pair: Pair
    kind: FailureKind
    reason: str


@dataclass(frozen=True)
class CountedPairs:
    """Every pair of a file in file order, failed ones scored :data:`FAILED_SCORE`."""

    pairs: list[Pair]
    scores: np.ndarray
    failed: np.ndarray  # bool, True where the pair's score is FAILED_SCORE for want of a real one

    @property
    def labels(self) -> np.ndarray:
        return labels_of(self.pairs)


@dataclass
class ScoredPairs:
    """Cosine similarities of the pairs whose two images could both be embedded
    (``pairs``, ``scores``), and the pairs that could not be scored (``failed``)."""

    pairs: list[Pair]
    scores: np.ndarray
    problems: list[str] = field(default_factory=list)
    failed: list[FailedPair] = field(default_factory=list)

    @property
    def labels(self) -> np.ndarray:
        return labels_of(self.pairs)

    def counted(self) -> CountedPairs:
        """All pairs, failures included at :data:`FAILED_SCORE`, in file order (so that
        fold assignment, hence cross-validated accuracy, matches scoring the rows alone)."""
        rows = [(p, float(s), False) for p, s in zip(self.pairs, self.scores.tolist())]
        rows += [(f.pair, FAILED_SCORE, True) for f in self.failed]
        rows.sort(key=lambda row: row[0].line)
        return CountedPairs(
            pairs=[row[0] for row in rows],
            scores=np.array([row[1] for row in rows], dtype=np.float64),
            failed=np.array([row[2] for row in rows], dtype=bool),
        )

    def failure_counts(self) -> dict[str, int]:
        """Failed pairs by :class:`~faceverify.errors.FailureKind` value, most frequent first."""
        return dict(Counter(str(f.kind) for f in self.failed).most_common())


def labels_of(pairs: Sequence[Pair]) -> np.ndarray:
    return np.array([p.label for p in pairs], dtype=np.int8)


def score_pairs(
    model: Embedder,
    pair_set: PairSet,
    *,
    batch_size: int = 32,
    progress: bool | None = None,
    faces: FaceOptions | None = None,
) -> ScoredPairs:
    """Embed every distinct image once and score every pair whose images both embedded;
    the others are listed in ``failed`` (and ``problems``) with the kind of failure.

    ``faces`` says how faces are found in the images, as for :func:`faceverify.embed_images`
    (default: detect and align exactly when the model needs aligned faces).
    """
    from faceverify.embed import Failure, embed_images

    images = pair_set.images()
    result = embed_images(
        model, [str(p) for p in images], batch_size=batch_size, normalize=True, progress=progress, faces=faces
    )
    vectors = result.embeddings
    row = {images[index]: r for r, index in enumerate(result.indices)}
    failures: dict[Path, Failure] = {images[f.index]: f for f in result.failures}
    problems = list(pair_set.problems)
    kept: list[Pair] = []
    failed: list[FailedPair] = []
    for pair in pair_set.pairs:
        bad = [(p, failures[p]) for p in (pair.a, pair.b) if p in failures]
        if bad:
            named = " and ".join(f"{p} ({f.reason})" for p, f in bad)
            problems.append(f"line {pair.line}: image {named} could not be used")
            failed.append(FailedPair(pair, bad[0][1].kind, bad[0][1].reason))
        else:
            kept.append(pair)
    a = vectors[[row[p.a] for p in kept]] if kept else np.empty((0, model.embedding_dim))
    b = vectors[[row[p.b] for p in kept]] if kept else np.empty((0, model.embedding_dim))
    scores = (a * b).sum(axis=1).astype(np.float64)
    return ScoredPairs(pairs=kept, scores=scores, problems=problems, failed=failed)
