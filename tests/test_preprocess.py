"""The preprocessing contract comes from the weights' own config and feeds timm's transform."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from timm.data import create_transform, resolve_model_data_config

from faceverify.errors import ConfigError
from faceverify.preprocess import PreprocessConfig, training_transform


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
    assert torch.equal(contract(image), expected)


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
    torch.testing.assert_close(plain(image), contract(image), atol=1e-5, rtol=0)
    augmented = training_transform(contract, crop_scale=(0.5, 1.0), hflip=1.0, color_jitter=0.2)
    assert augmented(image).shape == (3, 32, 32)
