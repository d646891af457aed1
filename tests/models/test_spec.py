"""ModelSpec: one typed description of the model to build, the arguments of build_model."""

from __future__ import annotations

import inspect
import json
from dataclasses import fields
from pathlib import Path

import pytest

from faceverify.errors import ConfigError
from faceverify.models.spec import ModelSpec
from faceverify.runtime.build import build_from_spec, build_model

SPEC = ModelSpec(
    model="face_resnet",
    weights="random",
    device="cpu",
    input_size=(48, 40),
    crop_pct=1.0,
    interpolation="bilinear",
    threshold=0.42,
    channels_last=False,
    model_args={"width": 8},
    backend="torch",
)


def test_a_spec_round_trips_through_plain_data_and_json() -> None:
    assert ModelSpec.from_dict(SPEC.to_dict()) == SPEC
    assert ModelSpec.from_dict(json.loads(json.dumps(SPEC.to_dict()))) == SPEC  # lists back to tuples
    assert ModelSpec.from_dict({}) == ModelSpec()
    assert ModelSpec(weights=Path("/w/model.safetensors")).weights == "/w/model.safetensors"


def test_unknown_keys_are_refused_naming_the_key_and_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as raised:
        ModelSpec.from_dict({"model": "face_resnet", "input_sise": 64})
    message = str(raised.value)
    assert "unknown model option 'input_sise'" in message
    assert "valid keys: model, weights, device, input_size, crop_pct" in message


@pytest.mark.parametrize(
    ("key", "value"),
    [("input_size", "112"), ("input_size", (112,)), ("crop_pct", True), ("channels_last", 1), ("model", 3)],
)
def test_values_of_the_wrong_type_are_refused(key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"model option {key}=.* must be"):
        ModelSpec.from_dict({key: value})


def test_the_fields_are_build_models_arguments_with_its_defaults() -> None:
    """A new build_model argument must reach the spec (and so the CLI and the service)."""
    parameters = inspect.signature(build_model).parameters
    assert [f.name for f in fields(ModelSpec)] == ["model", *list(parameters)[1:]]
    defaults = ModelSpec().to_dict()
    for name, parameter in list(parameters.items())[1:]:
        expected = {} if name == "model_args" else parameter.default  # {} and None mean the same
        assert defaults[name] == expected, name


def test_a_spec_builds_what_build_model_builds_from_the_same_arguments() -> None:
    built = build_from_spec(SPEC)
    direct = build_model(
        "face_resnet",
        weights="random",
        device="cpu",
        input_size=(48, 40),
        crop_pct=1.0,
        interpolation="bilinear",
        threshold=0.42,
        channels_last=False,
        model_args={"width": 8},
    )
    assert built.describe() == direct.describe()
    assert (built.name, built.embedding_dim, built.preprocess.input_size) == ("face_resnet", 64, (48, 40))
    assert float(built.threshold) == 0.42
