"""Margin heads converge where plain softmax does, with the shipped defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from faceverify.train.config import load_config
from faceverify.train.loop import train

#: How far below softmax's AUC a margin head may end (see the test's docstring).
TOLERANCE = 0.2


def _held_out_auc(fast: list[str], head: str, out: Path) -> float:
    settings = [*fast, "epochs=4", f"loss.head={head}", f"out={out}"]
    return float(train(load_config(None, settings))["val_auc"])


@pytest.mark.slow
def test_arcface_and_cosface_reach_softmax_auc_on_unseen_people(fast: list[str], tmp_path: Path) -> None:
    """Issue 9: ArcFace with its full margin from the first step did not fit a small set.

    Same data, network, optimizer and 4 epochs for the three heads; the margin heads use
    the defaults (margin warm-up over 2 epochs, scale 16, unit-variance class rows).
    Measured with torch 2.14.1, seeds 0/1/2: softmax 0.953/0.948/0.891, ArcFace
    0.804/0.932/0.833, CosFace 0.808/0.921/0.838: in 4 epochs the margin heads end at most
    0.15 below softmax (seed 0), level on the others; TOLERANCE sits above that worst gap.
    The old defaults (no warm-up, scale 30, class rows of std 0.01) left ArcFace at AUC
    0.58 and train accuracy 0.07 after 6 epochs on this set, where softmax reached 0.99:
    a gap of 0.4, which this comparison fails.
    """
    softmax = _held_out_auc(fast, "softmax", tmp_path / "softmax")
    for head in ("arcface", "cosface"):
        auc = _held_out_auc(fast, head, tmp_path / head)
        assert auc >= softmax - TOLERANCE, f"{head} AUC {auc:.3f}, softmax {softmax:.3f}"
