"""Face-like embeddings for sizing and testing a gallery index without photos.

Real face embeddings are crowded: every face shares one mean direction, and two different
people typically sit at cosine ~0.84 (dlib's 128-dim vectors of real photos). On random,
well-separated vectors every approximate index looks perfect, so recall must be measured
on vectors like these. Each identity is a centre drawn around a shared
mean direction with an anisotropic Gaussian spread (variance decaying like 1/√k over a
random basis); each photo adds its own noise of the same shape. With the defaults two
people's photos meet at cosine ~0.84 (spread ±0.016 at 320 dims) and two photos of one
person at ~0.95. A Gaussian has no clusters beyond its covariance, so these vectors are
a pessimistic stand-in for real embeddings, which also group by age, pose and the like:
recall measured here is meant as a conservative estimate (not checked against real
vectors at scale).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Shares of a unit photo vector: the shared mean direction, the identity, the photo.
MEAN_SHARE, IDENTITY_SHARE, PHOTO_SHARE = 0.84, 0.11, 0.05


@dataclass(frozen=True)
class FaceSpace:
    """A fixed shared mean and spread from which identities and their photos are drawn.

    Args:
        dim: embedding dimension.
        seed: the same seed gives the same space (and so comparable galleries and probes).
    """

    dim: int
    seed: int = 0

    def _basis(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        mean = rng.normal(size=self.dim)
        mean /= np.linalg.norm(mean)
        # variance decaying like 1/sqrt(k) over a random orthonormal basis: a few strong directions
        scales = np.arange(1, self.dim + 1) ** -0.25
        scales *= np.sqrt(self.dim / np.sum(scales**2))
        rotation, _ = np.linalg.qr(rng.normal(size=(self.dim, self.dim)))
        return mean, scales[:, None] * rotation.T

    def identities(self, count: int, seed: int) -> np.ndarray:
        """``[count, dim]`` identity centres (not unit; pass them to :meth:`photos`)."""
        mean, shape = self._basis()
        rng = np.random.default_rng(seed)
        spread = _spread(rng, count, shape) * np.sqrt(IDENTITY_SHARE)
        return (np.sqrt(MEAN_SHARE) * mean + spread).astype(np.float32)

    def photos(self, centres: np.ndarray, seed: int) -> np.ndarray:
        """One unit-length photo embedding per centre (a fresh photo on every call)."""
        _, shape = self._basis()
        rng = np.random.default_rng(seed)
        rows = centres + _spread(rng, len(centres), shape) * np.sqrt(PHOTO_SHARE)
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        return rows.astype(np.float32)


def _spread(rng: np.random.Generator, count: int, shape: np.ndarray) -> np.ndarray:
    """Zero-mean rows of expected squared length 1, shaped by ``shape``, in chunks to bound memory."""
    dim = shape.shape[0]
    out = np.empty((count, dim), dtype=np.float32)
    for start in range(0, count, 65536):
        rows = rng.standard_normal((min(65536, count - start), dim), dtype=np.float32)
        out[start : start + len(rows)] = rows @ shape.astype(np.float32) / np.sqrt(dim)
    return out
