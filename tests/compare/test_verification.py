"""Cosine similarity (one convention, both libraries) and the verification decision."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from faceverify import DEFAULT_THRESHOLD, cosine_similarity, similarity_matrix, verify
from faceverify.errors import ConfigError, InputError
from faceverify.runtime.threshold import Threshold, ThresholdSource


def _reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([x @ y / (np.linalg.norm(x) * np.linalg.norm(y)) for x, y in zip(a, b)])


def test_rowwise_similarity_in_numpy_and_torch_agree_with_the_definition() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 8)).astype(np.float32), rng.normal(size=(5, 8)).astype(np.float32)
    expected = _reference(a, b)
    np.testing.assert_allclose(cosine_similarity(a, b), expected, rtol=1e-5)
    ours = cosine_similarity(torch.from_numpy(a), torch.from_numpy(b))
    assert isinstance(ours, torch.Tensor)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(cosine_similarity(a[0], b), _reference(np.repeat(a[:1], 5, 0), b), rtol=1e-5)
    assert cosine_similarity(a[0], a[0]) == pytest.approx(1.0)
    assert cosine_similarity(a[0], -a[0]) == pytest.approx(-1.0)


def test_matrix_is_all_against_all() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(3, 8)), rng.normal(size=(4, 8))
    matrix = similarity_matrix(a, b)
    assert matrix.shape == (3, 4)
    assert matrix[2, 1] == pytest.approx(_reference(a[2:3], b[1:2])[0], rel=1e-5)
    np.testing.assert_allclose(np.diag(similarity_matrix(a)), 1.0, rtol=1e-5)
    assert similarity_matrix(torch.tensor(a), torch.tensor(b)).shape == (3, 4)


def test_zero_vectors_score_zero_and_mismatches_are_refused() -> None:
    assert cosine_similarity(np.zeros(4), np.ones(4)) == 0.0
    with pytest.raises(InputError, match=r"embedding sizes differ \(4 vs 5\)"):
        cosine_similarity(np.ones(4), np.ones(5))
    with pytest.raises(InputError, match="cannot pair 2 embeddings with 3"):
        cosine_similarity(np.ones((2, 4)), np.ones((3, 4)))
    with pytest.raises(InputError, match="numpy arrays with numpy arrays"):
        cosine_similarity(np.ones(4), torch.ones(4))
    with pytest.raises(InputError, match=r"\[D\] or \[N, D\]"):
        similarity_matrix(np.ones((2, 2, 2)))


def test_threshold_precedence_explicit_then_model_then_default(atto_model: Any) -> None:
    a, b = np.array([1.0, 0.0]), np.array([0.6, 0.8])  # cosine 0.6
    assert verify(a, b).threshold == DEFAULT_THRESHOLD == 0.5
    assert verify(a, b).threshold_source == "default"
    assert verify(a, b).same
    assert not verify(a, b, threshold=0.7).same
    assert verify(a, b, threshold=0.7).threshold_source == "given"
    own = atto_model.threshold
    atto_model.threshold = Threshold(0.65, ThresholdSource.CALIBRATED)
    try:
        outcome = verify(a, b, model=atto_model)
        assert (outcome.threshold, outcome.threshold_source, outcome.same) == (0.65, "calibrated", False)
        assert verify(a, b, 0.6, model=atto_model).same  # at the threshold counts as the same
    finally:
        atto_model.threshold = own
    with pytest.raises(ConfigError, match="use a value in"):
        verify(a, b, threshold=1.5)


def test_verify_images_with_a_model(atto_model: Any, face_dir: Path) -> None:
    same = verify(face_dir / "face0.png", face_dir / "face0.png", model=atto_model)
    assert same.score == pytest.approx(1.0, abs=1e-5)
    assert same.same
    other = verify(face_dir / "face0.png", face_dir / "face1.png", model=atto_model)
    assert other.score < 1.0
    assert other.to_dict().keys() == {"score", "threshold", "threshold_source", "same"}
    as_lists = verify([1.0, 0.0], [0.6, 0.8])  # embeddings read back from JSONL
    assert as_lists.score == pytest.approx(0.6)
    with pytest.raises(InputError, match="pass model= to verify images"):
        verify(face_dir / "face0.png", np.ones(320))


def test_the_facade_exports_functions_not_same_named_modules() -> None:
    import faceverify
    import faceverify.compare.verification  # importing a submodule must not shadow the facade

    for name in ("verify", "compute_embedding", "build_model", "cosine_similarity", "load_image"):
        assert callable(getattr(faceverify, name)) and not isinstance(
            getattr(faceverify, name), type(faceverify)
        )
