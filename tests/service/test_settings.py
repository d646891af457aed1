"""The service's settings hold the model as a ModelSpec: the same one the CLI builds."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from faceverify.cli.common import model_spec_from_args
from faceverify.cli.main import build_parser
from faceverify.cli.serve import settings_from_args
from faceverify.errors import ConfigError
from faceverify.models.spec import ModelSpec
from faceverify.service.settings import Batching, ServiceSettings

MODEL_OPTIONS = ["--model", "face_resnet", "--weights", "random", "--device", "cpu"]
MODEL_OPTIONS += ["--input-size", "48", "--crop-pct", "0.9", "--backend", "torch"]


def test_serve_and_the_other_commands_read_the_model_options_into_the_same_spec(tmp_path: Path) -> None:
    parser = build_parser()
    embed = parser.parse_args(["embed", "x.png", *MODEL_OPTIONS])
    serve = parser.parse_args(["serve", "--db", str(tmp_path), *MODEL_OPTIONS])
    expected = ModelSpec(
        model="face_resnet", weights="random", device="cpu", input_size=48, crop_pct=0.9, backend="torch"
    )
    assert model_spec_from_args(embed) == expected
    assert settings_from_args(serve).spec == expected
    with_threshold = parser.parse_args(["serve", "--db", str(tmp_path), *MODEL_OPTIONS, "--threshold", "0.3"])
    assert settings_from_args(with_threshold).spec == replace(expected, threshold=0.3)


def test_a_checkpoint_given_as_model_names_its_own_architecture_everywhere(tmp_path: Path) -> None:
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"")
    parser = build_parser()
    for argv in (["verify", "a.png", "b.png"], ["serve"]):
        spec = model_spec_from_args(parser.parse_args([*argv, "--model", str(checkpoint)]))
        assert (spec.model, spec.weights) == (None, str(checkpoint))


def test_settings_travel_as_flat_json_and_come_back_equal(tmp_path: Path) -> None:
    settings = ServiceSettings(
        db=str(tmp_path / "g"),
        weights="w.safetensors",
        device="cpu",
        input_size=(32, 24),
        model_args={"width": 8},
        batching=Batching(max_batch=4),
        cors_origins=("https://app.example",),
    )
    text = settings.to_json()
    raw = json.loads(text)
    assert (raw["weights"], raw["input_size"], raw["batching"]["max_batch"]) == ("w.safetensors", [32, 24], 4)
    assert ServiceSettings.from_json(text) == settings
    assert replace(settings, weights=None).spec == replace(settings.spec, weights=None)


def test_unknown_or_mistyped_settings_are_refused() -> None:
    raw = json.loads(ServiceSettings().to_json())
    with pytest.raises(ConfigError, match="unknown service setting 'weigths'; valid keys: model, weights"):
        ServiceSettings.from_json(json.dumps({**raw, "weigths": "x"}))
    with pytest.raises(ConfigError, match=r"service setting input_size='32' must be"):
        ServiceSettings(input_size="32")  # type: ignore[arg-type]
