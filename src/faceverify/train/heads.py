"""Classification heads and center loss: how identities teach the embedding.

* ``softmax``: a linear layer and cross-entropy, the course's baseline.
* ``arcface`` / ``cosface``: both embeddings and class weights are L2-normalised, so the
  logits are cosines; a margin is applied to the true class (an angle for ArcFace, a
  cosine offset for CosFace) and the result is scaled. The cosines are computed in fp32
  and clamped whatever the autocast precision: under fp16 the arccos would otherwise
  meet values just outside [-1, 1] and return NaN.
* a margin head trained from scratch with its full margin often never converges on small
  sets where softmax fits, because at random initialisation cos(θ + m) of the true
  class is below the other classes' cosines for nearly every sample and the gradient points
  nowhere useful. :func:`margin_at` ramps the margin from 0 (a normalised softmax, which
  fits like plain softmax) to its target, as the margin-loss literature does.
* center loss pulls each embedding towards a learned centre of its identity. The centres
  stay fp32 and have their own optimizer and learning rate.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

_EPS = 1e-7
DEFAULT_MARGINS = {"arcface": 0.5, "cosface": 0.35}


def arcface_margin(cosine: torch.Tensor, margin: float) -> torch.Tensor:
    """cos(θ + m), continued monotonically past θ + m > π so the loss keeps its direction."""
    sine = torch.sqrt((1.0 - cosine * cosine).clamp_min(0.0))
    shifted = cosine * math.cos(margin) - sine * math.sin(margin)
    threshold = math.cos(math.pi - margin)
    return torch.where(cosine > threshold, shifted, cosine - math.sin(math.pi - margin) * margin)


def cosface_margin(cosine: torch.Tensor, margin: float) -> torch.Tensor:
    """cos θ − m."""
    return cosine - margin


def margin_at(target: float, progress: float, warmup: float) -> float:
    """The margin after ``progress`` epochs of a linear ramp of ``warmup`` epochs to ``target``.

    ``progress`` counts fractional epochs (epoch + batch / batches), so the ramp is smooth
    within an epoch and a resumed run computes the same margin as an uninterrupted one.
    """
    if warmup <= 0 or progress >= warmup:
        return target
    return target * max(progress, 0.0) / warmup


def auto_scale(classes: int) -> float:
    """The logit scale for a normalised head over ``classes`` identities: sqrt(2)·ln(C - 1).

    This is the fixed scale AdaCos (Zhang et al., 2019) derives: just large enough that
    the true class can take nearly all the probability mass, so gradients neither vanish
    (scale too large) nor stay too weak to separate classes (too small). Floored at 4 for
    sets of a handful of identities.
    """
    return max(4.0, math.sqrt(2.0) * math.log(max(classes - 1, 1)))


class ClassifierHead(nn.Module):
    """Identity logits from embeddings: plain linear or a normalised margin head.

    ``forward`` returns ``(logits for the loss, logits for accuracy)``: with a margin head
    the first has the margin applied to the true class, the second does not. ``margin``
    is the margin in use now (the training loop lowers it during the warm-up);
    ``target_margin`` is the configured one.
    """

    def __init__(
        self, kind: str, dim: int, classes: int, *, scale: float = 16.0, margin: float | None = None
    ):
        super().__init__()
        self.kind = kind
        self.scale = scale
        self.target_margin = DEFAULT_MARGINS.get(kind, 0.0) if margin is None else margin
        self.margin = self.target_margin
        if kind == "softmax":
            self.linear: nn.Module = nn.Linear(dim, classes)
        else:
            # unit-variance rows (norm ≈ √dim): the cosine only sees their direction, and the
            # step a direction takes shrinks with the row's norm: rows of std 0.01 turn so
            # fast that a margin head learns far slower (benchmarks/train_heads.py)
            self.weight = nn.Parameter(torch.empty(classes, dim))
            nn.init.normal_(self.weight, std=1.0)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kind == "softmax":
            logits = self.linear(embeddings)
            return logits, logits
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            cosine = F.linear(F.normalize(embeddings.float()), F.normalize(self.weight.float()))
            cosine = cosine.clamp(-1.0 + _EPS, 1.0 - _EPS)
            target = cosine.gather(1, labels[:, None])
            margin_fn = arcface_margin if self.kind == "arcface" else cosface_margin
            with_margin = cosine.scatter(1, labels[:, None], margin_fn(target, self.margin))
        return with_margin * self.scale, cosine * self.scale


class CenterLoss(nn.Module):
    """½·mean‖e − c_y‖², with one fp32 centre per identity (Wen et al., 2016)."""

    def __init__(self, classes: int, dim: int) -> None:
        super().__init__()
        self.centers = nn.Parameter(torch.randn(classes, dim) * 0.01)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            difference = embeddings.float() - self.centers[labels]
            return 0.5 * difference.pow(2).sum(dim=1).mean()
