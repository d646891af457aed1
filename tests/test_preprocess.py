"""The preprocessing contract comes from the weights' own config, and faceverify's numpy
rendition of timm's evaluation transform gives timm's numbers."""

from __future__ import annotations

import functools
import itertools
import subprocess
import sys
import textwrap
from typing import Any

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from timm.data import create_transform, resolve_model_data_config

from faceverify.errors import ConfigError, InputError
from faceverify.preprocess import CROP_MODES, INTERPOLATIONS, PreprocessConfig, training_transform

#: (width, height) of the images the transform is compared on: far taller and far wider
#: than the crop, smaller than it on one or both sides, exactly an input size, larger
IMAGE_SIZES = ((20, 300), (500, 90), (224, 224), (150, 150), (1000, 700), (33, 35))
CROP_PCTS = (1.0, 0.875, 0.95)
#: square (torchvision's shorter-side Resize), taller and wider (timm's ResizeKeepRatio)
INPUT_SIZES = ((224, 224), (112, 96), (96, 128))
#: timm's eval transform is exact float32 arithmetic on the same Pillow pixels
TOLERANCE = 1e-6


def test_contract_equals_the_pretrained_configuration(atto_model: Any) -> None:
    cfg = timm.models.get_pretrained_cfg("convnext_atto.d2_in1k").to_dict()
    contract = atto_model.preprocess
    assert contract.input_size == tuple(cfg["input_size"][1:]) == (224, 224)
    assert contract.interpolation == cfg["interpolation"] == "bicubic"
    assert contract.mean == pytest.approx(cfg["mean"])
    assert contract.std == pytest.approx(cfg["std"])
    assert contract.crop_pct == pytest.approx(cfg["crop_pct"]) == 0.875
    assert contract.crop_mode == cfg["crop_mode"]


def test_transform_matches_timms_evaluation_transform() -> None:
    model = timm.create_model("resnet18.a1_in1k", pretrained=False, num_classes=0)
    data_config = resolve_model_data_config(model)
    contract = PreprocessConfig.from_timm(data_config)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 70, 3), dtype=np.uint8))
    expected = create_transform(**data_config, is_training=False)(image)
    assert np.array_equal(contract(image), expected.numpy())


def test_overrides_take_precedence_and_change_the_fingerprint(atto_model: Any) -> None:
    base = atto_model.preprocess
    small = base.override(input_size=112, crop_pct=1.0)
    assert small.input_size == (112, 112)
    assert small.crop_pct == 1.0
    assert small.mean == base.mean
    assert small.fingerprint() != base.fingerprint()
    assert base.override().fingerprint() == base.fingerprint()
    assert base.override(input_size=(3, 96, 128)).input_size == (96, 128)


def test_round_trip_through_dict_and_unknown_keys_rejected(atto_model: Any) -> None:
    contract = atto_model.preprocess
    assert PreprocessConfig.from_dict(contract.to_dict()) == contract
    with pytest.raises(ConfigError, match=r"unknown preprocessing keys \['resize'\]"):
        PreprocessConfig.from_dict({**contract.to_dict(), "resize": 1})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"input_size": 8}, "too small; use at least 32"),
        ({"crop_pct": 1.5}, r"crop_pct 1.5 is out of range"),
        ({"interpolation": "cubic"}, "interpolation 'cubic' is unknown; valid: bicubic, bilinear"),
        ({"input_size": (1, 2, 3, 4)}, "not understood"),
    ],
)
def test_bad_overrides_name_the_value_and_the_options(
    atto_model: Any, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        atto_model.preprocess.override(**overrides)


def test_training_transform_ends_in_the_contract() -> None:
    contract = PreprocessConfig(
        input_size=(32, 32), interpolation="bilinear", mean=(0.5,) * 3, std=(0.2,) * 3, crop_pct=1.0
    )
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8))
    plain = training_transform(contract, crop_scale=None, hflip=0.0, color_jitter=0.0)
    torch.testing.assert_close(plain(image), torch.from_numpy(contract(image)), atol=1e-5, rtol=0)
    augmented = training_transform(contract, crop_scale=(0.5, 1.0), hflip=1.0, color_jitter=0.2)
    assert augmented(image).shape == (3, 32, 32)


@functools.cache
def _random_image(width: int, height: int) -> Image.Image:
    rng = np.random.default_rng(width * 10_000 + height)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _timm_reference(contract: PreprocessConfig, image: Image.Image) -> np.ndarray:
    tensor = create_transform(**contract.to_timm(), is_training=False)(image)
    if contract.channel_order == "BGR":
        tensor = tensor.flip(0)
    return np.asarray(tensor.numpy())


