"""Comparing embeddings: cosine similarity, higher means more alike, everywhere."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, Union

import numpy as np

from faceverify.errors import InputError
from faceverify.runtime.threshold import DEFAULT, Threshold, resolve_threshold
from faceverify.vectors import EPS as _EPS
from faceverify.vectors import l2_normalize

if TYPE_CHECKING:
    import torch

    from faceverify.runtime.base import Embedder

ArrayT = TypeVar("ArrayT", "np.ndarray", "torch.Tensor")
Vectors = Union["np.ndarray", "torch.Tensor"]


@dataclass(frozen=True)
class Verification:
    """The outcome of comparing two faces.

    Attributes:
        score: cosine similarity of the two embeddings, in [-1, 1].
        threshold: the threshold value the decision used.
        same: whether ``score >= threshold`` (the faces are judged the same person).
        threshold_source: where the threshold came from (``given``, ``calibrated``,
            ``checkpoint``, ``published`` or ``default``).
    """

    score: float
    threshold: float
    same: bool
    threshold_source: str = DEFAULT.source.value

    @classmethod
    def decide(cls, score: float, threshold: Threshold) -> Verification:
        return cls(score, threshold.value, score >= threshold.value, threshold.source.value)

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "threshold": self.threshold,
            "threshold_source": self.threshold_source,
            "same": self.same,
        }


def cosine_similarity(a: ArrayT, b: ArrayT) -> ArrayT:
    """Row-by-row cosine similarity of two sets of embeddings.

    Args:
        a: ``[D]`` or ``[N, D]`` embeddings (numpy or torch).
        b: ``[D]`` or ``[N, D]``; a single vector is compared with every row of the other.

    Returns:
        ``[N]`` similarities (a 0-d value for two vectors), the same type as the inputs.
        Zero vectors score 0 against anything.
    """
    lib = _lib(a, b)
    a_n, b_n = _unit(a, lib), _unit(b, lib)
    _check_dims(a_n, b_n)
    if a_n.ndim == 2 and b_n.ndim == 2 and a_n.shape[0] != b_n.shape[0]:
        raise InputError(
            f"cannot pair {a_n.shape[0]} embeddings with {b_n.shape[0]}; give equal counts, "
            "or use similarity_matrix() for all-against-all"
        )
    similarity: ArrayT = (a_n * b_n).sum(-1)
    return similarity


def similarity_matrix(a: ArrayT, b: ArrayT | None = None) -> ArrayT:
    """All-against-all cosine similarities.

    Args:
        a: ``[N, D]`` embeddings (or ``[D]``).
        b: ``[M, D]`` embeddings; None compares ``a`` with itself.

    Returns:
        ``[N, M]`` similarities, the same type as the inputs.
    """
    other = a if b is None else b
    lib = _lib(a, other)
    a_n, b_n = _unit(a, lib), _unit(other, lib)
    _check_dims(a_n, b_n)
    a2 = a_n.reshape(1, -1) if a_n.ndim == 1 else a_n
    b2 = b_n.reshape(1, -1) if b_n.ndim == 1 else b_n
    matrix: ArrayT = a2 @ b2.T
    return matrix


def verify(
    a: Any,
    b: Any,
    threshold: float | None = None,
    *,
    model: Embedder | None = None,
) -> Verification:
    """Decide whether two faces belong to the same person.

    Args:
        a: an embedding (``[D]`` or ``[1, D]`` array or tensor, or a list of floats), or,
            with ``model``, an image in any form
            :func:`faceverify.compute_embedding` accepts.
        b: the same for the other face.
        threshold: the cosine similarity at or above which faces match. Leave it None to
            use the model's own (calibrated by ``faceverify calibrate``, carried by a model
            trained with faceverify, or the network's published rule; 0.5 otherwise: see
            :mod:`faceverify.runtime.threshold`). Higher thresholds mean fewer false
            accepts and more false rejects.
        model: needed when ``a`` or ``b`` are images (a photo with several faces gives
            its largest, with a warning), and to use its threshold.

    Returns:
        A :class:`Verification` with the score, the threshold used and the decision.
    """
    chosen = resolve_threshold(threshold, model)  # a bad threshold fails before any image is read
    ea, eb = _as_embedding(a, model, "a"), _as_embedding(b, model, "b")
    return Verification.decide(float(cosine_similarity(ea, eb)), chosen)


def _as_embedding(value: Any, model: Embedder | None, which: str) -> np.ndarray:
    array = _maybe_vector(value)
    if array is not None:
        return array
    if model is None:
        raise InputError(
            f"{which} is not an embedding ({type(value).__name__}); pass model= to verify images"
        )
    from faceverify.embed import compute_embedding

    embedding = compute_embedding(model, value)
    if embedding.shape[0] != 1:
        raise InputError(f"{which} holds {embedding.shape[0]} images; verify compares exactly two faces")
    return embedding[0]


def _maybe_vector(value: Any) -> np.ndarray | None:
    """A 1-D float vector (or ``[1, D]``) as numpy, else None (it is an image)."""
    if isinstance(value, (list, tuple)) and value and all(_is_number(x) for x in value):
        return np.asarray(value, dtype=np.float32)  # e.g. an embedding read back from JSONL
    if hasattr(value, "detach") and hasattr(value, "is_floating_point"):
        if not value.is_floating_point() or value.dim() > 2 or (value.dim() == 2 and value.shape[0] != 1):
            return None
        vector: np.ndarray = value.detach().float().cpu().numpy().reshape(-1)
        return vector
    is_float_array = isinstance(value, np.ndarray) and np.issubdtype(value.dtype, np.floating)
    if is_float_array and (value.ndim == 1 or (value.ndim == 2 and value.shape[0] == 1)):
        return np.asarray(value, dtype=np.float32).reshape(-1)
    return None


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _lib(a: Any, b: Any) -> str:
    kinds = {"torch" if hasattr(x, "detach") else "numpy" for x in (a, b)}
    if len(kinds) != 1:
        raise InputError("compare numpy arrays with numpy arrays and tensors with tensors")
    return kinds.pop()


def _unit(x: Any, lib: str) -> Any:
    if x.ndim not in (1, 2):
        raise InputError(f"embeddings must be [D] or [N, D]; got shape {tuple(x.shape)}")
    if lib == "torch":
        import torch.nn.functional as F

        return F.normalize(x.float(), dim=-1, eps=_EPS)
    return l2_normalize(x)


def _check_dims(a: Any, b: Any) -> None:
    if a.shape[-1] != b.shape[-1]:
        raise InputError(
            f"embedding sizes differ ({a.shape[-1]} vs {b.shape[-1]}); were they made by different models?"
        )
