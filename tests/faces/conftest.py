"""Real photos, dlib and the converted dlib network, each skipped when absent.

Detection results are cached per photo for the session: HOG detection is the slow part
of these tests, and every test reads the same few photos.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from faceverify.errors import MissingDependencyError

PHOTOS = Path(__file__).resolve().parents[2].parent / "shared" / "faces"
#: Faces in the shared photos are large: detecting at upsample 0 finds them all, fast.
UPSAMPLE = 0


@pytest.fixture(scope="session")
def photos() -> Path:
    if not PHOTOS.is_dir():
        pytest.skip(f"real face photos not found at {PHOTOS}")
    return PHOTOS


@pytest.fixture(scope="session")
def dlib_ready() -> None:
    """Skip unless dlib and dlib's model files are installed."""
    pytest.importorskip("dlib")
    from faceverify.faces import dlib_files

    try:
        dlib_files.models_folder()
    except MissingDependencyError:
        pytest.skip("face-recognition-models is not installed")


@pytest.fixture(scope="session")
def pixels(photos: Path) -> Callable[[str], np.ndarray]:
    """RGB pixels of a shared photo by relative name, decoded once."""
    from faceverify.decode import load_image

    cache: dict[str, np.ndarray] = {}

    def load(name: str) -> np.ndarray:
        if name not in cache:
            cache[name] = np.asarray(load_image(photos / name))
        return cache[name]

    return load


@pytest.fixture(scope="session")
def faces_in(dlib_ready: None, pixels: Callable[[str], np.ndarray]) -> Callable[[str], list]:
    """The HOG detections of a shared photo (default settings but upsample 0), cached."""
    from faceverify.faces import detect_faces

    cache: dict[str, list] = {}

    def detect(name: str) -> list:
        if name not in cache:
            cache[name] = detect_faces(pixels(name), upsample=UPSAMPLE)
        return cache[name]

    return detect


@pytest.fixture(scope="session")
def dlib_net(dlib_ready: None) -> Any:
    """dlib's face network converted to torch, with the real weights."""
    from faceverify.faces.dlib_files import RECOGNITION_NET, dlib_model_path
    from faceverify.models.dlib_resnet import load_dlib_face_resnet

    return load_dlib_face_resnet(dlib_model_path(RECOGNITION_NET))


@pytest.fixture(scope="session")
def describe(dlib_net: Any, pixels: Any, faces_in: Any) -> Callable[[str], np.ndarray]:
    """Descriptors of every detected face of a photo (largest first), via faceverify's chips; cached."""
    import torch

    from faceverify.faces import align_faces
    from faceverify.models.dlib_resnet import chips_to_tensor

    cache: dict[str, np.ndarray] = {}

    def run(name: str) -> np.ndarray:
        if name not in cache:
            chips = align_faces(pixels(name), faces_in(name), "dlib150")
            with torch.inference_mode():
                cache[name] = dlib_net(chips_to_tensor(chips)).numpy()
        return cache[name]

    return run
