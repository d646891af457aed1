"""A photo library in an embedded gallery, with real faces: scanning, grouping, corrections."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from faceverify.cluster import CorrectionError, Library
from faceverify.cluster import scan as scan_module
from faceverify.cluster.scan import ScanReport
from faceverify.errors import UnknownFaceError, UnknownGroupError
from faceverify.gallery.gallery import Gallery
from faceverify.gallery.sqlite import SQLiteStore
from tests.cluster.conftest import photo_tree


def _library(folder: Path, model: Any, **options: Any) -> Library:
    return Library(Gallery(SQLiteStore(folder, background=False), model), **options)


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory, dlib_model: Any) -> tuple[Path, Path, ScanReport]:
    """One tree of photos and a gallery that has scanned it (shared: copy before writing)."""
    root = tmp_path_factory.mktemp("library")
    tree = photo_tree(root / "photos")
    template = _library(root / "template", dlib_model)
    with template.gallery:
        report = template.scan(tree)
    return tree, root / "template", report


@pytest.fixture
def tree(scanned: tuple[Path, Path, ScanReport]) -> Path:
    return scanned[0]


@pytest.fixture
def library(tmp_path: Path, scanned: tuple[Path, Path, ScanReport], dlib_model: Any) -> Iterator[Library]:
    """A library that has scanned ``tree`` already (its own copy of the gallery)."""
    shutil.copytree(scanned[1], tmp_path / "gallery")
    lib = _library(tmp_path / "gallery", dlib_model)
    yield lib
    lib.gallery.close()


@pytest.fixture
def fresh(tmp_path: Path, dlib_model: Any) -> Iterator[Library]:
    lib = _library(tmp_path / "fresh", dlib_model)
    yield lib
    lib.gallery.close()


@pytest.fixture
def own_tree(tmp_path: Path) -> Path:
    """People's photos only (9): for tests that change files or scan again."""
    return photo_tree(tmp_path / "photos") / "people"


def _face_of(library: Library, photo: str, *, largest: bool = True) -> int:
    faces = [f for f in library.faces() if f.photo.endswith(photo)]
    assert faces, photo
    width = lambda f: f.box["right"] - f.box["left"]  # noqa: E731
    return max(faces, key=width).id if largest else min(faces, key=width).id


def _group_of(library: Library, face: int) -> int | None:
    return next(f.group for f in library.faces() if f.id == face)


def test_a_scan_reads_every_photo_and_reports_the_bad_ones(
    library: Library, scanned: tuple[Path, Path, ScanReport]
) -> None:
    report = scanned[2]
    assert report.photos == 18 and report.new == 18
    assert [Path(p).name for p, _ in report.failed] == ["broken.jpg"]
    assert report.no_face == 1  # the sky
    assert report.duplicates == 1  # the copy of obama1.jpg
    assert report.faces_added >= 16  # group photos hold two faces each
    grouped = library.group()
    assert grouped.mode == "full" and grouped.groups >= 4
    obama = {_group_of(library, _face_of(library, p)) for p in ("obama/obama.jpg", "copy of obama1.jpg")}
    biden = _group_of(library, _face_of(library, "biden/biden.jpg"))
    assert len(obama) == 1 and None not in obama and biden not in obama
    kit = {
        _group_of(library, _face_of(library, p)) for p in ("kit_harington/john1.jpeg", "johnsnow_test1.jpg")
    }
    assert len(kit) == 1 and None not in kit
    exported = library.export()
    statuses = {Path(p["path"]).name: p["status"] for p in exported["photos"]}
    # the first of two identical files (in path order) is the photo, the other its duplicate
    assert statuses["obama1.jpg"] == "duplicate" and statuses["copy of obama1.jpg"] == "ok"
    assert statuses["broken.jpg"] == "failed" and statuses["sky.png"] == "no_face"
    twin = next(p for p in exported["photos"] if p["path"].endswith("/obama1.jpg"))
    assert twin["faces"] and twin["faces"][0]["group"] in obama  # it shows its twin's face


