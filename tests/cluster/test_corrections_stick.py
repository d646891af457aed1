"""A session of corrections, then 20% more photos: no corrected assignment changes.

Real faces (photos-dev, folder = person): 80% of the photos of 50 people are grouped, the
user renames a group and makes 5 merges, 5 splits, 10 moves and 10 "not this person"
marks; the other 20% of the photos arrive, and both a run adding them and a full run
must leave every corrected assignment as the user left it.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path
from typing import Any

import pytest

from faceverify.cluster import Library
from faceverify.evaluate.clusters import bcubed, cluster_metrics
from faceverify.gallery.gallery import Gallery
from faceverify.gallery.sqlite import SQLiteStore
from tests.cluster.conftest import dev_people


@pytest.fixture(scope="module")
def dev_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """80% of the photos of 50 people in a tree, and the other 20% to add later."""
    root = tmp_path_factory.mktemp("dev")
    chooser = random.Random(7)
    later: list[Path] = []
    for person in dev_people(50):
        photos = sorted(person.glob("*.jpg"))
        chooser.shuffle(photos)
        keep = max(2, round(len(photos) * 0.8))
        (root / "now" / person.name).mkdir(parents=True)
        for photo in photos[:keep]:
            shutil.copy(photo, root / "now" / person.name / photo.name)
        later += photos[keep:]
    return root / "now", later


def _grouped(tmp_path: Path, tree: Path, model: Any) -> tuple[Library, Path]:
    """A library of a copy of ``tree``, scanned and grouped, and that copy."""
    work = tmp_path / "photos"
    shutil.copytree(tree, work)
    library = Library(Gallery(SQLiteStore(tmp_path / "gallery", background=False), model))
    library.scan(work)
    library.group()
    return library, work


def _arrive(later: list[Path], work: Path) -> None:
    """The other 20% of the photos arrive in their people's folders."""
    for photo in later:
        shutil.copy(photo, work / photo.parent.name / photo.name)


def test_corrections_survive_new_photos_and_full_runs(
    tmp_path: Path, dev_tree: tuple[Path, list[Path]], dlib_model: Any
) -> None:
    tree, later = dev_tree
    library, work = _grouped(tmp_path, tree, dlib_model)
    with library.gallery:
        expected, rejected, named = _correct(library, random.Random(3))
        assert len(rejected) == 10 and len(expected) >= 30
        _arrive(later, work)
        assert library.scan(work).new == len(later) > 0
        for full in (False, True):
            library.group(full=full)
            groups = {f.id: f.group for f in library.faces()}
            changed = {
                face: (group, groups[face]) for face, group in expected.items() if groups[face] != group
            }
            assert not changed, f"{'full' if full else 'adding'} run moved corrected faces: {changed}"
            back = [(face, group) for face, group in rejected if groups[face] == group]
            assert not back, f"faces back in groups they were marked not to be: {back}"
            names = {g.id: g.name for g in library.groups()}
            assert names[named] == "Renamed Person"


def _correct(library: Library, chooser: random.Random) -> tuple[dict[int, int], list[tuple[int, int]], int]:
    """The scripted session; returns face -> group the user fixed, the (face, group) marks,
    and the named group."""
    from faceverify.cluster import CorrectionError

    expected: dict[int, int] = {}
    rejected: list[tuple[int, int]] = []
    groups = [g for g in library.groups() if g.faces >= 2]
    named = groups[0].id
    library.name(named, "Renamed Person")
    for face in library.faces(named):
        expected[face.id] = named
    merges = 0
    for target, other in zip(groups[1::2], groups[2::2]):
        if merges == 5:
            break
        try:
            kept = library.merge(target.id, [other.id])
        except CorrectionError:  # two faces of one photo, or a mark: refused, as it should be
            continue
        merges += 1
        for face in library.faces(kept):
            expected[face.id] = kept
    splits = 0
    for group in library.groups():
        if splits == 5 or group.faces < 3 or group.id in expected.values():
            continue
        faces = [f.id for f in library.faces(group.id)]
        new = library.split(group.id, faces[:1])
        splits += 1
        expected[faces[0]] = new
        for face in faces[1:]:
            expected[face] = group.id
    all_groups = [g.id for g in library.groups() if g.faces >= 1]
    free = [f for f in library.faces() if f.id not in expected and f.group is not None]
    chooser.shuffle(free)
    moves = 0
    for face in free:
        if moves == 10:
            break
        target = chooser.choice([g for g in all_groups if g != face.group])
        try:
            library.move(face.id, target)
        except CorrectionError:
            continue
        moves += 1
        expected[face.id] = target
    marks = 0
    for face in [f for f in library.faces() if f.group is not None]:
        if marks == 10:
            break
        if face.id in expected:  # confirmed by an earlier correction (a mark confirms the rest)
            continue
        rejected.append((face.id, int(face.group)))  # type: ignore[arg-type]
        library.reject(face.id, int(face.group))  # type: ignore[arg-type]
        marks += 1
        for other in library.faces(face.group):
            expected[other.id] = int(face.group)  # type: ignore[arg-type]
    assert (merges, splits, moves, marks) == (5, 5, 10, 10)
    return expected, rejected, named


def test_adding_photos_gives_the_groups_of_grouping_them_all(
    tmp_path: Path, dev_tree: tuple[Path, list[Path]], dlib_model: Any
) -> None:
    """The stated tolerance: BCubed F1 of the adding run's groups against a full run's ≥ 0.97."""
    tree, later = dev_tree
    library, work = _grouped(tmp_path, tree, dlib_model)
    with library.gallery:
        _arrive(later, work)
        library.scan(work)
        library.group()
        added = {f.id: f.group if f.group is not None else -f.id for f in library.faces()}
        library.group(full=True)
        full = {f.id: f.group if f.group is not None else -f.id for f in library.faces()}
        scored = cluster_metrics(library.export(), work)
    faces = sorted(added)
    agreement = bcubed([added[f] for f in faces], [full[f] for f in faces])
    assert agreement.f1 >= 0.97, agreement
    assert scored.bcubed.f1 >= 0.95, scored.describe()
