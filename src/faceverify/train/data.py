"""Folder-per-identity datasets for training, with unreadable images skipped and counted."""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from faceverify.decode import iter_image_paths, load_image
from faceverify.errors import ConfigError, ImageError

Sample = tuple[torch.Tensor, int] | None


class IdentityFolder(Dataset[Sample]):
    """``root/<identity>/*.jpg``; identities are numbered in sorted order.

    Args:
        root: the folder of identity folders.
        transform: turns an RGB image into a tensor (augmentation and normalisation).
        classes: use this identity list (a validation set must use the training one).
        exclude: identities to leave out altogether (those held out for calibration).
    """

    def __init__(
        self,
        root: str | Path,
        transform: Callable[[Any], torch.Tensor | np.ndarray],
        classes: list[str] | None = None,
        *,
        exclude: Collection[str] = (),
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ConfigError(f"dataset folder '{self.root}' not found")
        folders = sorted(p for p in self.root.iterdir() if p.is_dir() and p.name not in exclude)
        if not folders:
            raise ConfigError(
                f"dataset folder '{self.root}' has no identity folders (<root>/<identity>/*.jpg)"
            )
        self.classes = classes if classes is not None else [p.name for p in folders]
        index = {name: i for i, name in enumerate(self.classes)}
        unknown = [p.name for p in folders if p.name not in index]
        if unknown:
            raise ConfigError(
                f"'{self.root}' has identities the training set lacks, e.g. {unknown[:3]}; "
                "validation identities must be training identities"
            )
        self.samples: list[tuple[Path, int]] = []
        for folder in folders:
            files = list(iter_image_paths([folder]))
            if not files:
                raise ConfigError(f"identity folder '{folder}' holds no images; remove it or add images")
            self.samples += [(f, index[folder.name]) for f in files]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> Sample:
        path, label = self.samples[i]
        try:
            image = self.transform(load_image(path))
            # the inference contract gives numpy arrays (it runs without torch); training's tensors
            return (torch.from_numpy(image) if isinstance(image, np.ndarray) else image), label
        except ImageError:
            return None  # counted by collate(); one bad file must not stop a run


def collate(batch: list[Sample]) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Stack the good samples; the third item counts the skipped ones."""
    good = [s for s in batch if s is not None]
    skipped = len(batch) - len(good)
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), skipped
    images = torch.stack([s[0] for s in good])
    labels = torch.tensor([s[1] for s in good], dtype=torch.long)
    return images, labels, skipped
