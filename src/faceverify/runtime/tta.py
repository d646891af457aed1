"""Flip test-time augmentation: a face and its mirror image, embedded together.

A face model sees a face from one side; its mirror image is the same person seen the
other way, and the sum of the two unit vectors is steadier than either (pose, lighting
and the network's own left/right habits average out). Both go through the network in
one batch of twice the size, so the cost is one pass of 2N rather than two passes. The
vectors differ from the model's plain ones: a gallery and a calibrated threshold record
the augmentation (:class:`~faceverify.runtime.identity.ModelIdentity` ``tta``) and refuse
to mix them.
"""

from __future__ import annotations

import numpy as np

from faceverify.checks import check_choice
from faceverify.runtime.base import Embedder, WrappedEmbedder

#: The augmentations offered ("" is none).
TTA_MODES = ("flip",)


class FlipEmbedder(WrappedEmbedder):
    """``inner`` with every face embedded as the normalised sum of it and its mirror.

    It reports ``inner``'s name, contract, weights and threshold; its identity adds
    ``tta="flip"``.
    """

    def __init__(self, inner: Embedder) -> None:
        super().__init__(inner)
        self.tta = "flip"

    def embed(self, batch: np.ndarray) -> np.ndarray:
        from faceverify.vectors import l2_normalize

        both = self.inner.embed(np.concatenate([batch, batch[..., ::-1]]))  # mirror the width axis
        count = len(batch)
        summed: np.ndarray = l2_normalize(both[:count]) + l2_normalize(both[count:])
        return summed


def with_tta(model: Embedder, tta: str | None) -> Embedder:
    """``model`` with the augmentation ``tta`` (None or "": as it is)."""
    if not tta:
        return model
    check_choice("tta", tta, TTA_MODES)
    return FlipEmbedder(model)
