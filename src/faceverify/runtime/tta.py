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

from typing import TYPE_CHECKING

from faceverify.checks import check_choice
from faceverify.runtime.base import Embedder, WrappedEmbedder

if TYPE_CHECKING:
    import torch

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

    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        both = self.inner.embed(torch.cat([batch, batch.flip(-1)]))  # mirror the width axis
        count = len(batch)
        summed: torch.Tensor = F.normalize(both[:count], dim=1) + F.normalize(both[count:], dim=1)
        return summed


def with_tta(model: Embedder, tta: str | None) -> Embedder:
    """``model`` with the augmentation ``tta`` (None or "": as it is)."""
    if not tta:
        return model
    check_choice("tta", tta, TTA_MODES)
    return FlipEmbedder(model)
