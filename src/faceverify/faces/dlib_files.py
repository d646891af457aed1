"""Where dlib's model files are: the ``face-recognition-models`` package, found by path.

That package's ``__init__`` imports ``pkg_resources``, which recent setuptools no
longer ships, so it is never imported here: its folder is located with
``importlib.util.find_spec``, which does not execute the package.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from faceverify.errors import ConfigError, MissingDependencyError, ModelError

PACKAGE = "face_recognition_models"
INSTALL_HINT = "pip install face-recognition-models"

#: The files faceverify uses, by role.
HOG_LANDMARKS = "shape_predictor_5_face_landmarks.dat"
CNN_DETECTOR = "mmod_human_face_detector.dat"
RECOGNITION_NET = "dlib_face_recognition_resnet_model_v1.dat"
FILES = (CNN_DETECTOR, HOG_LANDMARKS, RECOGNITION_NET)


def models_folder() -> Path:
    """The ``models`` folder of the installed ``face-recognition-models`` package.

    Raises:
        MissingDependencyError: the package is not installed.
    """
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise MissingDependencyError(
            f"dlib's face model files are not installed (package '{PACKAGE}' not found); run: {INSTALL_HINT}"
        )
    return Path(locations[0]) / "models"


def dlib_model_path(filename: str, folder: str | os.PathLike[str] | None = None) -> Path:
    """The path of one of dlib's model files.

    Args:
        filename: one of :data:`FILES`.
        folder: a folder holding the file; by default the installed package's.

    Raises:
        ConfigError: ``filename`` is not one of :data:`FILES`.
        MissingDependencyError: the package is not installed.
        ModelError: the package is installed but the file is missing.
    """
    if filename not in FILES:
        raise ConfigError(f"unknown dlib model file '{filename}'; valid names: {', '.join(FILES)}")
    base = models_folder() if folder is None else Path(folder)
    path = base / filename
    if not path.is_file():
        raise ModelError(f"dlib model file '{path}' is missing; reinstall with: {INSTALL_HINT}")
    return path
