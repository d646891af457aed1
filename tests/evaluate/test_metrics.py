"""Verification metrics: closed forms, cross-validated accuracy, and edge cases."""

from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pytest

from faceverify.compare.roc import equal_error_rate, point_at_far, roc_auc, roc_curve
from faceverify.errors import MetricsError
from faceverify.evaluate.metrics import best_accuracy_threshold, kfold_accuracy, verification_metrics

PHI = NormalDist()


@pytest.fixture(scope="module")
def gaussian() -> tuple[np.ndarray, np.ndarray]:
    """Genuine ~ N(1, 1), impostor ~ N(0, 1): every metric has a closed form."""
    rng = np.random.default_rng(7)
    n = 40_000
    scores = np.r_[rng.normal(1.0, 1.0, n), rng.normal(0.0, 1.0, n)]
    return scores, np.r_[np.ones(n, dtype=int), np.zeros(n, dtype=int)]


def test_gaussian_scores_match_closed_forms(gaussian: tuple[np.ndarray, np.ndarray]) -> None:
    scores, labels = gaussian
    m = verification_metrics(scores, labels)
    # AUC = P(genuine > impostor) = Phi(d / sqrt(2)); standard error here is about 0.002
    assert m["roc_auc"] == pytest.approx(PHI.cdf(1 / 2**0.5), abs=0.008)
    # equal variances: FAR = FRR at the midpoint, EER = Phi(-d/2), threshold 0.5
    assert m["eer"]["far"] == pytest.approx(PHI.cdf(-0.5), abs=0.008)
    assert m["eer"]["threshold"] == pytest.approx(0.5, abs=0.03)
    assert m["accuracy_10fold"]["mean"] == pytest.approx(1 - PHI.cdf(-0.5), abs=0.008)
    for far in (1e-1, 1e-2):
        expected = 1 - PHI.cdf(PHI.inv_cdf(1 - far) - 1.0)
        got = m["tar_at_far"][f"{far:g}"]
        assert got["far"] <= far
        assert got["tar"] == pytest.approx(expected, abs=0.015)
    assert "unmeasured" not in m["tar_at_far"]["0.0001"]  # 40,000 impostors suffice


def test_perfect_and_useless_scores() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1])
    perfect = verification_metrics(np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9]), labels)
    assert perfect["roc_auc"] == 1.0
    assert perfect["eer"]["far"] == 0.0
    assert perfect["accuracy_10fold"]["mean"] == 1.0
    ties = roc_curve(np.full(6, 0.4), labels)
    assert roc_auc(ties) == 0.5
    assert equal_error_rate(ties).far == pytest.approx(0.5)
    reversed_scores = verification_metrics(np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1]), labels)
    assert reversed_scores["roc_auc"] == 0.0


def test_tar_at_far_needs_enough_impostors() -> None:
    scores = np.r_[np.linspace(0.5, 1, 50), np.linspace(0, 0.6, 50)]
    labels = np.r_[np.ones(50, dtype=int), np.zeros(50, dtype=int)]
    m = verification_metrics(scores, labels)
    assert m["tar_at_far"]["0.1"]["far"] <= 0.1
    assert m["tar_at_far"]["0.01"] == {"unmeasured": "needs at least 100 impostor pairs, have 50"}
    assert point_at_far(roc_curve(scores, labels), 0.01, negatives=50) is None
    assert point_at_far(roc_curve(scores, labels), 0.02, negatives=50) is not None


def test_best_accuracy_threshold_beats_every_candidate() -> None:
    rng = np.random.default_rng(3)
    scores, labels = rng.normal(size=200), rng.integers(0, 2, 200).astype(np.int8)
    scores[labels == 1] += 1
    threshold, accuracy = best_accuracy_threshold(scores, labels)
    assert ((scores >= threshold) == (labels == 1)).mean() == pytest.approx(accuracy)
    brute = max(((scores >= t) == (labels == 1)).mean() for t in np.r_[scores, np.inf])
    assert accuracy == pytest.approx(brute)


def test_kfold_accuracy_is_reproducible_and_uses_the_folds_it_can() -> None:
    rng = np.random.default_rng(4)
    scores, labels = rng.normal(size=100), rng.integers(0, 2, 100)
    assert kfold_accuracy(scores, labels) == kfold_accuracy(scores, labels)
    assert len(kfold_accuracy(scores, labels)["accuracies"]) == 10
    assert kfold_accuracy(scores[:4], np.array([0, 1, 0, 1]))["folds"] == 4


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        ([0.1, 0.2], [1, 1], "all 2 pairs are genuine"),
        ([0.1, 0.2], [0, 0], "all 2 pairs are impostor"),
        ([0.1, float("nan"), 0.3], [0, 1, 1], r"1 scores are NaN or infinite \(positions \[1\]\)"),
        ([0.1, 0.2], [0, 1, 1], "2 scores but 3 labels"),
        ([0.1, 0.2], [0, 2], "labels must be 0"),
        ([], [], "no scored pairs"),
    ],
)
def test_unusable_inputs_get_clear_errors(scores: list[float], labels: list[int], message: str) -> None:
    with pytest.raises(MetricsError, match=message):
        verification_metrics(scores, labels)
