"""Fine-tuning: the backbone's own learning rate and freeze, and dlib's network as a start."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import faceverify as fv
from faceverify.distributed import Distributed
from faceverify.errors import ConfigError
from faceverify.train.config import load_config
from faceverify.train.loop import Trainer, train
from faceverify.train.setup import make_optimizers

CPU = Distributed(rank=0, world_size=1, device=torch.device("cpu"))


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _moved(before: dict[str, torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in module.state_dict().items() if v.is_floating_point())


def test_a_frozen_backbone_stays_put_then_learns_at_its_scaled_rate(fast: list[str]) -> None:
    """Epoch 0: a real step moves the new neck and head, not the backbone (rate 0). From
    epoch 1 the backbone's rate is lr × backbone_lr_scale, following the same schedule."""
    settings = [
        *fast,
        "epochs=4",
        "model.embedding_dim=32",
        "optim.backbone_lr_scale=0.1",
        "optim.freeze_backbone_epochs=1",
        "channels_last=false",
    ]
    trainer = Trainer(load_config(None, settings), CPU, None)
    head_group, backbone_group = trainer.optimizer.param_groups
    assert (head_group["lr"], backbone_group["lr"]) == (0.05, 0.0)
    backbone = trainer.model.backbone
    assert {id(p) for p in backbone_group["params"]} == {id(p) for p in backbone.parameters()}
    trainer.model.eval()  # BatchNorm running statistics would change with any forward pass
    weights = {k: v for k, v in _snapshot(backbone).items() if "running" not in k and "batches" not in k}
    neck, head = _snapshot(trainer.model.neck), _snapshot(trainer.net.head)
    images, labels, _ = next(iter(trainer.loader))
    trainer._step(images, labels)
    assert all(torch.equal(v, backbone.state_dict()[k]) for k, v in weights.items())
    assert _moved(neck, trainer.model.neck) and _moved(head, trainer.net.head)
    assert trainer.scheduler is not None
    trainer.scheduler.step()  # epoch 1 of a 4-epoch cosine: factor (1 + cos(π/4)) / 2
    factor = (1 + 2**-0.5) / 2
    assert head_group["lr"] == pytest.approx(0.05 * factor)
    assert backbone_group["lr"] == pytest.approx(0.005 * factor)


def test_fine_tuning_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"optim.freeze_backbone_epochs = 5 is out of range"):
        load_config(None, ["epochs=3", "optim.freeze_backbone_epochs=5"])
    with pytest.raises(ConfigError, match=r"optim.backbone_lr_scale = -0.1 .* at least 0"):
        load_config(None, ["optim.backbone_lr_scale=-0.1"])
    config = load_config(None, ["optim.freeze_backbone_epochs=1", "schedule.name=plateau"])
    with pytest.raises(ConfigError, match="freeze_backbone_epochs works with schedule cosine"):
        make_optimizers(config, _tiny_net())


def _tiny_net() -> torch.nn.Module:
    from faceverify.models.neck import EmbeddingNetwork
    from faceverify.train.heads import ClassifierHead
    from faceverify.train.loop import TrainNet

    backbone = torch.nn.Linear(4, 4)
    backbone.num_features = 4  # what EmbeddingNetwork reads off a timm backbone
    return TrainNet(EmbeddingNetwork(backbone), ClassifierHead("softmax", 4, 2), None)


def test_dlib_network_fine_tunes_from_its_real_weights_and_keeps_its_contract(
    dat_file: Path, synth_root: Path, tmp_path: Path
) -> None:
    """configs/finetune_dlib.yaml starts from dlib's weights at 150 px; the checkpoint it
    writes is a model whose contract (150 px, dlib's means, the dlib150 template) is dlib's,
    so `verify` detects and aligns photos for it as for the original network."""
    data = tmp_path / "data"
    for person in sorted((synth_root / "classification_train").iterdir())[:3]:
        (data / "train" / person.name).mkdir(parents=True)
        for image in sorted(person.iterdir())[:4]:
            (data / "train" / person.name / image.name).write_bytes(image.read_bytes())
    configs = Path(__file__).resolve().parents[2] / "configs"
    overrides = [
        f"data.root={data}",
        "data.train_dir=train",
        "data.val_dir=null",
        "data.pairs=null",
        "data.workers=0",
        "epochs=2",
        "batch_size=6",
        f"out={tmp_path / 'run'}",
    ]
    config = load_config(configs / "finetune_dlib.yaml", overrides)
    original = fv.build_model("dlib_resnet_v1", device="cpu")
    metrics = train(config)
    assert metrics["epoch"] == 1 and torch.isfinite(torch.tensor(metrics["train_loss"]))
    tuned = fv.build_model(weights=tmp_path / "run" / "last.pt", device="cpu")
    assert tuned.preprocess == original.preprocess  # 150 px, dlib's means/scale, dlib150
    assert tuned.preprocess.face_template == "dlib150" and tuned.embedding_dim == 128
    # it started from dlib's weights and moved only a little (backbone at lr × 0.1, one epoch)
    chips = np.random.default_rng(0).standard_normal((2, 3, 150, 150), dtype=np.float32)
    a, b = original.embed(chips), tuned.embed(chips)
    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape == (2, 128)
    cosine = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert (cosine > 0.9).all() and not np.allclose(a, b)
