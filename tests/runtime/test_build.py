"""build_model: every weights source, the same numbers as timm, and clear failures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import timm
import torch
from safetensors.torch import save_file

from faceverify import build_model
from faceverify.errors import ConfigError, DeviceError, ModelError, WeightsNotFoundError


def _timm_reference(state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """timm's own headless ConvNeXt-Atto holding the same weights."""
    model = timm.create_model("convnext_atto", pretrained=False, num_classes=0)
    backbone = {k: v for k, v in state.items() if not k.startswith("head.fc.")}
    model.load_state_dict(backbone, strict=True)
    return model.eval()


def test_default_architecture_is_headless_convnext_atto_with_320_dims(atto_model: Any) -> None:
    assert atto_model.name == "convnext_atto.d2_in1k"
    assert atto_model.embedding_dim == 320  # not 768: that is ConvNeXt-Tiny
    assert not atto_model.training
    assert atto_model.device == "cpu" and atto_model.torch_device.type == "cpu"
    assert isinstance(atto_model.backbone.head.fc, torch.nn.Identity)
    with torch.inference_mode():
        assert atto_model(torch.zeros(1, 3, 224, 224)).shape == (1, 320)


def test_output_equals_timms_forward_on_the_same_weights(
    atto_model: Any, atto_state: dict[str, torch.Tensor]
) -> None:
    reference = _timm_reference(atto_state)
    full = timm.create_model("convnext_atto", pretrained=False).eval()
    full.load_state_dict(atto_state)
    x = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        ours = atto_model(x)
        torch.testing.assert_close(ours, reference(x), rtol=1e-4, atol=1e-4)
        pre_logits = full.forward_head(full.forward_features(x), pre_logits=True)
        torch.testing.assert_close(ours, pre_logits, rtol=1e-4, atol=1e-4)


def test_hf_cache_layout_loads_offline_by_model_name(hf_cache: Path, atto_model: Any) -> None:
    model = build_model(device="cpu")
    assert model.weights_source == "hf-hub:timm/convnext_atto.d2_in1k"
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        torch.testing.assert_close(model(x), atto_model(x))


def test_unreachable_hub_says_how_to_supply_weights() -> None:
    with pytest.raises(WeightsNotFoundError) as info:
        build_model("resnet18.a1_in1k", device="cpu")
    message = str(info.value)
    assert "timm/resnet18.a1_in1k" in message
    assert "--weights PATH" in message
    assert "HF_HUB_OFFLINE=1" in message


def test_folder_with_weights_only_uses_the_named_architecture(tmp_path: Path, atto_file: Path) -> None:
    shutil.copyfile(atto_file, tmp_path / "model.safetensors")
    model = build_model(weights=tmp_path, device="cpu")
    assert model.weights_source == str(tmp_path)
    assert model.embedding_dim == 320


def test_folder_config_carries_architecture_and_preprocessing(tmp_path: Path, atto_file: Path) -> None:
    # The timm hub layout: config.json travels with the weights and defines the contract.
    shutil.copyfile(atto_file, tmp_path / "model.safetensors")
    pretrained_cfg = {
        "input_size": [3, 160, 160],
        "interpolation": "bilinear",
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "crop_pct": 1.0,
        "crop_mode": "center",
        "num_classes": 1000,
        "classifier": "head.fc",
    }
    config = {"architecture": "convnext_atto", "num_classes": 1000, "pretrained_cfg": pretrained_cfg}
    (tmp_path / "config.json").write_text(json.dumps(config))
    model = build_model(weights=tmp_path, device="cpu")
    assert model.preprocess.input_size == (160, 160)
    assert model.preprocess.interpolation == "bilinear"
    assert model.preprocess.mean == (0.5, 0.5, 0.5)
    assert build_model(f"local-dir:{tmp_path}", device="cpu").preprocess == model.preprocess
    with pytest.raises(ModelError, match="holds a 'convnext_atto' model, but model 'resnet18'"):
        build_model("resnet18", weights=tmp_path, device="cpu")


def test_pytorch_checkpoint_from_ddp_loads(tmp_path: Path, atto_state: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in atto_state.items()}, "epoch": 3}, path)
    assert build_model(weights=path, device="cpu").embedding_dim == 320


def test_weights_of_another_architecture_are_refused(atto_file: Path) -> None:
    with pytest.raises(ModelError, match="do not fit the ResNet architecture"):
        build_model("resnet18", weights=atto_file, device="cpu")


def test_partial_weights_are_refused_rather_than_left_random(
    tmp_path: Path, atto_state: dict[str, torch.Tensor]
) -> None:
    partial = {k: v for k, v in atto_state.items() if not k.startswith("stages.3.")}
    save_file(partial, str(tmp_path / "partial.safetensors"))
    with pytest.raises(ModelError, match=r"tensors missing \(e.g. \['stages.3"):
        build_model(weights=tmp_path / "partial.safetensors", device="cpu")


def test_corrupt_and_missing_weights_files(tmp_path: Path, atto_file: Path) -> None:
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(atto_file.read_bytes()[:1000])
    with pytest.raises(ModelError, match="cannot be read"):
        build_model(weights=cut, device="cpu")
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        build_model(weights=tmp_path / "nope.safetensors", device="cpu")
    with pytest.raises(WeightsNotFoundError, match="holds no weights"):
        build_model(weights=tmp_path / "..", device="cpu")


def test_unknown_model_names_suggest_close_matches() -> None:
    with pytest.raises(ModelError, match=r"unknown model 'convnext_atoo'\. Did you mean .*convnext_atto"):
        build_model("convnext_atoo", weights="random")


def test_bad_devices_and_thresholds_are_refused() -> None:
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            build_model(weights="random", device="cuda")
    with pytest.raises(DeviceError, match="valid: auto, cpu, cuda"):
        build_model(weights="random", device="tpu")
    with pytest.raises(ConfigError, match="use a value in"):
        build_model(weights="random", threshold=2.0, device="cpu")


def test_input_size_override_and_threshold_are_carried() -> None:
    model = build_model(weights="random", input_size=112, crop_pct=1.0, threshold=0.31, device="cpu")
    assert model.preprocess.input_size == (112, 112)
    assert (model.threshold.value, model.threshold.source) == (0.31, "given")
    assert model.describe()["threshold_source"] == "given"
    default = build_model(weights="random", device="cpu").threshold
    assert (default.value, default.source) == (0.5, "default")
