"""From a model name and a weights source to a network with its weights and its contract.

``load_network`` serves inference (:func:`faceverify.build_model` puts the network in a
runtime) and training (which adds its neck and heads) alike.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceverify.errors import ModelError
from faceverify.models.args import check_architecture
from faceverify.models.checkpoint import load_if_checkpoint, network_from_checkpoint
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


@dataclass(frozen=True)
class LoadedNetwork:
    """A headless network with its weights, and what artifacts record of it.

    Attributes:
        network: the module mapping model-ready input to pooled features.
        name: the model name artifacts record (e.g. ``convnext_atto.d2_in1k``).
        contract: the preprocessing contract the network is fed with (``load_network`` gives
            the weights' own; ``build_model`` applies the user's overrides to it).
        source: where the weights came from (hub repo, path, or ``random``).
        file: the weights file; None for random weights.
        calibration: the threshold calibration a training checkpoint carries (plain
            values, as :class:`faceverify.compare.calibration.Calibration` fields); None otherwise.
    """

    network: torch.nn.Module
    name: str
    contract: PreprocessConfig
    source: str
    file: Path | None
    calibration: dict[str, Any] | None = None


def load_network(
    name: str | None = None,
    *,
    weights: WeightsLike = None,
    cache_dir: str | None = None,
    model_args: dict[str, Any] | None = None,
) -> LoadedNetwork:
    """The network ``name`` with ``weights`` loaded, on the CPU (see
    :func:`faceverify.build_model` for both arguments).

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
        load_into(backbone, read_state_dict(plan.file, plan.model_name), source=plan.source)
    contract = PreprocessConfig.from_timm(timm.data.resolve_model_data_config(backbone))
    # face networks say which alignment their chips need (timm's config has no place for it)
    template = getattr(backbone, "face_template", None)
    return LoadedNetwork(
        network=backbone,
        name=plan.model_name if plan.pretrained_cfg is None else _folder_name(plan),
        contract=replace(contract, face_template=template) if template else contract,
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
    architecture = check_architecture(state.get("architecture"), source=path)
    if name is not None and name.split(".")[0] != architecture.split(".")[0]:
        raise ModelError(
            f"checkpoint '{path}' holds a {architecture!r} model, not {name!r}; drop --model "
            "(a checkpoint names its own architecture)"
        )
    network, contract = network_from_checkpoint(state, path)
    source = str(path.resolve())
    calibration = state.get("calibration")  # absent from checkpoints of older runs
    return LoadedNetwork(network, architecture, contract, source, path.resolve(), calibration)


def _create_backbone(plan: WeightsPlan, extra: dict[str, Any]) -> torch.nn.Module:
    """The headless backbone of ``plan``, with the user's own ``extra`` arguments on top.

    ``plan.model_args`` and ``plan.pretrained_cfg`` came from a file, and
    :func:`~faceverify.models.weights.plan_weights` checked them; ``extra`` is what the
    user passed in Python or a training config, their own choice.
    """
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
