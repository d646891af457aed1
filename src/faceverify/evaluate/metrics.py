"""Verification metrics from scores and labels: ROC AUC, EER, TAR@FAR, k-fold accuracy.

The ROC curve and its operating points come from :mod:`faceverify.compare.roc`, the same
functions that choose a calibrated threshold; here they are gathered into the numbers an
evaluation reports.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from faceverify.compare.roc import (
    check_scores,
    equal_error_rate,
    needed_impostors,
    point_at_far,
    roc_auc,
    roc_curve,
)
from faceverify.errors import MetricsError

#: Targets reported by default; each needs at least 1/FAR impostor pairs to be measured.
DEFAULT_FARS = (1e-1, 1e-2, 1e-3, 1e-4)


def best_accuracy_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The threshold maximising accuracy on these pairs, and that accuracy."""
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    ends = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    accepted_genuine = np.cumsum(y)[ends]
    accepted_impostor = (ends + 1) - accepted_genuine
    negatives = int(y.size - y.sum())
    # correct = genuine accepted + impostors rejected; also consider accepting nothing
    correct = np.r_[negatives, accepted_genuine + (negatives - accepted_impostor)]
    best = int(np.argmax(correct))
    if best == 0:
        return float(np.nextafter(s[0], np.inf)), correct[0] / y.size
    threshold = s[ends[best - 1]]
    below = s[ends[best - 1] + 1] if ends[best - 1] + 1 < s.size else threshold - 1.0
    # the midpoint between the last accepted and first rejected score generalises better
    return float((threshold + below) / 2), float(correct[best] / y.size)


def kfold_accuracy(scores: Any, labels: Any, folds: int = 10, seed: int = 0) -> dict[str, Any]:
    """Accuracy with the threshold chosen on k-1 folds and measured on the held-out one.

    Returns:
        ``mean``, ``std`` and per-fold ``accuracies`` and ``thresholds``; ``folds`` used.
    """
    s, y = check_scores(scores, labels)
    k = min(folds, s.size)
    if k < 2:
        raise MetricsError(f"{s.size} pairs are too few for cross-validated accuracy; need at least 2")
    parts = np.array_split(np.random.default_rng(seed).permutation(s.size), k)
    accuracies, thresholds = [], []
    for i, test in enumerate(parts):
        train = np.concatenate([p for j, p in enumerate(parts) if j != i])
        threshold, _ = best_accuracy_threshold(s[train], y[train])
        accuracies.append(float(((s[test] >= threshold) == (y[test] == 1)).mean()))
        thresholds.append(threshold)
    return {
        "folds": k,
        "mean": float(np.mean(accuracies)),
        "std": float(np.std(accuracies)),
        "accuracies": accuracies,
        "thresholds": thresholds,
    }


def verification_metrics(scores: Any, labels: Any, fars: tuple[float, ...] = DEFAULT_FARS) -> dict[str, Any]:
    """Every verification number for one set of scored pairs, JSON-ready."""
    s, y = check_scores(scores, labels)
    roc = roc_curve(s, y)
    negatives = int((y == 0).sum())
    tar_at_far: dict[str, Any] = {}
    for far in fars:
        point = point_at_far(roc, far, negatives)
        tar_at_far[f"{far:g}"] = (
            point.to_dict()
            if point is not None
            else {"unmeasured": f"needs at least {needed_impostors(far)} impostor pairs, have {negatives}"}
        )
    return {
        "pairs": int(s.size),
        "genuine": int(y.sum()),
        "impostor": negatives,
        "roc_auc": roc_auc(roc),
        "eer": equal_error_rate(roc).to_dict(),
        "accuracy_10fold": kfold_accuracy(s, y),
        "tar_at_far": tar_at_far,
    }
