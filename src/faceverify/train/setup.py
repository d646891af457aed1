"""Building a run's parts from its config: model, transforms, optimizers, precision."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from faceverify.errors import ConfigError
from faceverify.models.factory import load_network
from faceverify.models.neck import EmbeddingNetwork
from faceverify.preprocess import PreprocessConfig, training_transform
from faceverify.train.config import TrainConfig

log = logging.getLogger(__name__)
Scheduler = torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau


def build_network(config: TrainConfig) -> tuple[EmbeddingNetwork, PreprocessConfig, str]:
    """The network to train (ImageNet weights or random), its contract and its name."""
    base = load_network(config.model.name, weights=config.model.weights, model_args=config.model.args)
    network = EmbeddingNetwork(base.network, config.model.embedding_dim)
    return network, base.contract.override(input_size=config.model.input_size), base.name


def contract_for_data(contract: PreprocessConfig, root: str | Path) -> PreprocessConfig:
    """The contract, naming the face template the training crops were aligned to.

    Crops made by ``faceverify prepare`` record their template; the checkpoint must carry it
    so that ``--detect`` at inference aligns photos exactly as the training crops were
    (without it a 112-px model trained on ArcFace-template crops would be fed dlib-style
    chips). dlib-style chips at the input size are what a contract without a template gets
    anyway, so ``dlib64`` needs no entry.
    """
    from faceverify.data.prepare import prepared_template
    from faceverify.faces.align import TEMPLATES

    template = prepared_template(root)
    if template is None or template not in TEMPLATES or template == contract.face_template:
        return contract
    if contract.face_template is not None:
        log.warning(
            "the training crops in '%s' were aligned to %s but the network expects %s: "
            "the checkpoint keeps %s (prepare the photos again with the matching --size)",
            root,
            template,
            contract.face_template,
            contract.face_template,
        )
        return contract
    return replace(contract, face_template=template)


def train_transform(config: TrainConfig, contract: PreprocessConfig) -> Any:
    """The augmentation ``config.data.augment`` asks for, ending in the model's contract."""
    augment = config.data.augment
    return training_transform(
        contract,
        crop_scale=augment.random_resized_crop,
        hflip=augment.hflip,
        color_jitter=augment.color_jitter,
        random_erasing=augment.random_erasing,
    )


def make_optimizers(
    config: TrainConfig, net: nn.Module
) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer | None, Scheduler | None]:
    center = getattr(net, "center", None)
    centers = set(map(id, center.parameters())) if center is not None else set()
    params = _param_groups(config, net, exclude=centers)
    opt = config.optim
    optimizer: torch.optim.Optimizer
    if opt.name == "sgd":
        optimizer = torch.optim.SGD(
            params, lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay, nesterov=opt.momentum > 0
        )
    else:
        optimizer = torch.optim.AdamW(params, lr=opt.lr, weight_decay=opt.weight_decay)
    # the centres: plain SGD at their own rate and no weight decay (it would pull them to 0)
    center_optimizer = (
        torch.optim.SGD(center.parameters(), lr=config.loss.center_lr) if center is not None else None
    )
    return optimizer, center_optimizer, _schedule(config, optimizer)


def _param_groups(config: TrainConfig, net: nn.Module, exclude: set[int]) -> list[dict[str, Any]]:
    """One group, or two when fine-tuning: the new neck and head at ``optim.lr`` first (the
    rate that is logged), then the pretrained backbone at ``lr × backbone_lr_scale``."""
    params = [p for p in net.parameters() if id(p) not in exclude]
    opt = config.optim
    if opt.backbone_lr_scale == 1.0 and opt.freeze_backbone_epochs == 0:
        return [{"params": params}]
    backbone = set(map(id, net.get_submodule("embedder.backbone").parameters()))
    return [
        {"params": [p for p in params if id(p) not in backbone]},
        {"params": [p for p in params if id(p) in backbone], "lr": opt.lr * opt.backbone_lr_scale},
    ]


def _schedule(config: TrainConfig, optimizer: torch.optim.Optimizer) -> Scheduler | None:
    s, epochs = config.schedule, config.epochs
    freeze = config.optim.freeze_backbone_epochs
    if s.name == "plateau":
        if s.warmup_epochs:
            raise ConfigError("schedule.warmup_epochs works with cosine, step or none, not plateau")
        if freeze:
            raise ConfigError(
                "optim.freeze_backbone_epochs works with schedule cosine, step or none, not plateau"
            )
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=s.gamma, patience=s.patience
        )

    def factor(epoch: int) -> float:
        # the rate for epoch `epoch`: linear warm-up, then the chosen decay
        if epoch < s.warmup_epochs:
            return (epoch + 1) / (s.warmup_epochs + 1)
        if s.name == "cosine":
            progress = (epoch - s.warmup_epochs) / max(1, epochs - s.warmup_epochs)
            return 0.5 * (1 + math.cos(math.pi * progress))
        if s.name == "step":
            return s.gamma ** ((epoch - s.warmup_epochs) // s.step_epochs)
        return 1.0

    def backbone_factor(epoch: int) -> float:
        # a frozen backbone gets rate 0 (rather than requires_grad=False, which DDP's
        # bucketed gradients and a resumed optimizer would both have to be told about)
        return 0.0 if epoch < freeze else factor(epoch)

    factors: list[Callable[[int], float]] = [factor]
    if len(optimizer.param_groups) > 1:
        factors.append(backbone_factor)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factors)


def precision(requested: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None for fp32, whether a gradient scaler is needed)."""
    if requested == "auto":
        if device.type != "cuda":
            return None, False  # bf16 on CPUs without AMX is slower than fp32: opt in with precision=bf16
        return (torch.bfloat16, False) if torch.cuda.is_bf16_supported() else (torch.float16, True)
    if requested == "fp32":
        return None, False
    if requested == "bf16":
        return torch.bfloat16, False
    if device.type != "cuda":
        raise ConfigError(f"precision fp16 needs a CUDA GPU, not {device.type}; use bf16 or fp32")
    return torch.float16, True


def use_channels_last(requested: bool, network: nn.Module, device: torch.device) -> bool:
    """Whether to train in channels-last memory format (faster on CPUs, more so on GPUs).

    On CPUs with AVX-512, the backward pass of a 1×1 convolution with stride above 1 and
    fewer than 16 input channels in channels-last corrupts memory and kills the process
    (torch 2.14's oneDNN: face_resnet at width 8 has such a convolution in its first
    downsampling shortcut). Such a network trains in the default format there.
    """
    if not requested or device.type != "cpu" or "AVX512" not in torch.backends.cpu.get_cpu_capability():
        return requested
    risky = [
        name
        for name, module in network.named_modules()
        if isinstance(module, nn.Conv2d)
        and module.kernel_size == (1, 1)
        and max(module.stride) > 1
        and module.in_channels < 16
    ]
    if risky:
        log.info(
            "channels_last off: %s is a 1x1 strided conv on < 16 channels (oneDNN AVX-512 bug)", risky[0]
        )
    return not risky
