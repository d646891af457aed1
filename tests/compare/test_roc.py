"""ROC curves and operating points: agreement with scikit-learn, and ties."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sklearn_roc

from faceverify.compare.roc import operating_point, roc_auc, roc_curve


@pytest.mark.parametrize("seed", range(12))
def test_roc_and_auc_equal_scikit_learn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(10, 400))
    scores = np.round(rng.normal(size=n), int(rng.integers(0, 3)))  # rounding makes many ties
    labels = rng.integers(0, 2, n)
    labels[:2] = (0, 1)
    roc = roc_curve(scores, labels)
    far, tar, thresholds = sklearn_roc(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(roc.far, far)
    np.testing.assert_allclose(roc.tar, tar)
    np.testing.assert_allclose(roc.thresholds[1:], thresholds[1:])
    assert roc_auc(roc) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_operating_point_counts_ties_as_accepted() -> None:
    point = operating_point([0.5, 0.5, 0.2, 0.9], [0, 1, 0, 1], threshold=0.5)
    assert (point.far, point.frr) == (0.5, 0.0)
