"""The embedding model: a headless backbone that carries its own contract."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from faceverify.models.neck import feature_width
from faceverify.preprocess import PreprocessConfig

#: The course's fixed threshold, used only when a model carries no calibrated one.
DEFAULT_THRESHOLD = 0.5


class EmbeddingModel(nn.Module):
    """A CNN without its classification layer, mapping images to pooled features.

    Built by :func:`faceverify.build_model`; call :func:`faceverify.compute_embedding`
    rather than ``forward`` unless the input is already preprocessed.

    Attributes:
        backbone: the timm network, created with ``num_classes=0``.
        name: the model name it was built from (e.g. ``convnext_atto.d2_in1k``).
        embedding_dim: length of each embedding (320 for ConvNeXt-Atto).
        preprocess: the preprocessing contract that goes with the weights.
        weights_source: where the weights came from (hub repo, path, or ``random``).
        weights_file: the file the weights were read from; None for random weights.
        threshold: a calibrated cosine threshold, or None to use the default 0.5.
        channels_last: whether inputs are fed in channels-last memory format.
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        name: str,
        preprocess: PreprocessConfig,
        weights_source: str,
        weights_file: Path | None = None,
        threshold: float | None = None,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.name = name
        self.preprocess = preprocess
        self.weights_source = weights_source
        self.weights_file = weights_file
        self.threshold = threshold
        self.channels_last = channels_last
        self.embedding_dim = feature_width(backbone)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed ``[N, 3, H, W]`` input to ``[N, D]`` pooled features."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        features: torch.Tensor = self.backbone(x)
        return features

    def weights_sha256(self, *, refresh: bool = False) -> str:
        """SHA-256 of the weights file ('' for random weights); computed once unless
        ``refresh`` (the file may have been rewritten since the model was built)."""
        if self.weights_file is None:
            return ""
        if refresh or not hasattr(self, "_weights_sha256"):
            digest = hashlib.sha256()
            with self.weights_file.open("rb") as stream:
                for block in iter(lambda: stream.read(1 << 20), b""):
                    digest.update(block)
            self._weights_sha256 = digest.hexdigest()
        return self._weights_sha256

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def default_threshold(self) -> float:
        """The calibrated threshold when the model has one, else the course's 0.5."""
        return DEFAULT_THRESHOLD if self.threshold is None else self.threshold

    def describe(self) -> dict[str, Any]:
        """JSON-ready facts saved next to every artifact this model produces."""
        return {
            "model": self.name,
            "weights": self.weights_source,
            "embedding_dim": self.embedding_dim,
            "preprocess": self.preprocess.to_dict(),
            "preprocess_fingerprint": self.preprocess.fingerprint(),
            "threshold": self.default_threshold,
            "threshold_calibrated": self.threshold is not None,
        }
