"""Whole photos through the real face network: detect, align, embed; bad photos reported."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import faceverify as fv
from faceverify.errors import ConfigError, FailureKind
from faceverify.photos import FaceOptions

pytest.importorskip("dlib")


@pytest.fixture(scope="module")
def dlib_model() -> Any:
    """dlib's network with the weights face-recognition-models installs (offline, real)."""
    try:
        return fv.build_model("dlib_resnet_v1", device="cpu")
    except fv.FaceVerifyError as exc:
        pytest.skip(f"dlib's model files are not installed: {exc}")


def test_the_contract_asks_for_aligned_chips_and_dlibs_threshold(dlib_model: Any) -> None:
    assert dlib_model.preprocess.face_template == "dlib150"
    assert dlib_model.preprocess.input_size == (150, 150)
    assert dlib_model.embedding_dim == 128
    assert dlib_model.threshold.value == pytest.approx(0.91)
    assert dlib_model.threshold.source == "published"  # dlib's rule, not a calibration
    assert dlib_model.weights_sha256()  # galleries can pin it


def test_whole_photos_give_the_right_verdicts(dlib_model: Any, shared_faces: Path) -> None:
    gallery = shared_faces / "gallery"
    same = fv.verify(gallery / "obama/obama.jpg", gallery / "obama/obama2.jpg", model=dlib_model)
    other = fv.verify(gallery / "obama/obama.jpg", gallery / "biden/biden.jpg", model=dlib_model)
    assert same.same and not other.same
    assert same.score > other.score + 0.08


def test_bad_photos_are_reported_and_the_good_ones_kept(
    dlib_model: Any, shared_faces: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((200, 200, 3), 200, dtype=np.uint8)).save(blank)
    inputs = [
        shared_faces / "gallery/biden/biden.jpg",
        blank,
        tmp_path / "missing.jpg",
        shared_faces / "probes/obama_and_biden.jpg",
        shared_faces / "scenes/32bit.png",
    ]
    with caplog.at_level(logging.WARNING, logger="faceverify.photos"):
        result = fv.embed_images(dlib_model, inputs)
    assert result.indices == [0, 3, 4]
    assert [(f.index, f.reason) for f in result.failures] == [(1, "no face found"), (2, "file not found")]
    assert [f.kind for f in result.failures] == [FailureKind.NO_FACE, FailureKind.UNREADABLE]
    assert result.faces_found == [1, 3, 1]
    assert "obama_and_biden.jpg: 3 faces found; using the largest" in caplog.text
    boxes = [face.box for face in result.faces if face is not None]
    assert len(boxes) == 3


def test_every_face_of_a_group_photo_and_crops_as_given(dlib_model: Any, shared_faces: Path) -> None:
    group = shared_faces / "probes/kit_with_rose.jpg"
    every = fv.embed_images(dlib_model, [group], faces=FaceOptions(several="all"))
    assert every.indices == [0, 0] and every.faces_found == [2, 2]
    widths = [f.width for f in every.faces if f is not None]
    assert widths == sorted(widths, reverse=True)  # largest first
    # a chip is taken as it is with detection off: the same vector as aligning it ourselves
    from faceverify.faces import align_faces, detect_faces

    pixels = np.asarray(Image.open(group).convert("RGB"))
    chips = align_faces(pixels, detect_faces(pixels), "dlib150")
    as_crops = fv.embed_images(dlib_model, list(chips), faces=FaceOptions(detect=False))
    np.testing.assert_allclose(as_crops.embeddings, every.embeddings, atol=1e-5)


def test_a_crop_model_can_be_asked_to_detect(atto_model: Any, shared_faces: Path) -> None:
    photo = shared_faces / "gallery/obama/obama.jpg"
    plain = fv.embed_images(atto_model, [photo])
    detected = fv.embed_images(atto_model, [photo], faces=FaceOptions(detect=True, upsample=0))
    assert plain.faces == [None] and detected.faces[0] is not None
    assert not np.allclose(plain.embeddings, detected.embeddings)


