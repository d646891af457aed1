"""A small synthetic dataset and fast settings, so real training runs take seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from faceverify.data.synthetic_faces import generate


@pytest.fixture(scope="session")
def synth_root(session_dir: Path) -> Path:
    """30 training identities × 12 images and 12 held-out identities, 32×32 pixels."""
    root = session_dir / "synth"
    if not root.is_dir():
        generate(
            root, identities=30, images_per_identity=12, held_out=12, images_per_held_out=4, size=32, seed=1
        )
    return root


@pytest.fixture
def fast(synth_root: Path, tmp_path: Path) -> list[str]:
    """Overrides for a narrow course ResNet (width 16) at 32×32 on the synthetic data."""
    return [
        f"data.root={synth_root}",
        "data.workers=0",
        "model.args={width: 16}",
        "model.input_size=32",
        "batch_size=32",
        "optim.lr=0.05",
        f"out={tmp_path / 'run'}",
    ]
