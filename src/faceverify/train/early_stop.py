"""Stopping a run when its validation score has stopped improving.

Every rank keeps its own :class:`EarlyStop` and feeds it the metrics that rank 0 broadcast
after validation, so all ranks reach the same verdict in the same epoch and leave the
loop together (a rank that stopped alone would leave the others waiting in a collective).
The state travels in the checkpoint, so a resumed run counts its patience from where the
interrupted one was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from faceverify.train.config import EarlyStopConfig


def validation_score(metrics: dict[str, Any]) -> tuple[str, float] | None:
    """The score that decides: pair AUC on held-out people, else identity accuracy."""
    for key in ("val_auc", "val_acc"):
        if key in metrics:
            return key, float(metrics[key])
    return None


@dataclass
class EarlyStop:
    """Patience counting over epochs; :meth:`update` says why to stop, or None."""

    config: EarlyStopConfig
    best: float = -float("inf")
    best_epoch: int = -1

    def update(self, epoch: int, metrics: dict[str, Any]) -> str | None:
        scored = validation_score(metrics)
        if self.config.patience is None or scored is None:
            return None
        key, value = scored
        if value > self.best + self.config.min_delta:
            self.best, self.best_epoch = value, epoch
            return None
        if epoch - self.best_epoch < self.config.patience:
            return None
        return (
            f"{key} has not improved by more than {self.config.min_delta:g} for "
            f"{epoch - self.best_epoch} epochs (best {self.best:.4f} at epoch {self.best_epoch + 1}; "
            f"early_stop.patience {self.config.patience})"
        )

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if state:  # checkpoints written before early stopping existed have none
            self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])