def test_one_policy_for_several_faces_with_a_default_per_job(
    dlib_model: Any, shared_faces: Path, caplog: pytest.LogCaptureFixture
) -> None:
    group = shared_faces / "probes/obama_and_biden.jpg"  # three faces
    with caplog.at_level(logging.WARNING, logger="faceverify.photos"):
        largest = fv.embed_images(dlib_model, [group])  # embedding's default
    assert largest.indices == [0] and "3 faces found; using the largest" in caplog.text
    every = fv.embed_images(dlib_model, [group], faces=FaceOptions().for_job("identify"))
    assert every.indices == [0, 0, 0]
    np.testing.assert_allclose(every.embeddings[0], largest.embeddings[0], atol=1e-6)
    for policy in ("refuse", "skip"):
        left_out = fv.embed_images(dlib_model, [group], faces=FaceOptions(several=policy))
        [failure] = left_out.failures
        assert failure.kind is FailureKind.SEVERAL_FACES and not left_out.indices
        assert isinstance(failure.as_error(), fv.SeveralFacesError)
        assert len(failure.as_error().boxes) == 3 and "3 faces found where one is needed" in failure.reason
    with pytest.raises(
        fv.SeveralFacesError, match=r"obama_and_biden.jpg: 3 faces found .*\(\d+,\d+,\d+,\d+\)"
    ):
        fv.compute_embedding(dlib_model, group, faces=FaceOptions().for_job("enroll"))
    assert FaceOptions().for_job("enroll").policy == "refuse"
    assert FaceOptions(several="all").for_job("enroll").policy == "all"  # a choice beats the default


def test_faces_found_already_are_embedded_without_detecting_again(
    dlib_model: Any, shared_faces: Path
) -> None:
    from faceverify.faces import detect_faces

    group = shared_faces / "probes/obama_and_biden.jpg"
    pixels = np.asarray(fv.load_image(group))
    faces = detect_faces(pixels)
    every = fv.embed_images(dlib_model, [group], faces=FaceOptions(several="all"))
    # the second face alone, as a user who picked it would pass it
    picked = fv.embed_images(dlib_model, [group, group], found=[[faces[1]], None])
    assert picked.faces[0] is faces[1] and picked.faces_found == [1, 3]
    np.testing.assert_allclose(picked.embeddings[0], every.embeddings[1], atol=1e-6)
    with pytest.raises(fv.InputError, match="one per image"):
        fv.embed_images(dlib_model, [group], found=[])


def test_bad_face_options_are_refused_naming_the_choices() -> None:
    with pytest.raises(fv.ConfigError, match=r"several-faces policy 'most'.*largest, all, refuse, skip"):
        FaceOptions(several="most")
    with pytest.raises(fv.ConfigError, match="unknown face detector 'yolo'; valid names: cnn, hog"):
        FaceOptions(detector="yolo")
    with pytest.raises(fv.ConfigError, match="job 'clean'"):
        FaceOptions().for_job("clean")


def test_a_photo_without_a_face_can_be_embedded_whole_when_asked(
    dlib_model: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((90, 120, 3), 200, dtype=np.uint8)).save(blank)
    assert fv.embed_images(dlib_model, [blank]).failures[0].kind is FailureKind.NO_FACE  # the default
    with caplog.at_level(logging.WARNING, logger="faceverify.photos"):
        whole = fv.embed_images(dlib_model, [blank], faces=FaceOptions(whole_if_no_face=True))
    assert whole.indices == [0] and whole.faces == [None] and whole.faces_found == [0]
    assert "blank.png: no face found; embedding the whole photo" in caplog.text
    resized = Image.open(blank).convert("RGB").resize((150, 150), Image.Resampling.BILINEAR)
    expected = fv.compute_embedding(dlib_model, resized, faces=FaceOptions(detect=False))
    np.testing.assert_allclose(whole.embeddings, expected, atol=1e-5)


