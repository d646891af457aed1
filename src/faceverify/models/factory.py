"""``build_model``: from a name and a weights source to a ready embedding model."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceverify.checks import check_threshold
from faceverify.device import DeviceLike, resolve_device
from faceverify.errors import ModelError
from faceverify.models.checkpoint import load_if_checkpoint, network_from_checkpoint
from faceverify.models.embedder import EmbeddingModel
from faceverify.models.registry import DEFAULT_MODEL
from faceverify.models.weights import (
    RANDOM,
    WeightsLike,
    WeightsPlan,
    load_into,
    plan_weights,
    read_state_dict,
)
from faceverify.preprocess import PreprocessConfig

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def build_model(
    name: str | None = None,
    *,
    weights: WeightsLike = None,
    device: DeviceLike = None,
    input_size: int | Sequence[int] | None = None,
    crop_pct: float | None = None,
    interpolation: str | None = None,
    threshold: float | None = None,
    channels_last: bool = True,
    cache_dir: str | None = None,
    model_args: dict[str, Any] | None = None,
) -> EmbeddingModel:
    """Build a face-embedding model: a pretrained CNN without its classification layer.

    Args:
        name: a timm model name. The default ``convnext_atto.d2_in1k`` is small and fast
            (320-dim embeddings, not 768: that is ConvNeXt-Tiny). ``faceverify models``
            lists curated choices per family (ResNet, VGG, Inception, DenseNet,
            EfficientNet, MobileNet, ConvNeXt); any timm name works, as do
            ``hf-hub:org/repo`` and ``local-dir:PATH``.
        weights: None downloads from the Hugging Face hub (cached; set HF_HUB_OFFLINE=1
            to stay offline once cached). A path to a ``.safetensors`` file or to a folder
            with ``model.safetensors`` (and optionally timm's ``config.json``) loads
            local weights. ``"random"`` initialises randomly (for training or tests).
        device: None or ``"auto"`` uses the GPU when present; ``"cpu"``, ``"cuda"``,
            ``"cuda:1"``, ``"mps"`` force one.
        input_size: override the network input size, e.g. 112 for small face crops; the
            default is the pretrained size (224 for most models). Smaller is faster.
        crop_pct: fraction of the resized image kept by the centre crop. The pretrained
            value (0.875 for ConvNeXt-Atto) suits photos; use 1.0 for tight face crops.
        interpolation: override the resize filter (``bicubic``, ``bilinear``...).
        threshold: a cosine threshold to carry. None uses the threshold stored by
            ``faceverify calibrate`` for these weights and preprocessing, else 0.5.
        channels_last: feed the network channels-last tensors (faster on GPUs and most CPUs).
        cache_dir: Hugging Face cache folder; None uses the standard one.
        model_args: extra architecture arguments (e.g. ``{"width": 32}`` for face_resnet).

    Returns:
        An :class:`EmbeddingModel` in eval mode on the chosen device.

    Raises:
        ModelError: unknown name, or weights that do not fit the architecture.
        WeightsNotFoundError: the hub cannot be reached and no local weights were given;
            the message says how to supply them.
        DeviceError: the requested device does not exist here.
    """
    import torch

    target = resolve_device(device)
    loaded = load_network(name, weights=weights, cache_dir=cache_dir, model_args=model_args)
    contract = loaded.contract.override(input_size=input_size, crop_pct=crop_pct, interpolation=interpolation)
    model = EmbeddingModel(
        loaded.network,
        name=loaded.name,
        preprocess=contract,
        weights_source=loaded.source,
        weights_file=loaded.file,
        threshold=None if threshold is None else check_threshold(threshold),
        channels_last=channels_last,
    )
    if threshold is None:
        _load_calibrated_threshold(model)
    model.eval().to(target)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    log.info("built %s (%d-dim) from %s on %s", model.name, model.embedding_dim, loaded.source, target)
    return model


@dataclass(frozen=True)
class LoadedNetwork:
    """A headless network with its weights, on the CPU, and what artifacts record of it.

    Attributes:
        network: the module mapping model-ready input to pooled features.
        name: the model name artifacts record (e.g. ``convnext_atto.d2_in1k``).
        contract: the preprocessing contract of the weights, before any user override.
        source: where the weights came from (hub repo, path, or ``random``).
        file: the weights file; None for random weights.
    """

    network: torch.nn.Module
    name: str
    contract: PreprocessConfig
    source: str
    file: Path | None


def load_network(
    name: str | None = None,
    *,
    weights: WeightsLike = None,
    cache_dir: str | None = None,
    model_args: dict[str, Any] | None = None,
) -> LoadedNetwork:
    """The network ``name`` with ``weights`` loaded (see :func:`build_model` for both).

    A faceverify training checkpoint as ``weights`` names its own architecture, neck and
    contract; any other source is planned by :func:`~faceverify.models.weights.plan_weights`.
    """
    import timm

    checkpoint = _training_checkpoint(weights)
    if checkpoint is not None:
        return _from_checkpoint(checkpoint, Path(str(weights)), name)
    plan = plan_weights(name or DEFAULT_MODEL, weights, name_given=name is not None, cache_dir=cache_dir)
    backbone = _create_backbone(plan, model_args or {})
    if plan.file is not None:
        load_into(backbone, read_state_dict(plan.file), source=plan.source)
    return LoadedNetwork(
        network=backbone,
        name=plan.model_name if plan.pretrained_cfg is None else _folder_name(plan),
        contract=PreprocessConfig.from_timm(timm.data.resolve_model_data_config(backbone)),
        source=plan.source,
        file=plan.file,
    )


def _training_checkpoint(weights: WeightsLike) -> dict[str, Any] | None:
    """The state of a faceverify training checkpoint, if ``weights`` is one."""
    if weights is None or weights == RANDOM:
        return None
    # None for plain PyTorch checkpoints too: the state-dict path loads those
    return load_if_checkpoint(Path(weights).expanduser())


def _from_checkpoint(state: dict[str, Any], path: Path, name: str | None) -> LoadedNetwork:
    architecture = state["architecture"]
    if name is not None and name.split(".")[0] != architecture.split(".")[0]:
        raise ModelError(
            f"checkpoint '{path}' holds a {architecture!r} model, not {name!r}; drop --model "
            "(a checkpoint names its own architecture)"
        )
    network, contract = network_from_checkpoint(state)
    source = str(path.resolve())
    return LoadedNetwork(network, architecture, contract, source, path.resolve())


def _create_backbone(plan: WeightsPlan, extra: dict[str, Any]) -> torch.nn.Module:
    import timm

    args = {k: v for k, v in {**plan.model_args, **extra}.items() if k != "num_classes"}
    try:
        return timm.create_model(
            plan.model_name, pretrained=False, num_classes=0, pretrained_cfg=plan.pretrained_cfg, **args
        )
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ModelError(f"cannot build model {plan.model_name!r}: {exc}") from exc


def _folder_name(plan: WeightsPlan) -> str:
    cfg = plan.pretrained_cfg or {}
    tag = cfg.get("tag")
    return f"{plan.model_name}.{tag}" if tag else plan.model_name


def _load_calibrated_threshold(model: EmbeddingModel) -> None:
    from faceverify.calibration import load_calibration

    calibration = load_calibration(model)
    if calibration is not None:
        model.threshold = calibration.threshold
        log.info("using the calibrated %s", calibration.describe())
