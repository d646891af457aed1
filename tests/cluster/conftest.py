"""Photo libraries of real faces, built in temporary folders from ../shared (never copied
into the project)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import SHARED_FACES

PHOTOS_DEV = SHARED_FACES.parent / "photos-dev" / "people"


@pytest.fixture(scope="session")
def dlib_model() -> object:
    from faceverify import build_model

    return build_model("dlib_resnet_v1")


def photo_tree(target: Path) -> Path:
    """The shared faces as a library would meet them: people's photos in folders, group
    photos, a photo cut by the frame, a duplicate file, a photo with no face and a file that
    is no image."""
    if not SHARED_FACES.is_dir():
        pytest.skip(f"real face photos not found at {SHARED_FACES}")
    for person in (SHARED_FACES / "gallery").iterdir():
        shutil.copytree(person, target / "people" / person.name)
    shutil.copytree(SHARED_FACES / "probes", target / "events")
    shutil.copy(SHARED_FACES / "scenes" / "obama_partial_face.jpg", target / "events")
    shutil.copy(SHARED_FACES / "probes" / "obama1.jpg", target / "events" / "copy of obama1.jpg")
    from PIL import Image

    Image.new("RGB", (120, 90), (90, 140, 200)).save(target / "events" / "sky.png")
    (target / "events" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return target


def dev_people(count: int) -> list[Path]:
    """Folders of ``count`` people of photos-dev with at least 3 photos (skips without it)."""
    if not PHOTOS_DEV.is_dir():
        pytest.skip(f"photos-dev not found at {PHOTOS_DEV}")
    folders = sorted(p for p in PHOTOS_DEV.iterdir() if len(list(p.glob("*.jpg"))) >= 3)
    return folders[:count]