@pytest.mark.parametrize(
    "photo", ["gallery/obama/obama.jpg", "gallery/biden/biden.jpg", "probes/johnsnow_test1.jpg"]
)
def test_dlibs_chip_is_the_same_whichever_detector_found_the_face(
    dlib_model: Any, shared_faces: Path, photo: str
) -> None:
    """The box only seeds dlib's landmark predictor; the chip (and so the vector) comes from
    the landmarks, so HOG's and the CNN's boxes of one face give nearly the same chip."""
    pytest.importorskip("onnxruntime")
    from faceverify.faces import align_faces, detect_faces

    pixels = np.asarray(fv.load_image(shared_faces / photo))
    chips = {
        d: align_faces(pixels, detect_faces(pixels, detector=d)[:1], "dlib150")[0] for d in ("hog", "mmod")
    }
    difference = np.abs(chips["hog"].astype(np.float32) - chips["mmod"].astype(np.float32))
    assert float(difference.mean()) < 6.0, float(difference.mean())  # of 255: a pixel's shift at most
    vectors = fv.compute_embedding(
        dlib_model, list(chips.values()), normalize=True, faces=FaceOptions(detect=False)
    )
    assert float(vectors[0] @ vectors[1]) > 0.995


def test_detection_on_a_reduced_photo_is_the_users_trade(shared_faces: Path) -> None:
    """``max_side``: a photo reduced further for detection is faster to search and loses the
    faces the reduction shrinks under the detector's window (HOG at upsample 0: 80 px)."""
    from faceverify.decode import load_image
    from faceverify.photos import find_faces

    # 910×1137 with a 259 px face box: 46 px after a reduction to 200, 114 px at 500
    pixels = np.asarray(load_image(shared_faces / "gallery" / "obama" / "obama.jpg"))
    (face,) = find_faces(pixels, FaceOptions(detector="hog", upsample=0))
    assert find_faces(pixels, FaceOptions(detector="hog", upsample=0, max_side=200)) == []
    (again,) = find_faces(pixels, FaceOptions(detector="hog", upsample=0, max_side=500))
    assert abs(again.width - face.width) < 0.15 * face.width  # boxes in the photo's own pixels
    with pytest.raises(ConfigError, match="max_side 8 is too small"):
        FaceOptions(max_side=8)


def test_enrolment_refuses_a_face_too_poor_to_trust(
    dlib_model: Any, shared_faces: Path, tmp_path: Path
) -> None:
    from PIL import ImageFilter

    from faceverify.errors import NothingEnrolledError
    from faceverify.faces.quality import MIN_QUALITY

    photo = Image.open(shared_faces / "gallery" / "obama" / "obama.jpg")
    blurred = tmp_path / "blurred.jpg"
    photo.filter(ImageFilter.GaussianBlur(photo.width / 80)).save(blurred)
    assert FaceOptions().for_job("enroll").min_quality == MIN_QUALITY
    assert FaceOptions().for_job("identify").min_quality == 0.0  # only enrolment is gated
    assert FaceOptions(min_quality=0.3).for_job("enroll").min_quality == 0.3
    with pytest.raises(ConfigError, match="between 0 and 1"):
        FaceOptions(min_quality=2)
    gallery = fv.open_gallery(tmp_path / "g", dlib_model)
    with (
        gallery,
        pytest.raises(NothingEnrolledError, match=r"too poor to trust: quality 0\.\d\d below 0\.75, blurred"),
    ):
        gallery.enroll("obama", [blurred])
    sharp = shared_faces / "gallery" / "obama" / "obama2.jpg"
    with fv.open_gallery(tmp_path / "g", dlib_model) as gallery:
        result = gallery.enroll("obama", [blurred, sharp])  # the good photo in, the poor one reported
        assert result.added == 1 and "too poor" in result.skipped[0]
        # identification is not gated: it answers (the blur costs the match its margin)
        assert gallery.identify(blurred).matches[0].name == "obama"
    lenient = fv.open_gallery(tmp_path / "g2", dlib_model, faces=FaceOptions(min_quality=0))
    with lenient:
        assert lenient.enroll("obama", [blurred]).added == 1
    embedded = fv.embed_images(dlib_model, [blurred], faces=FaceOptions(min_quality=MIN_QUALITY))
    assert [f.kind for f in embedded.failures] == [FailureKind.POOR_FACE]
