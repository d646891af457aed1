"""Clips made from the shared photos, a gallery of some of their people, and one watch of
the main clip shared by the tests that only read its events."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import SHARED_FACES

pytest.importorskip("av")
pytest.importorskip("trackers")

#: Enrolled in the gallery; alex_lacamoire walks past too, a stranger to it.
ENROLLED = ("obama", "biden", "rose_leslie")
FPS = 12.0
SIZE = (640, 360)


@dataclass(frozen=True)
class Clip:
    path: Path
    walkers: dict[str, Any]  # name -> Walker


def cut_out(photo: Path) -> np.ndarray:
    """A head-and-shoulders cut-out of the largest face of a shared photo."""
    from faceverify.decode import load_image
    from faceverify.photos import FaceOptions, find_faces
    from faceverify.video.scenes import portrait

    pixels = np.asarray(load_image(photo))
    return portrait(pixels, find_faces(pixels, FaceOptions())[0].box)


@pytest.fixture(scope="session")
def faces_root() -> Path:
    if not SHARED_FACES.is_dir():
        pytest.skip(f"real face photos not found at {SHARED_FACES}")
    return SHARED_FACES


@pytest.fixture(scope="session")
def cut_outs(faces_root: Path) -> dict[str, np.ndarray]:
    """Probe photos (not the enrolled ones) of each person."""
    return {
        "obama": cut_out(faces_root / "probes" / "obama1.jpg"),
        "biden": cut_out(faces_root / "gallery" / "biden" / "biden2.jpg"),
        "rose_leslie": cut_out(faces_root / "gallery" / "rose_leslie" / "img2.jpg"),
        "alex_lacamoire": cut_out(faces_root / "probes" / "alex_lacamoire1.jpg"),
        "kit_harington": cut_out(faces_root / "gallery" / "kit_harington" / "john1.jpeg"),
    }


@pytest.fixture(scope="session")
def dlib_model() -> Any:
    from faceverify import build_model

    return build_model("dlib_resnet_v1")


@pytest.fixture(scope="session")
def gallery_path(tmp_path_factory: pytest.TempPathFactory, faces_root: Path, dlib_model: Any) -> Path:
    """A gallery of obama, biden and rose_leslie (their gallery photos, one each for rose);
    alex_lacamoire and kit_harington are strangers to it."""
    from faceverify import open_gallery

    folder = tmp_path_factory.mktemp("video-gallery") / "gallery"
    photos = {
        "obama": ["obama.jpg", "obama2.jpg"],
        "biden": ["biden.jpg"],
        "rose_leslie": ["img1.jpg"],
    }
    with open_gallery(folder, model=dlib_model) as gallery:
        for name, files in photos.items():
            gallery.enroll(name, [str(faces_root / "gallery" / name / f) for f in files])
    return folder


def walk_clip(path: Path, cut_outs: dict[str, np.ndarray]) -> Clip:
    """Obama and biden cross each other (at different heights), rose_leslie enters and
    stops short of the far side, alex_lacamoire (a stranger) walks in last."""
    from faceverify.video.scenes import Walker, render, write_clip

    walkers = {
        "obama": Walker(cut_outs["obama"], 0.0, 4.0, (-0.1, 0.35), (1.1, 0.4), 0.5),
        "biden": Walker(cut_outs["biden"], 0.5, 4.5, (1.1, 0.65), (-0.1, 0.6), 0.5),
        "rose_leslie": Walker(cut_outs["rose_leslie"], 4.5, 7.0, (-0.1, 0.5), (0.6, 0.5), 0.5),
        "alex_lacamoire": Walker(cut_outs["alex_lacamoire"], 7.5, 10.0, (1.1, 0.45), (0.3, 0.5), 0.5),
    }
    write_clip(path, render(list(walkers.values()), size=SIZE, fps=FPS, duration=10.5), fps=FPS)
    return Clip(path, walkers)


@pytest.fixture(scope="session")
def walk(tmp_path_factory: pytest.TempPathFactory, cut_outs: dict[str, np.ndarray]) -> Clip:
    return walk_clip(tmp_path_factory.mktemp("clips") / "walk.mp4", cut_outs)


@dataclass(frozen=True)
class Watched:
    events: list[dict[str, Any]]
    summary: dict[str, Any]


@pytest.fixture(scope="session")
def watched(walk: Clip, gallery_path: Path, dlib_model: Any) -> Watched:
    """The walk clip watched once with every frame processed (the tests read its events)."""
    from faceverify import WatchOptions, open_gallery, watch

    with open_gallery(gallery_path, model=dlib_model) as gallery:
        run = watch(walk.path, gallery, options=WatchOptions(speed=0))
        events = [event.to_dict() for event in run]
    return Watched(events, run.summary.to_dict())
