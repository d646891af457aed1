"""Preprocessing: the one place where pixels become normalised model input.

The contract (input size, resize/crop, interpolation, mean and std) travels with the
weights: it is read from the model's own pretrained configuration through timm, never
re-typed by hand, and only the input size, crop fraction and interpolation may be
overridden by the user. Applying a contract (:meth:`PreprocessConfig.__call__`) is
faceverify's own rendition of timm's evaluation transform with Pillow and numpy, tested
equal to timm's to the last bit, so faceverify feeds a network exactly what it saw when
its accuracy was measured, and an install without PyTorch preprocesses the same way.
Training's transform (:func:`training_transform`) is timm's own and needs PyTorch: it
augments, then ends in the same contract's size, interpolation and normalisation.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from faceverify.checks import check_choice
from faceverify.errors import ConfigError, InputError

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
    """How an RGB image is turned into a model input array.

    Attributes:
        input_size: (height, width) of the input given to the network.
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

    def __call__(self, image: Image.Image) -> np.ndarray:
        """Turn one RGB image into a normalised float32 C-contiguous ``[3, H, W]`` array
        (channels in :attr:`channel_order`), equal to timm's evaluation transform.

        Raises:
            InputError: the image is not in mode ``RGB``, or is so elongated that
                ``border`` mode would resize one side to nothing.
        """
        _check_rgb(image)
        height, width = _resized_size(self, image.height, image.width)
        if (width, height) != image.size:  # torchvision skips an identity resize too
            if min(height, width) < 1:
                raise InputError(
                    f"a {image.width}x{image.height} image would shrink to {width}x{height} "
                    f"in crop_mode {self.crop_mode!r}; crop it closer to square first"
                )
            image = image.resize((width, height), _resample_filter(self.interpolation))
        return _crop_and_normalise(self, np.asarray(image))


# faceverify's own rendition of timm's evaluation transform (transforms_imagenet_eval
# on a PIL image: torchvision's Resize/CenterCrop or timm's ResizeKeepRatio/
# CenterCropOrPad, then ToTensor and Normalize), with Pillow and numpy only, so installs
# without PyTorch feed a network the same numbers. tests/test_preprocess.py holds it equal
# to timm's transform over every crop mode, interpolation and awkward image size.


class _Lookup(NamedTuple):
    """What normalising needs, per contract; 8-bit pixels have 256 levels per channel, so
    normalising is a table look-up, exact and faster than the arithmetic on every pixel."""

    table: np.ndarray  # [3, 256] float32: output channel i's value for each level
    sources: tuple[int, int, int]  # the RGB channel that feeds output channel i
    fill: np.ndarray  # [3] float32: output value of a padding pixel, per output channel


@functools.lru_cache(maxsize=16)
def _lookup(config: PreprocessConfig) -> _Lookup:
    # float32 throughout, in timm's order (ToTensor divides by 255, Normalize subtracts
    # the mean, then divides by the std), so every entry is the very float timm computes
    levels = np.arange(256, dtype=np.float32) / np.float32(255)
    mean = np.asarray(config.mean, dtype=np.float32)[:, None]
    std = np.asarray(config.std, dtype=np.float32)[:, None]
    rgb_table = (levels[None, :] - mean) / std
    sources = (2, 1, 0) if config.channel_order == "BGR" else (0, 1, 2)
    table = np.ascontiguousarray(rgb_table[list(sources)])
    fill_levels = _fill_levels(config)
    fill = np.array([rgb_table[c, fill_levels[c]] for c in sources], dtype=np.float32)
    table.flags.writeable = False  # shared between threads
    fill.flags.writeable = False
    return _Lookup(table, sources, fill)


def _fill_levels(config: PreprocessConfig) -> tuple[int, int, int]:
    """The RGB pixel that pads an image smaller than the crop: black for torchvision's
    CenterCrop (center and squash modes resize to at least the crop, so never in
    practice); the mean colour, round(255 * mean) rounded half to even, for timm's
    CenterCropOrPad in ``border`` mode (Pillow clips it into 0..255)."""
    if config.crop_mode != "border":
        return (0, 0, 0)
    red, green, blue = (min(max(round(255 * m), 0), 255) for m in config.mean)
    return (red, green, blue)


