"""Preprocessing: the one place where pixels become normalised model input.

The contract (input size, resize/crop, interpolation, mean and std) travels with the
weights: it is read from the model's own pretrained configuration through timm, never
re-typed by hand, and only the input size, crop fraction and interpolation may be
overridden by the user. The transform itself is timm's evaluation transform, so
faceverify feeds a network exactly what it saw when its accuracy was measured.
Training's transform (:func:`training_transform`) augments, then ends in the same
contract's size, interpolation and normalisation.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from faceverify.checks import check_choice
from faceverify.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from PIL import Image

INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "lanczos", "box", "hamming")
CHANNEL_ORDERS = ("RGB", "BGR")
CROP_MODES = ("center", "squash", "border")
#: Below this the feature maps of stride-32 CNNs shrink to nothing.
MIN_INPUT_SIDE = 32


@dataclass(frozen=True)
class PreprocessConfig:
    """How an RGB image is turned into a model input tensor.

    Attributes:
        input_size: (height, width) of the tensor given to the network.
        interpolation: resampling filter used when resizing.
        mean: per-channel mean subtracted after scaling pixels to [0, 1].
        std: per-channel standard deviation divided by.
        crop_pct: the image is resized to ``input_size / crop_pct`` and its centre
            ``input_size`` is kept; 1.0 keeps the whole (resized) image.
        crop_mode: ``center`` (keep aspect, crop), ``squash`` (stretch, crop) or
            ``border`` (keep aspect, pad), as in timm.
        face_template: the alignment the network was trained on (``dlib150``,
            ``arcface112``; see ``faceverify.faces.align``): photos are then searched for
            faces, and each face is cut out aligned to it before this contract applies.
            None for networks that take plain crops.
        channel_order: ``RGB`` (timm, PyTorch) or ``BGR`` (networks trained on OpenCV's
            images); ``mean`` and ``std`` are given in RGB order either way.
    """

    input_size: tuple[int, int]
    interpolation: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_pct: float
    crop_mode: str = "center"
    face_template: str | None = None
    channel_order: str = "RGB"

    def __post_init__(self) -> None:
        _check_size(self.input_size)
        check_choice("interpolation", self.interpolation, INTERPOLATIONS)
        check_choice("channel order", self.channel_order, CHANNEL_ORDERS)
        check_choice("crop_mode", self.crop_mode, CROP_MODES)
        if not 0.0 < self.crop_pct <= 1.0:
            raise ConfigError(f"crop_pct {self.crop_pct!r} is out of range; use a value in (0, 1]")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError(f"mean {self.mean!r} and std {self.std!r} need 3 values, std > 0")

    @classmethod
    def from_timm(cls, data_config: Mapping[str, Any]) -> PreprocessConfig:
        """Build from a timm data config (``timm.data.resolve_model_data_config``)."""
        size = data_config["input_size"]
        return cls(
            input_size=(int(size[-2]), int(size[-1])),
            interpolation=str(data_config["interpolation"]),
            mean=_triple(data_config["mean"]),
            std=_triple(data_config["std"]),
            crop_pct=float(data_config.get("crop_pct") or 1.0),
            crop_mode=str(data_config.get("crop_mode") or "center"),
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreprocessConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {
            "input_size",
            "interpolation",
            "mean",
            "std",
            "crop_pct",
            "crop_mode",
            "face_template",
            "channel_order",
        }
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown preprocessing keys {sorted(unknown)}; valid keys: {sorted(known)}")
        values = dict(data)
        values["input_size"] = tuple(values["input_size"])
        values["mean"] = _triple(values["mean"])
        values["std"] = _triple(values["std"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description, saved next to every artifact."""
        data = asdict(self)
        data["input_size"] = list(self.input_size)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        if self.face_template is None:
            del data["face_template"]  # so contracts without one keep their fingerprints
        if self.channel_order == "RGB":
            del data["channel_order"]  # likewise
        return data

    def to_timm(self) -> dict[str, Any]:
        """The same contract in timm's data-config form."""
        return {
            "input_size": (3, *self.input_size),
            "interpolation": self.interpolation,
            "mean": self.mean,
            "std": self.std,
            "crop_pct": self.crop_pct,
            "crop_mode": self.crop_mode,
        }

    def fingerprint(self) -> str:
        """A short stable hash; galleries and calibrations record it to refuse mixing."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def override(
        self,
        *,
        input_size: int | Sequence[int] | None = None,
        crop_pct: float | None = None,
        interpolation: str | None = None,
    ) -> PreprocessConfig:
        """A copy with user overrides applied (explicit argument beats the model's config)."""
        return PreprocessConfig(
            input_size=self.input_size if input_size is None else _size_pair(input_size),
            interpolation=self.interpolation if interpolation is None else interpolation,
            mean=self.mean,
            std=self.std,
            crop_pct=self.crop_pct if crop_pct is None else float(crop_pct),
            crop_mode=self.crop_mode,
            face_template=self.face_template,
            channel_order=self.channel_order,
        )

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """Turn one RGB image into a normalised ``[3, H, W]`` float tensor (channels in
        :attr:`channel_order`)."""
        tensor = _timm_transform(self)(image)
        return tensor.flip(0) if self.channel_order == "BGR" else tensor


@functools.lru_cache(maxsize=16)
def _timm_transform(config: PreprocessConfig) -> Callable[[Image.Image], torch.Tensor]:
    """timm's evaluation transform for a contract, built once (building it is not free)."""
    from timm.data import create_transform

    transform: Callable[[Image.Image], torch.Tensor] = create_transform(**config.to_timm(), is_training=False)
    return transform


def training_transform(
    contract: PreprocessConfig,
    *,
    crop_scale: tuple[float, float] | None,
    hflip: float,
    color_jitter: float,
    random_erasing: float = 0.0,
) -> Callable[[Image.Image], torch.Tensor]:
    """timm's training transform (crop, flip, colour jitter) ending in ``contract``.

    Args:
        crop_scale: area range of the random resized crop; None keeps the whole image.
        hflip: probability of a horizontal flip.
        color_jitter: brightness/contrast/saturation strength; 0 turns it off.
        random_erasing: probability of erasing one random rectangle with noise after
            normalisation (an occlusion: glasses, a hand, a scarf); 0 turns it off.
    """
    from timm.data import create_transform

    transform: Callable[[Image.Image], torch.Tensor] = create_transform(
        input_size=(3, *contract.input_size),
        is_training=True,
        scale=crop_scale or (1.0, 1.0),
        ratio=(3 / 4, 4 / 3) if crop_scale else (1.0, 1.0),
        hflip=hflip,
        vflip=0.0,
        color_jitter=color_jitter,
        re_prob=random_erasing,
        interpolation=contract.interpolation,
        mean=contract.mean,
        std=contract.std,
    )
    return transform


def _size_pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return (size, size)
    values = tuple(int(v) for v in size)
    if len(values) == 3:  # timm's (C, H, W) form
        values = values[1:]
    if len(values) != 2:
        raise ConfigError(f"input size {size!r} is not understood; give N or (height, width)")
    return (values[0], values[1])


def _check_size(size: tuple[int, int]) -> None:
    if len(size) != 2 or min(size) < MIN_INPUT_SIDE:
        raise ConfigError(
            f"input size {size!r} is too small; use at least {MIN_INPUT_SIDE} pixels per side "
            "(112 suits small face crops, 224 is the ImageNet default)"
        )


def _triple(values: Sequence[float]) -> tuple[float, float, float]:
    items = tuple(float(v) for v in values)
    if len(items) != 3:
        raise ConfigError(f"expected 3 per-channel values, got {values!r}")
    return (items[0], items[1], items[2])