def _assert_matches_timm(contract: PreprocessConfig, image: Image.Image) -> None:
    expected = _timm_reference(contract, image)
    actual = contract(image)
    case = f"{contract} on a {image.width}x{image.height} image"
    assert isinstance(actual, np.ndarray), case
    assert actual.dtype == np.float32 and actual.flags.c_contiguous, case
    assert actual.shape == expected.shape == (3, *contract.input_size), case
    assert float(np.abs(actual - expected).max()) <= TOLERANCE, case


def _contract(input_size: tuple[int, int], **values: Any) -> PreprocessConfig:
    defaults: dict[str, Any] = {
        "interpolation": "bicubic",
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "crop_pct": 1.0,
    }
    return PreprocessConfig(input_size=input_size, **{**defaults, **values})


@pytest.mark.parametrize("input_size", INPUT_SIZES)
@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
@pytest.mark.parametrize("crop_mode", CROP_MODES)
def test_equals_timms_evaluation_transform(
    crop_mode: str, interpolation: str, input_size: tuple[int, int]
) -> None:
    for crop_pct, (width, height) in itertools.product(CROP_PCTS, IMAGE_SIZES):
        contract = _contract(input_size, interpolation=interpolation, crop_pct=crop_pct, crop_mode=crop_mode)
        _assert_matches_timm(contract, _random_image(width, height))


@pytest.mark.parametrize("crop_mode", CROP_MODES)
def test_bgr_equals_timms_transform_with_channels_reversed(crop_mode: str) -> None:
    for crop_pct, (width, height) in itertools.product(CROP_PCTS, IMAGE_SIZES):
        contract = _contract((112, 96), crop_pct=crop_pct, crop_mode=crop_mode, channel_order="BGR")
        _assert_matches_timm(contract, _random_image(width, height))


@pytest.mark.parametrize("mean", [(0.5, 0.5, 0.5), (-0.2, 1.3, 0.998)])
def test_border_padding_is_the_mean_colour_as_timm_pads(mean: tuple[float, float, float]) -> None:
    # 0.5 * 255 = 127.5 rounds half to even; out-of-range means are clipped by Pillow
    contract = _contract((224, 224), mean=mean, crop_pct=0.875, crop_mode="border")
    _assert_matches_timm(contract, _random_image(500, 90))


def test_an_image_already_at_the_resize_size_is_not_resized(monkeypatch: pytest.MonkeyPatch) -> None:
    contract = _contract((150, 150), interpolation="bilinear")  # dlib's contract
    image = _random_image(150, 150)
    expected = _timm_reference(contract, image)

    def refuse(*args: Any, **kwargs: Any) -> Image.Image:
        raise AssertionError("resized an image that needed no resizing")

    monkeypatch.setattr(Image.Image, "resize", refuse)
    np.testing.assert_array_equal(contract(image), expected)


@pytest.mark.parametrize("mode", ["L", "RGBA", "YCbCr"])
def test_non_rgb_images_are_refused_naming_the_mode(mode: str) -> None:
    image = _random_image(64, 64).convert(mode)
    with pytest.raises(InputError, match=rf"image mode '{mode}' is not supported; valid: 'RGB'"):
        _contract((64, 64))(image)


def test_an_image_that_border_mode_shrinks_to_nothing_is_refused() -> None:
    # timm fails too, inside Pillow ("height and width must be > 0")
    with pytest.raises(InputError, match=r"a 1x1000 image would shrink to 0x224 in crop_mode 'border'"):
        _contract((224, 224), crop_mode="border")(_random_image(1, 1000))


def test_preprocessing_works_without_torch_timm_or_torchvision() -> None:
    script = textwrap.dedent(
        """
        import sys
        for name in ("torch", "timm", "torchvision"):
            sys.modules[name] = None  # any import of them now fails
        import numpy as np
        from PIL import Image
        from faceverify.preprocess import PreprocessConfig

        contract = PreprocessConfig(
            input_size=(112, 96), interpolation="bicubic", mean=(0.5,) * 3, std=(0.25,) * 3,
            crop_pct=0.95, crop_mode="border", channel_order="BGR",
        )
        array = contract(Image.new("RGB", (300, 20), (10, 20, 30)))
        assert array.shape == (3, 112, 96), array.shape
        assert array.dtype == np.float32 and array.flags.c_contiguous
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