@functools.lru_cache(maxsize=8)
def _resample_filter(interpolation: str) -> Image.Resampling:
    """Pillow's filter for an interpolation name; Pillow always antialiases when it shrinks,
    as torchvision does for PIL images."""
    from PIL import Image

    return Image.Resampling[interpolation.upper()]


def _resized_size(config: PreprocessConfig, height: int, width: int) -> tuple[int, int]:
    """(height, width) the image is resized to before the centre crop or pad."""
    # floor, not round: 224 / 0.95 = 235.79 resizes towards 235
    target = (
        math.floor(config.input_size[0] / config.crop_pct),
        math.floor(config.input_size[1] / config.crop_pct),
    )
    if config.crop_mode == "squash":
        return target
    if config.crop_mode == "border":
        return _keep_ratio(height, width, target, longest=True)
    if target[0] == target[1]:
        return _shorter_side_to(height, width, target[0])
    return _keep_ratio(height, width, target, longest=False)


def _shorter_side_to(height: int, width: int, side: int) -> tuple[int, int]:
    """torchvision's Resize(int): the shorter side becomes ``side`` and the longer one
    ``int(side * long / short)``, truncated; a square image counts its width as shorter."""
    if width <= height:
        return (int(side * height / width), side)
    return (side, int(side * width / height))


def _keep_ratio(height: int, width: int, target: tuple[int, int], *, longest: bool) -> tuple[int, int]:
    """timm's ResizeKeepRatio: one scale for both sides, set by the side largest relative
    to its target (``longest``, border mode: the whole image fits) or smallest (center
    mode with a non-square target: the crop is covered); sides round half to even."""
    ratio_h, ratio_w = height / target[0], width / target[1]
    ratio = max(ratio_h, ratio_w) if longest else min(ratio_h, ratio_w)
    return (round(height / ratio), round(width / ratio))


def _window(size: int, crop: int) -> tuple[slice, slice]:
    """Along one axis: which resized pixels (source) land where in the crop (destination).

    A side shorter than the crop is padded by ``(crop - size) // 2`` before it, the odd
    pixel going after; a longer side is cut from ``round((size - crop) / 2)``, which
    rounds half to even (torchvision's center_crop and timm's center_crop_or_pad alike).
    """
    if size <= crop:
        before = (crop - size) // 2
        return slice(0, size), slice(before, before + size)
    start = round((size - crop) / 2)
    return slice(start, start + crop), slice(0, crop)


def _crop_and_normalise(config: PreprocessConfig, pixels: np.ndarray) -> np.ndarray:
    """The centre crop (or pad) of ``[H, W, 3]`` uint8 ``pixels``, normalised, ``[3, h, w]``."""
    crop_h, crop_w = config.input_size
    rows, out_rows = _window(pixels.shape[0], crop_h)
    cols, out_cols = _window(pixels.shape[1], crop_w)
    lookup = _lookup(config)
    out = np.empty((3, crop_h, crop_w), dtype=np.float32)
    if (out_rows.stop - out_rows.start, out_cols.stop - out_cols.start) != (crop_h, crop_w):
        out[...] = lookup.fill[:, None, None]
    region = out[:, out_rows, out_cols]
    for channel, source in enumerate(lookup.sources):
        # mode="clip" skips the bounds check that uint8 levels cannot fail, and buffering
        np.take(lookup.table[channel], pixels[rows, cols, source], out=region[channel], mode="clip")
    return out


def _check_rgb(image: Image.Image) -> None:
    # timm's transform fails on 1-, 2- and 4-channel images and silently takes other
    # 3-channel modes (YCbCr, HSV, LAB) as RGB; only RGB is a contract input
    if image.mode != "RGB":
        raise InputError(
            f"image mode {image.mode!r} is not supported; valid: 'RGB' (use image.convert('RGB'))"
        )


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
