"""Training configs: YAML with a base, overrides, types checked, unknown keys refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from faceverify.errors import ConfigError
from faceverify.train.config import TrainConfig, load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_every_shipped_config_loads() -> None:
    names = sorted(p.name for p in CONFIGS.glob("*.yaml"))
    assert {"base.yaml", "center_loss.yaml", "arcface_convnext.yaml", "synthetic.yaml"} <= set(names)
    for name in names:
        assert isinstance(load_config(CONFIGS / name), TrainConfig)
    transfer = load_config(CONFIGS / "arcface_convnext.yaml")
    assert (transfer.model.name, transfer.model.weights, transfer.loss.head) == (
        "convnext_atto.d2_in1k",
        None,
        "arcface",
    )
    assert transfer.data.train_dir == "classification_train"  # from the base


def test_base_files_and_overrides_merge(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(
        "epochs: 7\noptim: {lr: 0.2, momentum: 0.8}\nmodel: {args: {width: 8}}\n"
    )
    (tmp_path / "exp.yaml").write_text("base: base.yaml\noptim: {lr: 0.01}\nmodel: {args: {width: 16}}\n")
    config = load_config(tmp_path / "exp.yaml", ["epochs=3", "data.augment.random_resized_crop=[0.5, 1]"])
    assert (config.epochs, config.optim.lr, config.optim.momentum) == (3, 0.01, 0.8)
    assert config.model.args == {"width": 16}
    assert config.data.augment.random_resized_crop == (0.5, 1.0)
    assert config.to_dict()["data"]["augment"]["random_resized_crop"] == [0.5, 1.0]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optim.lrate=0.1"], "unknown key optim.lrate in optim; valid keys: name, lr, momentum"),
        (["color=red"], "unknown key color in the config; valid keys: data, model"),
        (["epochs=many"], "epochs = 'many' must be int"),
        (["epochs=0"], "epochs 0 must be at least 1"),
        (["loss.head=triplet"], "valid: softmax, arcface, cosface"),
        (["precision=fp8"], "valid: auto, fp32, bf16, fp16"),
        (["optim=fast"], "optim must be a mapping"),
        (["epochs"], "is not key=value"),
        (["model.args.checkpoint_path=/etc/passwd"], "model argument 'checkpoint_path' is not allowed"),
        (["model.args.pretrained=true"], "a loader argument: it makes timm load or fetch something"),
    ],
)
def test_bad_settings_name_the_key_and_the_options(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(None, overrides)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("epochs: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(tmp_path / "list.yaml")
