"""Blocks of figures in an evaluation report: all pairs, usable pairs, and each group.

One function computes every block, so the figures of a ``--by`` group are exactly those of
evaluating its rows alone. A block may be too small for some figures (a group of genuine
pairs only has no ROC); those read null with the reason in ``unmeasured`` rather than
failing the run, because one thin group must not hide the figures of the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from faceverify.compare.roc import operating_point
from faceverify.errors import ConfigError
from faceverify.evaluate.metrics import verification_metrics
from faceverify.evaluate.pairs import PairSet
from faceverify.evaluate.scoring import FAILED_SCORE, CountedPairs, ScoredPairs

#: The figures that need both genuine and impostor pairs.
ROC_FIGURES = ("roc_auc", "eer", "accuracy_10fold", "tar_at_far")


def figures(scores: Any, labels: Any, threshold: float, *, failed: int | None = None) -> dict[str, Any]:
    """Pair counts, every verification figure, and the operating point at ``threshold``.

    Args:
        failed: how many of these pairs are failures scored :data:`FAILED_SCORE`; shown
            when given (blocks of usable pairs have none to show).
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.int8).reshape(-1)
    genuine = int(y.sum())
    impostor = int(y.size) - genuine
    block: dict[str, Any] = {"pairs": int(y.size), "genuine": genuine, "impostor": impostor}
    if failed is not None:
        block["failed"] = failed
    unmeasured: dict[str, str] = {}
    reason = _why_no_roc(genuine, impostor)
    if reason is None:
        block.update(verification_metrics(s, y))
    else:
        block.update(dict.fromkeys(ROC_FIGURES))
        unmeasured.update(dict.fromkeys(ROC_FIGURES, reason))
    block["operating_point"] = _operating_point(s, y, threshold, unmeasured)
    if unmeasured:
        block["unmeasured"] = unmeasured
    return block


def _why_no_roc(genuine: int, impostor: int) -> str | None:
    if genuine and impostor:
        return None
    if not genuine and not impostor:
        return "no pairs"
    return f"needs both genuine and impostor pairs; has {genuine} genuine and {impostor} impostor"


def _operating_point(
    s: np.ndarray, y: np.ndarray, threshold: float, unmeasured: dict[str, str]
) -> dict[str, Any]:
    """FAR and FRR at the threshold; with one class only, the rate of the class there is."""
    if 0 < int(y.sum()) < y.size:
        return operating_point(s, y, threshold).to_dict()
    accepted = s >= threshold
    far = float(accepted[y == 0].mean()) if (y == 0).any() else None
    frr = float((~accepted[y == 1]).mean()) if (y == 1).any() else None
    if far is None:
        unmeasured["operating_point.far"] = "no impostor pairs to accept"
    if frr is None:
        unmeasured["operating_point.frr"] = "no genuine pairs to reject"
    return {"threshold": float(threshold), "far": far, "frr": frr, "tar": None if frr is None else 1.0 - frr}


def failed_pairs(scored: ScoredPairs) -> dict[str, Any]:
    """How many pairs had an image that could not be embedded, by kind of failure."""
    return {"total": len(scored.failed), "by_kind": scored.failure_counts(), "score": FAILED_SCORE}


def check_group_columns(pairs: PairSet, by: Sequence[str]) -> list[str]:
    """The columns to group by, each once; a one-line error for a column the file lacks,
    naming those it has (checked before the slow part: embedding every image)."""
    for column in by:
        if column in pairs.columns:
            continue
        if pairs.format != "csv":
            raise ConfigError(
                f"cannot group by {column!r}: '{pairs.source}' is a {pairs.format} pairs file, "
                "which has no extra columns; grouping needs a CSV pairs file"
            )
        there = ", ".join(pairs.columns) or "none besides the images and the label"
        raise ConfigError(f"cannot group by {column!r}: no such column in '{pairs.source}'; columns: {there}")
    return list(dict.fromkeys(by))


def group_figures(counted: CountedPairs, column: str, threshold: float) -> dict[str, dict[str, Any]]:
    """Every figure (failures counted) per value of ``column``, values in sorted order."""
    values = np.array([pair.tags.get(column, "") for pair in counted.pairs], dtype=object)
    labels = counted.labels
    groups: dict[str, dict[str, Any]] = {}
    for value in sorted(set(values.tolist())):
        rows = values == value
        failed = int(counted.failed[rows].sum())
        groups[value] = figures(counted.scores[rows], labels[rows], threshold, failed=failed)
    return groups
