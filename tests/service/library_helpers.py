"""Helpers for the photo library tests: a folder of real photos, faces found by photo."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SHARED_FACES


def copy_shared_photos(target: Path) -> Path:
    """The shared photos copied (writable: the originals are read-only) to ``target/photos``."""
    if not SHARED_FACES.is_dir():
        pytest.skip(f"real face photos not found at {SHARED_FACES}")
    folder = target / "photos"
    for source in sorted(SHARED_FACES.rglob("*")):
        if source.is_file() and source.suffix.lower() in (".jpg", ".jpeg", ".png"):
            copy = folder / source.relative_to(SHARED_FACES)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, copy)
    return folder


def faces_of_photo(faces: list[dict[str, Any]], photo: str) -> list[dict[str, Any]]:
    """The faces (as the API lists them) of the photo whose path ends with ``photo``."""
    return [face for face in faces if face["photo"].endswith("/" + photo)]


def face_of_photo(faces: list[dict[str, Any]], photo: str) -> dict[str, Any]:
    """The one face of a photo showing one person."""
    (face,) = faces_of_photo(faces, photo)
    return face
