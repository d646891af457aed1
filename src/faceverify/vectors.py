"""Embedding vectors in numpy: the one L2 normalisation every layer uses.

Cosine similarity is the dot product of unit vectors; the runtimes (flip augmentation),
embedding (``normalize=True``) and comparison all scale rows to unit length here, the
same way, so that a zero vector stays zero instead of becoming NaN.
"""

from __future__ import annotations

import numpy as np

#: Norms below this count as zero.
EPS = 1e-12


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Each row (or the vector) scaled to unit length, float32; zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    unit: np.ndarray = x / np.maximum(norm, EPS)
    return unit
