"""ROC curves and operating points: what a threshold does to genuine and impostor pairs.

Convention everywhere: a pair is accepted as the same person when ``score >= threshold``
(scores are cosine similarities, higher = more alike). FAR is the fraction of impostor
pairs accepted, FRR the fraction of genuine pairs rejected, TAR = 1 - FRR. Choosing a
threshold (:mod:`faceverify.compare.calibration`) and reporting on one
(:mod:`faceverify.evaluate.metrics`) both stand on these functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from faceverify.errors import MetricsError


@dataclass(frozen=True)
class Roc:
    """The ROC curve at every distinct threshold, from strictest to most lenient.

    The first point has threshold +inf (nothing accepted: FAR = TAR = 0).
    """

    far: np.ndarray
    tar: np.ndarray
    thresholds: np.ndarray


@dataclass(frozen=True)
class OperatingPoint:
    """What a threshold gives on a set of pairs."""

    threshold: float
    far: float
    frr: float

    def to_dict(self) -> dict[str, float]:
        return {"threshold": self.threshold, "far": self.far, "frr": self.frr, "tar": 1.0 - self.frr}


def check_scores(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert: finite float scores, 0/1 labels of both kinds."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1)
    if s.shape != y.shape:
        raise MetricsError(f"{s.size} scores but {y.size} labels; give one label per score")
    if s.size == 0:
        raise MetricsError("no scored pairs to evaluate")
    bad = np.flatnonzero(~np.isfinite(s))
    if bad.size:
        raise MetricsError(
            f"{bad.size} scores are NaN or infinite (positions {bad[:5].tolist()}); "
            "check the embeddings of those pairs"
        )
    if not np.isin(y, (0, 1)).all():
        raise MetricsError(f"labels must be 0 (different) or 1 (same); got {sorted(set(y.tolist()))[:5]}")
    y = y.astype(np.int8)
    positives = int(y.sum())
    if positives in (0, y.size):
        kind = "genuine (label 1)" if positives else "impostor (label 0)"
        raise MetricsError(
            f"all {y.size} pairs are {kind}; ROC, AUC and EER need both genuine and impostor pairs"
        )
    return s, y


def roc_curve(scores: Any, labels: Any) -> Roc:
    """ROC at every distinct score; tied scores move together, as they must."""
    s, y = check_scores(scores, labels)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    # the last index of each run of equal scores: accepting at that score accepts the run
    ends = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    true_accepts = np.cumsum(y)[ends]
    false_accepts = (ends + 1) - true_accepts
    positives, negatives = int(y.sum()), int(y.size - y.sum())
    return Roc(
        far=np.r_[0.0, false_accepts / negatives],
        tar=np.r_[0.0, true_accepts / positives],
        thresholds=np.r_[np.inf, s[ends]],
    )


def roc_auc(roc: Roc) -> float:
    """Area under the ROC curve (trapezoids, so ties count one half)."""
    # the trapezoid rule written out: np.trapezoid needs NumPy 2 and np.trapz left in 2.4
    return float(np.sum(np.diff(roc.far) * (roc.tar[1:] + roc.tar[:-1])) / 2)


def equal_error_rate(roc: Roc) -> OperatingPoint:
    """The EER, interpolated where FAR and FRR cross, with the nearest real threshold."""
    frr = 1.0 - roc.tar
    gap = frr - roc.far  # falls from 1 to -1 as the threshold loosens
    i = int(np.flatnonzero(gap <= 0)[0])
    j = max(i - 1, 0)
    span = gap[j] - gap[i]
    alpha = gap[j] / span if span > 0 else 0.0
    eer = float(roc.far[j] + alpha * (roc.far[i] - roc.far[j]))
    nearest = i if abs(gap[i]) <= abs(gap[j]) or not np.isfinite(roc.thresholds[j]) else j
    return OperatingPoint(threshold=float(roc.thresholds[nearest]), far=eer, frr=eer)


def point_at_far(roc: Roc, target: float, negatives: int) -> OperatingPoint | None:
    """The most lenient threshold whose FAR does not exceed ``target``, or None.

    None means there are too few impostor pairs for that FAR to be measured: with N
    impostors the smallest non-zero FAR is 1/N, so at least ``ceil(1/target)`` are needed.
    """
    if negatives < needed_impostors(target):
        return None
    i = int(np.flatnonzero(roc.far <= target + 1e-12)[-1])
    if not np.isfinite(roc.thresholds[i]):
        i = 1  # nothing accepted at +inf: the strictest real threshold is the honest answer
    return OperatingPoint(
        threshold=float(roc.thresholds[i]), far=float(roc.far[i]), frr=float(1 - roc.tar[i])
    )


def needed_impostors(target: float) -> int:
    return math.ceil(1.0 / target - 1e-9)


def operating_point(scores: Any, labels: Any, threshold: float) -> OperatingPoint:
    """FAR and FRR that ``threshold`` gives on these pairs."""
    s, y = check_scores(scores, labels)
    accepted = s >= threshold
    return OperatingPoint(
        threshold=float(threshold),
        far=float(accepted[y == 0].mean()),
        frr=float((~accepted[y == 1]).mean()),
    )
