"""Each face's nearest faces: exact, never itself, the same with and without faiss."""

from __future__ import annotations

import numpy as np
import pytest

from faceverify.cluster import neighbours as module
from faceverify.cluster.neighbours import nearest, neighbours_of
from faceverify.gallery.synthetic_vectors import FaceSpace


def _vectors(n: int) -> np.ndarray:
    space = FaceSpace(64, seed=4)
    return space.photos(space.identities(n, 5), 6)


def _brute(vectors: np.ndarray, k: int) -> np.ndarray:
    scores = vectors @ vectors.T
    np.fill_diagonal(scores, -np.inf)
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("faiss", [True, False])
def test_nearest_is_exact_and_leaves_each_face_out(faiss: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    vectors = _vectors(1500)
    monkeypatch.setattr(module, "BLOCK", 256)  # several blocks, and faiss used above one
    if not faiss:
        monkeypatch.setattr(module, "_search", module._blocks)  # numpy blocks, as without faiss
    elif not module.INDEX.installed():
        pytest.skip("faiss is not installed")
    found, scores = nearest(vectors, k=10)
    assert not (found == np.arange(len(vectors))[:, None]).any()
    expected = _brute(vectors, 10)
    assert (found == expected).mean() > 0.999  # ties may order differently
    assert np.all(np.diff(scores, axis=1) <= 1e-6)
    np.testing.assert_allclose(
        scores[:, 0], np.sort(vectors @ vectors.T - 2 * np.eye(len(vectors)), axis=1)[:, -1], atol=1e-5
    )


def test_fewer_faces_than_asked_pad_with_minus_one() -> None:
    vectors = _vectors(4)
    found, scores = nearest(vectors, k=6)
    assert (found[:, :3] >= 0).all() and (found[:, 3:] == -1).all()
    assert np.isneginf(scores[:, 3:]).all()
    empty, _ = nearest(vectors[:0], k=3)
    assert empty.shape == (0, 3)


def test_neighbours_of_some_rows_only() -> None:
    vectors = _vectors(50)
    rows = np.array([3, 17, 40])
    table = neighbours_of(vectors, rows, k=5)
    assert (table[np.setdiff1d(np.arange(50), rows)] == -1).all()
    np.testing.assert_array_equal(table[rows], _brute(vectors, 5)[rows])
