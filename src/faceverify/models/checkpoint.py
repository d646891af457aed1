"""Reading faceverify training checkpoints as models: the format, and the network in it.

A checkpoint rebuilds its embedding network alone (architecture, its arguments, the neck,
the preprocessing contract), so inference needs nothing from training: ``faceverify.train``
writes checkpoints through :data:`FORMAT` and reads them back with :func:`load_checkpoint`
to resume. A checkpoint holds only tensors and plain Python values, so it loads with
``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from faceverify.errors import ModelError
from faceverify.models.args import check_architecture, check_contract, check_model_args
from faceverify.models.neck import EmbeddingNetwork
from faceverify.preprocess import PreprocessConfig

FORMAT = "faceverify-checkpoint/1"
SUFFIXES = (".pt", ".pth", ".ckpt")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The whole state of a faceverify checkpoint; an error for anything else."""
    file = Path(path)
    if not file.is_file():
        raise ModelError(f"checkpoint '{file}' not found")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, another format
        raise ModelError(f"checkpoint '{file}' cannot be read ({exc})") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ModelError(f"'{file}' is not a faceverify training checkpoint ({FORMAT})")
    return state


def load_if_checkpoint(path: Path) -> dict[str, Any] | None:
    """The state of a faceverify checkpoint at ``path``, or None for any other file."""
    if path.suffix not in SUFFIXES or not path.is_file():
        return None  # the cheap test first: no torch.load for .safetensors and the like
    try:
        return load_checkpoint(path)
    except ModelError:
        return None


def network_from_checkpoint(
    state: dict[str, Any], source: str | Path = "checkpoint"
) -> tuple[EmbeddingNetwork, PreprocessConfig]:
    """The trained embedding network (backbone + neck) with its weights, and its contract.

    Everything read from ``state`` is checked before timm builds anything: a checkpoint
    is a file anyone can hand over (see :mod:`faceverify.models.args`).

    Args:
        state: the checkpoint's contents (:func:`load_checkpoint`).
        source: the checkpoint file, named in errors.
    """
    import timm

    architecture = check_architecture(state.get("architecture"), source=source)
    args = check_model_args(state.get("model_args", {}), source=source)
    args.pop("num_classes", None)  # the network is built headless whatever the file says
    embedding_dim = _neck_width(state, source)
    contract = check_contract(state.get("preprocess"), source=source)
    try:
        backbone = timm.create_model(architecture, pretrained=False, num_classes=0, **args)
        network = EmbeddingNetwork(backbone, embedding_dim)
        network.load_state_dict(state["model"])
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise ModelError(f"{source}: cannot rebuild its {architecture!r} network ({exc})") from exc
    return network, contract


def _neck_width(state: dict[str, Any], source: str | Path) -> int | None:
    """The embedding size of the checkpoint's neck; None when it has none."""
    neck, width = state.get("neck"), state.get("embedding_dim")
    if not isinstance(neck, bool):
        raise ModelError(f"{source}: 'neck' must be true or false, not {neck!r}")
    if not neck:
        return None
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ModelError(f"{source}: 'embedding_dim' must be a positive integer, not {width!r}")
    return width
