"""Bulk enrolment (Gallery.enroll_many) on generated people and on real photos."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from faceverify import compute_embedding
from faceverify.errors import ConfigError
from faceverify.gallery.bulk import PersonOutcome
from faceverify.gallery.gallery import Gallery
from faceverify.photos import FaceOptions
from tests.gallery.conftest import open_backend


@pytest.fixture
def people(identity_data: Path, tmp_path: Path) -> Path:
    """p0..p7 with two images each, plus every kind of trouble a real folder tree has."""
    root = tmp_path / "people"
    for person in sorted((identity_data / "gallery").iterdir()):
        shutil.copytree(person, root / person.name)
    (root / "p1" / "broken.jpg").write_bytes(b"not an image")
    shutil.copy(identity_data / "gallery" / "p2" / "0.png", root / "p3" / "copy-of-p2.png")  # p2 comes first
    (root / "nobody").mkdir()  # an empty folder is a person without images
    shutil.copy(identity_data / "probes" / "p8" / "0.png", root / "stray.png")  # nobody's photo
    return root


def test_a_folder_tree_enrols_each_person_once_and_reports_every_bad_image(
    backend: str, location: Any, atto_model: Any, people: Path, identity_data: Path
) -> None:
    seen: list[PersonOutcome] = []
    with open_backend(backend, location) as store:
        gallery = Gallery(store, atto_model)
        result = gallery.enroll_many(people, meta={"batch": "1"}, batch_size=3, on_person=seen.append)
        assert [(p.name, p.faces, p.meta) for p in gallery.people()] == [
            (f"p{i}", 2, {"batch": "1"}) for i in range(8)
        ]
        assert sorted(p.name for p in seen) == [p.name for p in result.people]
        assert result.to_dict()["images_skipped"] == {
            "unreadable": 1,
            "no_face": 0,
            "several_faces": 0,
            "poor_face": 0,
            "duplicate": 1,
            "no_person": 1,
        }
        assert {(s.person, Path(s.source).name, s.kind) for s in result.skipped} == {
            ("p1", "broken.jpg", "unreadable"),
            ("p3", "copy-of-p2.png", "duplicate"),
            ("", "stray.png", "no_person"),
        }
        assert next(s for s in result.skipped if s.kind == "duplicate").reason == (
            "this image is already enrolled as 'p2'"
        )
        assert [(p.name, p.status, p.reason) for p in result.people if p.status == "failed"] == [
            ("nobody", "failed", "no images")
        ]
        assert result.summary() == (
            "enrolled 8 people (16 faces); 0 already enrolled; 1 failed; "
            "3 images skipped (1 unreadable, 1 duplicate, 1 no person)"
        )
        # the stored vectors are those of each image embedded alone: batching across people changes nothing
        _, _, stored = store.faces_of("p5")[0]
        alone = compute_embedding(atto_model, identity_data / "gallery" / "p5" / "0.png", normalize=True)[0]
        np.testing.assert_allclose(stored, alone, rtol=1e-4, atol=1e-4)
        assert gallery.identify(identity_data / "probes" / "p6" / "0.png", threshold=0.85).name == "p6"

        again = gallery.enroll_many(people, batch_size=3)
        assert (again.count("enrolled"), again.count("already_enrolled"), again.faces_added) == (0, 8, 0)
        assert [p.faces for p in gallery.people()] == [2] * 8


def test_images_of_several_people_share_each_forward_pass(
    tmp_path: Path, atto_model: Any, people: Path
) -> None:
    """17 readable images of 8 people in batches of 4: 5 passes, not one per person or photo."""
    batches: list[int] = []
    hook = atto_model.register_forward_hook(lambda module, args, out: batches.append(len(args[0])))
    try:
        with open_backend("sqlite", tmp_path / "g") as store:
            Gallery(store, atto_model).enroll_many(people, batch_size=4)
    finally:
        hook.remove()
    # the first 16 images (p0-p6) are one chunk, decoded 4 at a time; p1's broken file leaves
    # a pass of 3; p7 is the second chunk. The duplicate is found after embedding.
    assert batches == [4, 3, 4, 4, 2]


def test_existing_people_get_only_new_images_with_add(
    tmp_path: Path, atto_model: Any, people: Path, identity_data: Path
) -> None:
    with open_backend("sqlite", tmp_path / "g") as store:
        gallery = Gallery(store, atto_model)
        gallery.enroll("p0", [identity_data / "gallery" / "p0" / "0.png"], {"kept": "yes"})
        shutil.copy(identity_data / "probes" / "p0" / "1.png", people / "p0" / "new.png")
        skipped = gallery.enroll_many({"p0": sorted((people / "p0").glob("*.png"))})
        assert [(p.name, p.status) for p in skipped.people] == [("p0", "already_enrolled")]
        added = gallery.enroll_many({"p0": sorted((people / "p0").glob("*.png"))}, existing="add")
        assert [(p.name, p.status, p.added) for p in added.people] == [("p0", "enrolled", 2)]
        assert added.skipped == []  # the photo p0 already had is no news, not a skipped image
        assert [(p.name, p.faces, p.meta) for p in gallery.people()] == [("p0", 3, {"kept": "yes"})]
        again = gallery.enroll_many({"p0": sorted((people / "p0").glob("*.png"))}, existing="add")
        assert [(p.name, p.status, p.added) for p in again.people] == [("p0", "already_enrolled", 0)]
        assert again.skipped == []


def test_a_shared_gallery_is_split_between_ranks_without_overlap(
    tmp_path: Path, atto_model: Any, people: Path
) -> None:
    with open_backend("sqlite", tmp_path / "g") as store:
        gallery = Gallery(store, atto_model)
        first = gallery.enroll_many(people, rank=0, world_size=2)
        second = gallery.enroll_many(people, rank=1, world_size=2)
        assert [p.name for p in first.people] == ["nobody", "p1", "p3", "p5", "p7"]
        assert [p.name for p in second.people] == ["p0", "p2", "p4", "p6"]
        assert "no_person" not in [s.kind for s in second.skipped]  # rank 0 alone reports the stray
        assert [p.name for p in store.people()] == [f"p{i}" for i in range(8)]


def test_bad_arguments_name_the_valid_choices(tmp_path: Path, atto_model: Any, people: Path) -> None:
    with open_backend("sqlite", tmp_path / "g") as store:
        gallery = Gallery(store, atto_model)
        with pytest.raises(ConfigError, match="existing 'replace' is unknown; valid: skip, add"):
            gallery.enroll_many(people, existing="replace")
        with pytest.raises(ConfigError, match="has no sub-folders"):
            gallery.enroll_many(people / "p0")
        with pytest.raises(ConfigError, match="is not a folder"):
            gallery.enroll_many(tmp_path / "missing")


def test_real_photos_a_group_photo_fails_its_person_unless_told_what_to_do(
    tmp_path: Path, atto_model: Any, shared_faces: Path
) -> None:
    root = tmp_path / "people"
    for person in ("obama", "biden"):
        shutil.copytree(shared_faces / "gallery" / person, root / person)
    shutil.copy(shared_faces / "probes" / "obama_and_biden.jpg", root / "obama")  # three faces
    noise = np.random.default_rng(0).integers(0, 256, (120, 120, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "biden" / "noise.png")  # no face
    photos = {p.name: len(list((shared_faces / "gallery" / p.name).iterdir())) for p in root.iterdir()}
    found = FaceOptions(detect=True, upsample=0)
    with open_backend("sqlite", tmp_path / "g") as store:
        refused = Gallery(store, atto_model, faces=found).enroll_many(root)  # enrolment's default: refuse
        assert {(p.name, p.status) for p in refused.people} == {("obama", "failed"), ("biden", "enrolled")}
        [failed] = [p for p in refused.people if p.status == "failed"]
        assert "obama_and_biden.jpg: 3 faces found where one is needed" in failed.reason
        assert {(Path(s.source).name, s.kind) for s in refused.skipped} == {
            ("obama_and_biden.jpg", "several_faces"),
            ("noise.png", "no_face"),
        }
        gallery = Gallery(store, atto_model, faces=replace(found, several="skip"))
        skipped = gallery.enroll_many(root)
        assert {p.name: p.faces for p in gallery.people()} == photos
        assert [(Path(s.source).name, s.kind) for s in skipped.skipped] == [
            ("obama_and_biden.jpg", "several_faces")
        ]
        largest = Gallery(store, atto_model, faces=replace(found, several="largest"))
        kept = largest.enroll_many({"obama": [root / "obama" / "obama_and_biden.jpg"]}, existing="add")
        assert kept.faces_added == 1
        with pytest.raises(ConfigError, match="one face per photo"):
            Gallery(store, atto_model, faces=replace(found, several="all")).enroll_many(root)
