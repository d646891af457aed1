"""A backbone with an optional embedding neck: the network that training produces.

The neck (Linear + BatchNorm1d) maps the backbone's pooled features to a chosen
embedding size, as face recognition models usually do. The module looks like a timm
model to the rest of faceverify (``num_features``, ``head_hidden_size``,
``pretrained_cfg``), so the runtime treats a trained checkpoint like any backbone.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def feature_width(model: nn.Module) -> int:
    """The length of a headless model's output: its head's hidden layer (VGG, MobileNetV3)
    when it has one, else its pooled features."""
    width: Any = getattr(model, "head_hidden_size", None) or model.num_features
    return int(width)


class EmbeddingNetwork(nn.Module):
    """Backbone (built with ``num_classes=0``) followed by an optional neck."""

    def __init__(self, backbone: nn.Module, embedding_dim: int | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        width = feature_width(backbone)
        self.neck: nn.Module = (
            nn.Sequential(nn.Linear(width, embedding_dim), nn.BatchNorm1d(embedding_dim))
            if embedding_dim
            else nn.Identity()
        )
        self.num_features = self.head_hidden_size = embedding_dim or width
        self.pretrained_cfg: dict[str, Any] = dict(getattr(backbone, "pretrained_cfg", {}) or {})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(self.backbone(x))
