"""The PyTorch runtime: an embedding network run eagerly, on the CPU, a GPU or MPS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from faceverify.errors import DeviceMemoryError, InputError
from faceverify.models.neck import feature_width
from faceverify.preprocess import PreprocessConfig
from faceverify.runtime.base import Embedder
from faceverify.runtime.threshold import DEFAULT, Threshold


class EmbeddingModel(Embedder, nn.Module):
    """A CNN without its classification layer, mapping images to pooled features.

    Built by :func:`faceverify.build_model`; call :func:`faceverify.compute_embedding`
    rather than ``forward`` unless the input is already preprocessed.

    Attributes:
        backbone: the network, created with ``num_classes=0`` (timm) or a trained one.
        channels_last: whether inputs are fed in channels-last memory format.
        (and the :class:`~faceverify.runtime.base.Embedder` attributes)
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        name: str,
        preprocess: PreprocessConfig,
        weights_source: str,
        weights_file: Path | None = None,
        threshold: Threshold | None = None,
        channels_last: bool = True,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.name = name
        self.preprocess = preprocess
        self.weights_source = weights_source
        self.weights_file = weights_file
        self.threshold = threshold or DEFAULT
        self.channels_last = channels_last
        self.embedding_dim = feature_width(backbone)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed ``[N, 3, H, W]`` input to ``[N, D]`` pooled features."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        features: torch.Tensor = self.backbone(x)
        return features

    @property
    def device(self) -> str:
        return str(self.torch_device)

    @property
    def torch_device(self) -> torch.device:
        """:attr:`device` as PyTorch names it."""
        return next(self.parameters()).device

    def embed(self, batch: np.ndarray) -> np.ndarray:
        device = self.torch_device
        try:
            tensor = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
            if device.type == "cuda":
                tensor = tensor.pin_memory()
            x = tensor.to(device, non_blocking=True)
            with torch.inference_mode():
                out: torch.Tensor = self(x)
        except torch.cuda.OutOfMemoryError as exc:
            raise DeviceMemoryError(
                f"{device} ran out of memory embedding a batch of shape {tuple(batch.shape)}; use a "
                "smaller batch size (--batch-size, batch_size=) or input size, or another device"
            ) from exc
        except RuntimeError as exc:
            if tuple(batch.shape[-2:]) == self.preprocess.input_size:
                raise  # the contract's own size: a failure of the model or device, not of the input
            detail = str(exc).strip().splitlines()[0][:200]
            raise InputError(
                f"the model cannot process input of shape {tuple(batch.shape)}: {detail}"
            ) from exc
        return out.float().cpu().numpy()
