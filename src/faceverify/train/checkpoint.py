"""Writing training checkpoints, and the RNG states that make a resumed run exact.

Besides what rebuilds the model (read by :mod:`faceverify.models.checkpoint`), a
checkpoint holds everything ``--resume`` needs to continue exactly: optimizer, scheduler,
gradient scaler, center-loss state and RNG states.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from faceverify.models.checkpoint import FORMAT
from faceverify.paths import atomic_path


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically: a run killed while saving keeps its previous checkpoint."""
    with atomic_path(path) as temporary:
        torch.save({"format": FORMAT, **state, "rng": rng_state()}, temporary)


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
