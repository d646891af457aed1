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


def network_from_checkpoint(state: dict[str, Any]) -> tuple[EmbeddingNetwork, PreprocessConfig]:
    """The trained embedding network (backbone + neck) with its weights, and its contract."""
    import timm

    from faceverify.models.registry import register_architectures

    register_architectures()
    args = dict(state["model_args"])
    backbone = timm.create_model(state["architecture"], pretrained=False, num_classes=0, **args)
    network = EmbeddingNetwork(backbone, state["embedding_dim"] if state["neck"] else None)
    network.load_state_dict(state["model"])
    return network, PreprocessConfig.from_dict(state["preprocess"])
