"""The course's recommended ResNet for 64×64 faces, registered with timm.

Stem: Conv2d(3→64, 3×3, stride 1, padding 1). Then residual blocks 64→64, 64→64,
64→128↓, 128→128, 128→256↓, 256→256, 256→512↓, 512→512 (↓: the block's first conv has
stride 2 and its shortcut is a 1×1 conv; otherwise the shortcut is the identity). A block
is conv-BN-ReLU-conv-BN, the shortcut added before the last ReLU. The embedding is the
mean over height and width (512-dim); the classifier is Linear(512, identities).

Registering it with timm means ``timm.create_model("face_resnet")`` and therefore
:func:`faceverify.build_model` know it, with the same interface as every timm model
(``forward_features``, ``forward_head(pre_logits=True)``, ``num_features``). ``width``
scales every channel count (64 is the course's network; tests train a narrow one).
"""

from __future__ import annotations

from typing import Any

import torch
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

__all__ = ["FaceResNet"]

# (in, out, stride) in units of ``width``: the course's eight blocks
_BLOCKS = ((1, 1, 1), (1, 1, 1), (1, 2, 2), (2, 2, 1), (2, 4, 2), (4, 4, 1), (4, 8, 2), (8, 8, 1))


class ResBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels_out)
        self.relu = nn.ReLU(inplace=True)
        downsample = stride != 1 or channels_in != channels_out
        self.shortcut: nn.Module = (
            nn.Conv2d(channels_in, channels_out, 1, stride, bias=False) if downsample else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class FaceResNet(nn.Module):
    """The course ResNet; ``num_classes=0`` leaves the 512-dim pooled embedding."""

    def __init__(self, num_classes: int = 4000, in_chans: int = 3, width: int = 64, **_: Any) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_chans, width, 3, 1, 1)
        self.stages = nn.Sequential(*(ResBlock(a * width, b * width, s) for a, b, s in _BLOCKS))
        self.num_features = self.head_hidden_size = 8 * width
        self.num_classes = num_classes
        self.fc: nn.Module = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3))
        return pooled if pre_logits else self.fc(pooled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()


default_cfgs = generate_default_cfgs(
    {
        # no published weights: train it with `faceverify train`
        "face_resnet": {
            "input_size": (3, 64, 64),
            "pool_size": (8, 8),
            "crop_pct": 1.0,
            "interpolation": "bilinear",
            "mean": (0.5, 0.5, 0.5),
            "std": (0.5, 0.5, 0.5),
            "num_classes": 4000,
            "first_conv": "stem",
            "classifier": "fc",
        }
    }
)


@register_model
def face_resnet(pretrained: bool = False, **kwargs: Any) -> FaceResNet:
    """The course's ResNet for 64×64 face crops (512-dim embeddings at width 64)."""
    model: FaceResNet = build_model_with_cfg(FaceResNet, "face_resnet", pretrained, **kwargs)
    return model
