"""Self-describing training checkpoints.

A checkpoint rebuilds its embedding model alone (architecture, its arguments, the neck,
the preprocessing contract, the class names) and holds everything ``--resume`` needs to
continue exactly: optimizer, scheduler, gradient scaler, center-loss state and RNG states.
It holds only tensors and plain Python values, so it loads with ``weights_only=True``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from faceverify.errors import ModelError

FORMAT = "faceverify-checkpoint/1"
SUFFIXES = (".pt", ".pth", ".ckpt")


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically: a run killed while saving keeps its previous checkpoint."""
    temporary = path.with_name(f".{path.name}.tmp")
    torch.save({"format": FORMAT, **state, "rng": rng_state()}, temporary)
    temporary.replace(path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
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


def rng_state() -> dict[str, Any]:
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [
            np_name,
            torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            np_pos,
            np_has_gauss,
            np_gauss,
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, values, gauss = state["python"]
    random.setstate((version, tuple(values), gauss))
    name, keys, pos, has_gauss, gauss_np = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss_np))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def embedder_from_checkpoint(state: dict[str, Any]) -> torch.nn.Module:
    """The trained embedding network (backbone + neck), weights loaded."""
    import timm

    from faceverify.models.neck import FaceEmbedder
    from faceverify.models.registry import register_architectures

    register_architectures()
    args = dict(state["model_args"])
    backbone = timm.create_model(state["architecture"], pretrained=False, num_classes=0, **args)
    embedder = FaceEmbedder(backbone, state["embedding_dim"] if state["neck"] else None)
    embedder.load_state_dict(state["model"])
    embedder.pretrained_cfg.update(
        {"input_size": (3, *state["preprocess"]["input_size"]), **_contract_fields(state["preprocess"])}
    )
    return embedder


def _contract_fields(preprocess: dict[str, Any]) -> dict[str, Any]:
    return {k: preprocess[k] for k in ("interpolation", "mean", "std", "crop_pct", "crop_mode")}