def test_a_rescan_reads_only_what_changed(fresh: Library, own_tree: Path) -> None:
    library, tree = fresh, own_tree
    library.scan(tree)
    library.group()
    again = library.scan(tree)
    assert (again.new, again.changed, again.removed, again.faces_added) == (0, 0, 0, 0)
    # one photo replaced by another, one removed, one touched without a change of bytes
    from PIL import Image, ImageOps

    ImageOps.mirror(Image.open(tree / "biden" / "biden.jpg")).save(tree / "obama" / "obama.jpg")
    gone = _face_of(library, "alex_lacamoire/img1.jpg")
    (tree / "alex_lacamoire" / "img1.jpg").unlink()
    touched = tree / "kit_harington" / "john2.jpeg"
    touched.write_bytes(touched.read_bytes())
    report = library.scan(tree)
    assert (report.changed, report.removed, report.new) == (1, 1, 0)
    assert report.photos == 8
    assert report.unchanged == report.photos - 1  # the touched photo counts as unchanged
    assert gone not in {f.id for f in library.faces()}
    library.group()
    replaced = _face_of(library, "obama/obama.jpg")
    assert _group_of(library, replaced) == _group_of(library, _face_of(library, "biden/biden.jpg"))


def test_a_run_killed_mid_scan_leaves_whole_photos_and_resumes(
    fresh: Library, own_tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    library, tree = fresh, own_tree
    monkeypatch.setattr(scan_module, "CHUNK", 4)
    real, calls = scan_module._write_photo, []

    def dying(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 6:  # the second photo of the second chunk
            raise KeyboardInterrupt
        real(*args, **kwargs)

    monkeypatch.setattr(scan_module, "_write_photo", dying)
    with pytest.raises(KeyboardInterrupt):
        library.scan(tree)
    kept = library.export()["photos"]
    assert len(kept) == 4  # the first chunk only: the second was rolled back whole
    monkeypatch.setattr(scan_module, "_write_photo", real)
    report = library.scan(tree)
    assert report.new == 5 and report.unchanged == 4
    faces = library.faces()
    assert (
        len({f.id for f in faces})
        == len(faces)
        == report.faces_added + sum(len(p["faces"]) for p in kept if p["status"] == "ok")
    )


def test_named_groups_are_gallery_people_and_corrections_stick(library: Library, tree: Path) -> None:
    library.group()
    obama_face = _face_of(library, "obama/obama.jpg")
    obama = _group_of(library, obama_face)
    assert obama is not None
    enrolled = library.name(obama, "Barack Obama")
    assert enrolled >= 2
    people = {p.name: p.faces for p in library.gallery.people()}
    assert people["Barack Obama"] == enrolled
    probe = tree / "events" / "obama1.jpg"
    assert library.gallery.identify(probe).name == "Barack Obama"
    # "not this person" on one of the named group's faces: it leaves, and the gallery with it
    probe_face = _face_of(library, "events/copy of obama1.jpg")
    library.reject(probe_face, obama)
    assert _group_of(library, probe_face) is None
    assert {p.name: p.faces for p in library.gallery.people()}["Barack Obama"] == enrolled - 1
    # a move into a group the face was marked not to be is a contradiction
    with pytest.raises(CorrectionError, match=rf"face {probe_face}.*group {obama}"):
        library.move(probe_face, obama)
    # moving Biden's face into its own new group, then naming and merging
    biden_face = _face_of(library, "biden/biden.jpg")
    own = library.move(biden_face, None)
    assert _group_of(library, biden_face) == own
    for full in (False, True):
        library.group(full=full)
        assert _group_of(library, probe_face) != obama
        assert _group_of(library, biden_face) == own
        assert _group_of(library, obama_face) == obama
    names = {g.id: g.name for g in library.groups()}
    assert names[obama] == "Barack Obama"
    with pytest.raises(CorrectionError, match="Barack Obama"):
        library.name(own, "Barack Obama")


def test_contradictions_are_refused_naming_both(library: Library, tree: Path) -> None:
    library.group()
    kit = _group_of(library, _face_of(library, "kit_harington/john1.jpeg"))
    rose = _group_of(library, _face_of(library, "rose_leslie/img1.jpg"))
    assert kit is not None and rose is not None and kit != rose
    # kit_with_rose.jpg: both faces in one photo can never share a group
    pair = [f.id for f in library.faces() if f.photo.endswith("kit_with_rose.jpg")]
    assert len(pair) == 2
    in_kit = [f for f in pair if _group_of(library, f) == kit]
    other = next(f for f in pair if f not in in_kit) if in_kit else pair[1]
    with pytest.raises(CorrectionError, match="one photo"):
        library.move(other, kit) if in_kit else library.merge(kit, [rose])
    # a face of Rose's group marked "not Kit": merging the two groups is refused, naming both
    rose_face = _face_of(library, "rose_leslie/img1.jpg")
    library.reject(rose_face, kit)
    library.move(rose_face, rose)
    with pytest.raises(CorrectionError, match=rf"group {rose}.*group {kit}|group {kit}.*group {rose}"):
        library.merge(kit, [rose])
    with pytest.raises(CorrectionError, match="not in group"):
        library.split(kit, [rose_face])
    with pytest.raises(UnknownGroupError, match="no group 999"):
        library.merge(kit, [999])
    with pytest.raises(UnknownFaceError, match="no face 99999"):
        library.split(kit, [99999])


def test_split_and_merge_hold_across_runs(library: Library, tree: Path) -> None:
    library.group()
    obama = _group_of(library, _face_of(library, "obama/obama.jpg"))
    members = [f.id for f in library.faces(obama)]
    assert len(members) >= 3
    new = library.split(obama, [members[-1]])
    library.group(full=True)
    assert _group_of(library, members[-1]) == new
    assert all(_group_of(library, f) == obama for f in members[:-1])
    with pytest.raises(CorrectionError, match="split apart"):
        library.merge(obama, [new])
    biden = _group_of(library, _face_of(library, "biden/biden.jpg"))
    kept = library.merge(new, [biden])
    library.group(full=True)
    assert _group_of(library, members[-1]) == kept == _group_of(library, _face_of(library, "biden/biden.jpg"))


def test_erasing_a_named_person_erases_their_library_faces(library: Library, tree: Path) -> None:
    library.group()
    face = _face_of(library, "biden/biden.jpg")
    group = _group_of(library, face)
    assert group is not None
    library.name(group, "Joe Biden")
    count = len(library.faces(group))
    assert library.gallery.remove("Joe Biden") == count
    assert face not in {f.id for f in library.faces()}
    assert group not in {g.id for g in library.groups()}
    again = library.scan(tree)  # the photo is unchanged: its faces do not come back
    assert again.faces_added == 0 and face not in {f.id for f in library.faces()}
    with library.store.sql_read() as db:
        rows = library.sql.rows(
            db,
            "SELECT COUNT(*) FROM {faces} f JOIN {photos} p ON p.id = f.photo_id WHERE p.path LIKE ?",
            ("%biden/biden.jpg",),
        )
    assert rows[0][0] == 0


def test_poor_faces_stay_ungrouped(
    tmp_path: Path, scanned: tuple[Path, Path, ScanReport], dlib_model: Any
) -> None:
    from PIL import Image, ImageFilter

    from faceverify.faces.quality import MIN_QUALITY

    tree = tmp_path / "photos"
    (tree / "obama").mkdir(parents=True)
    photo = Image.open(scanned[0] / "people" / "obama" / "obama.jpg")
    photo.save(tree / "obama" / "sharp.jpg")
    photo.filter(ImageFilter.GaussianBlur(photo.width / 80)).save(tree / "obama" / "blurred.jpg")
    library = _library(tmp_path / "g", dlib_model)
    with library.gallery:
        library.scan(tree)
        report = library.group()
        quality = {Path(f.photo).name: f for f in library.faces()}
        assert quality["sharp.jpg"].quality >= MIN_QUALITY > quality["blurred.jpg"].quality
        assert report.poor == 1 and quality["blurred.jpg"].group is None
        # kept, and the user may still place it by hand
        group = library.move(quality["blurred.jpg"].id, None)
        library.group(full=True)
        assert next(f.group for f in library.faces() if f.photo.endswith("blurred.jpg")) == group
