"""What a run writes besides checkpoints: its resolved config and per-epoch metrics."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

from faceverify.train.config import TrainConfig

log = logging.getLogger(__name__)
COLUMNS = (
    "epoch",
    "train_loss",
    "train_acc",
    "val_acc",
    "val_auc",
    "threshold",
    "threshold_far",
    "threshold_frr",
    "lr",
    "images_per_s",
    "seconds",
    "skipped_images",
)


class Logbook:
    """``config.yaml``, ``metrics.jsonl`` and ``metrics.csv`` in the run folder (+ TensorBoard)."""

    def __init__(self, out: Path, config: TrainConfig, *, after_epoch: int = -1) -> None:
        import yaml

        out.mkdir(parents=True, exist_ok=True)
        (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False), encoding="utf-8")
        self.jsonl, self.csv = out / "metrics.jsonl", out / "metrics.csv"
        self._keep_until(after_epoch)
        self.board = _tensorboard(out) if config.tensorboard else None

    def _keep_until(self, epoch: int) -> None:
        """On resume, forget epochs after the checkpoint's: they are about to run again."""
        if epoch < 0:
            self.jsonl.unlink(missing_ok=True)
            self.csv.unlink(missing_ok=True)
            return
        if self.jsonl.is_file():
            rows = [json.loads(line) for line in self.jsonl.read_text(encoding="utf-8").splitlines() if line]
            self.jsonl.unlink()
            self.csv.unlink(missing_ok=True)
            for row in rows:
                if row["epoch"] <= epoch:
                    self.write(row, board=False)

    def write(self, metrics: dict[str, Any], *, board: bool = True) -> None:
        with self.jsonl.open("a", encoding="utf-8") as stream:
            stream.write(json.dumps(metrics) + "\n")
        new = not self.csv.exists()
        with self.csv.open("a", newline="", encoding="utf-8") as stream:
            writer = csv.DictWriter(stream, fieldnames=COLUMNS, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(metrics)
        if board and self.board is not None:
            for key, value in metrics.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    self.board.add_scalar(key, value, metrics["epoch"] + 1)

    def close(self) -> None:
        if self.board is not None:
            self.board.close()


def _tensorboard(out: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("tensorboard is not installed (pip install tensorboard); metrics go to CSV/JSONL only")
        return None
    return SummaryWriter(str(out / "tensorboard"))
