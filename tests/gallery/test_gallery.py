"""The model-aware gallery on generated people, over both backends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from faceverify import build_model
from faceverify.errors import GalleryError, ModelMismatchError, UnknownPersonError
from faceverify.gallery.gallery import Gallery, export_gallery, import_gallery, model_manifest
from tests.gallery.conftest import open_backend


@pytest.fixture
def gallery(backend: str, location: Any, atto_model: Any, identity_data: Path) -> Any:
    with open_backend(backend, location) as store:
        enrolled = Gallery(store, atto_model)
        for person in sorted((identity_data / "gallery").iterdir()):
            enrolled.enroll(person.name, sorted(person.glob("*.png")), {"source": "generated"})
        yield enrolled


def test_identify_known_and_unknown_people(gallery: Gallery, identity_data: Path) -> None:
    # genuine pairs of these people score above ~0.88, impostors below ~0.8 (see the
    # evaluation tests), so 0.85 separates them for this seeded model
    for person in ("p0", "p3", "p7"):
        found = gallery.identify(identity_data / "probes" / person / "0.png", top_k=3, threshold=0.85)
        assert found.name == person
        assert len(found.matches) == 3
    stranger = gallery.identify(identity_data / "probes" / "p9" / "0.png", threshold=0.85)
    assert stranger.name is None
    assert stranger.to_dict()["known"] is False


def test_verify_claimed_identities(gallery: Gallery, identity_data: Path) -> None:
    probe = identity_data / "probes" / "p2" / "1.png"
    assert gallery.verify_id("p2", probe, threshold=0.85).same
    assert not gallery.verify_id("p5", probe, threshold=0.85).same
    with pytest.raises(UnknownPersonError, match="no person named 'p9'"):
        gallery.verify_id("p9", probe)


def test_enrol_reports_bad_and_repeated_images(gallery: Gallery, identity_data: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    image = identity_data / "probes" / "p8" / "0.png"
    result = gallery.enroll("p8", [image, broken, image])
    assert result.added == 1
    assert result.skipped[0].startswith(f"{broken}: not an image file in an allowed format (JPEG, PNG")
    assert result.skipped[1] == f"{image}: this image is already enrolled"
    with pytest.raises(GalleryError, match="already enrolled as 'p8'"):
        gallery.enroll("impostor", [image])


@pytest.mark.parametrize(
    ("name", "message"),
    [("  ", "cannot be empty"), ("x" * 201, "the limit is 200"), ("a\x00b", "control characters")],
)
def test_bad_names(gallery: Gallery, identity_data: Path, name: str, message: str) -> None:
    with pytest.raises(GalleryError, match=message):
        gallery.enroll(name, [identity_data / "probes" / "p8" / "0.png"])


def test_another_model_is_refused(gallery: Gallery, atto_file: Path) -> None:
    resized = build_model(weights=atto_file, input_size=112, device="cpu")
    with pytest.raises(ModelMismatchError, match="preprocess_fingerprint"):
        Gallery(gallery.store, resized)
    with pytest.raises(GalleryError, match="needs a model with saved weights"):
        Gallery(gallery.store, build_model(weights="random", device="cpu"))


def test_export_then_import_into_a_fresh_gallery(gallery: Gallery, tmp_path: Path, atto_model: Any) -> None:
    exported = tmp_path / "people.jsonl"
    assert export_gallery(gallery.store, exported) == 8
    with open_backend("sqlite", tmp_path / "copy") as copy:
        assert import_gallery(copy, exported) == (8, 16)
        assert import_gallery(copy, exported) == (8, 0)  # nothing twice
        assert [(p.name, p.faces, p.meta) for p in copy.people()] == [
            (p.name, p.faces, p.meta) for p in gallery.people()
        ]
        assert copy.manifest() == model_manifest(atto_model)
    other = exported.read_text().replace('"embedding_dim": 320', '"embedding_dim": 321', 1)
    (tmp_path / "other.jsonl").write_text(other)
    with pytest.raises(ModelMismatchError, match="embedding_dim"):
        import_gallery(gallery.store, tmp_path / "other.jsonl")


def test_the_facade_opens_embedded_galleries(tmp_path: Path, atto_model: Any, identity_data: Path) -> None:
    import faceverify as fv

    gallery = fv.open_gallery(tmp_path / "g", atto_model, match="centroid")
    with gallery.store:
        gallery.enroll("p4", sorted((identity_data / "gallery" / "p4").glob("*.png")))
        assert gallery.identify(identity_data / "probes" / "p4" / "1.png", threshold=0.85).name == "p4"
        assert [p.name for p in gallery.people()] == ["p4"]
    with pytest.raises(GalleryError, match="match mode 'median' is unknown; valid: best, centroid"):
        fv.open_gallery(tmp_path / "g", atto_model, match="median")


def test_a_gallery_is_a_context_manager_that_knows_who_is_enrolled(
    tmp_path: Path, atto_model: Any, identity_data: Path
) -> None:
    import faceverify as fv

    with fv.open_gallery(tmp_path / "g", atto_model) as gallery:
        gallery.enroll("p4", sorted((identity_data / "gallery" / "p4").glob("*.png")))
        assert gallery.has_person("p4") and not gallery.has_person("p5")
    with fv.open_gallery(tmp_path / "g", atto_model) as again:  # the first one closed its store
        assert [p.name for p in again.people()] == ["p4"]


def test_enrolling_a_group_photo_is_refused_naming_its_faces(
    tmp_path: Path, atto_model: Any, shared_faces: Path
) -> None:
    import faceverify as fv
    from faceverify.photos import FaceOptions

    obama = shared_faces / "gallery" / "obama" / "obama.jpg"
    group = shared_faces / "probes" / "obama_and_biden.jpg"
    found = FaceOptions(detect=True, upsample=0)
    with fv.open_gallery(tmp_path / "g", atto_model, faces=found) as gallery:
        with pytest.raises(fv.SeveralFacesError, match=r"obama_and_biden.jpg: 3 faces found") as refused:
            gallery.enroll("obama", [obama, group])
        assert len(refused.value.boxes) == 3 and gallery.people() == []  # nothing stored
    skip = FaceOptions(detect=True, upsample=0, several="skip")
    with fv.open_gallery(tmp_path / "g", atto_model, faces=skip) as gallery:
        result = gallery.enroll("obama", [obama, group])
        assert result.added == 1 and "3 faces found" in result.skipped[0]
        # identification answers for every face of the group photo, whatever enrolment's policy
        assert len(gallery.identify_faces(group, threshold=0.99)) == 3
