"""prepare_photos on real photos: course layout, pairs, bad photos reported, reruns, training.

Detection is the slow part, so the photo tree is prepared once per module; tests that
change a run work on copies of its output (reruns reuse the cached faces: no detection).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from faceverify.data.prepare import (
    MANIFEST,
    OUTPUTS,
    PAIRS_VAL,
    TRAIN,
    VAL,
    VERIFICATION,
    CropOptions,
    PrepareReport,
    prepare_photos,
)
from faceverify.data.split import SplitOptions
from faceverify.errors import ConfigError
from faceverify.photos import FaceOptions
from tests.conftest import SHARED_FACES

pytest.importorskip("dlib")
#: The shared photos' faces are large: upsample 0 finds them all, several times faster.
FAST = CropOptions(faces=FaceOptions(detect=True, upsample=0))


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five people's photos plus every kind of trouble, laid out as a user would."""
    if not SHARED_FACES.is_dir():
        pytest.skip(f"real face photos not found at {SHARED_FACES}")
    root = tmp_path_factory.mktemp("photos")
    gallery = SHARED_FACES / "gallery"
    for person in ("alex_lacamoire", "biden", "obama", "rose_leslie"):
        shutil.copytree(gallery / person, root / person)
    shutil.copytree(gallery / "kit_harington", root / "kit harington")  # a space: no pairs-file field
    shutil.copyfile(gallery / "obama/obama2.jpg", root / "obama/obama2.png")  # same stem as obama2.jpg
    (root / "obama/group").mkdir()
    shutil.copyfile(SHARED_FACES / "scenes/two_people.jpg", root / "obama/group/two_people.jpg")
    noise = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "rose_leslie/noise.png")
    (root / "biden/broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    shutil.copyfile(SHARED_FACES / "probes/obama1.jpg", root / "loose.jpg")  # in nobody's folder
    return root


@pytest.fixture(scope="module")
def prepared(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, PrepareReport]:
    out = tmp_path_factory.mktemp("prepared") / "data"
    return out, prepare_photos(tree, out, crop=FAST, progress=False)


def _manifest(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    return data


def _status(out: Path) -> dict[str, tuple[str, str | None]]:
    return {r["source"]: (r["status"], r.get("output")) for r in _manifest(out)["photos"]}


def _digest(out: Path) -> str:
    """Everything a trainer reads: file names and bytes of the split folders and pairs."""
    digest = hashlib.sha256()
    for name in OUTPUTS:
        for path in sorted([out / name, *(out / name).rglob("*")] if (out / name).is_dir() else [out / name]):
            if path.is_file():
                digest.update(path.relative_to(out).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture
def copy(prepared: tuple[Path, PrepareReport], tmp_path: Path) -> Path:
    """A copy of the prepared folder, for tests that run prepare on it again."""
    target = tmp_path / "copy"
    shutil.copytree(prepared[0], target)
    return target


def test_layout_counts_and_traceable_names(prepared: tuple[Path, PrepareReport]) -> None:
    out, report = prepared
    status = _status(out)
    used = {s: o for s, (st, o) in status.items() if st in ("train", "val", "verification")}
    assert len(used) == 9  # biden 2, kit 2, obama 3, rose 2
    assert report.people == {"train": 2, "held_out": 2, "too_few_photos": 1}
    assert report.counts["train"] + report.counts["val"] + report.counts["verification"] == 9
    assert status["kit harington/john1.jpeg"][1] is not None
    assert status["kit harington/john1.jpeg"][1].endswith("kit_harington/john1.png")  # type: ignore[union-attr]
    assert status["obama/obama2.jpg"][1].endswith("obama/obama2_jpg.png")  # type: ignore[union-attr]
    assert status["obama/obama2.png"][1].endswith("obama/obama2_png.png")  # type: ignore[union-attr]
    for output in used.values():
        with Image.open(out / str(output)) as image:
            assert (image.size, image.mode) == ((64, 64), "RGB")
    files = sorted(
        p.relative_to(out).as_posix() for d in (TRAIN, VAL, VERIFICATION) for p in (out / d).rglob("*.png")
    )
    assert files == sorted(str(o) for o in used.values())  # nothing else, nothing twice
    trained = {p.name for p in (out / TRAIN).iterdir()}
    assert {p.name for p in (out / VAL).iterdir()} == trained  # val people are training people
    assert not trained & {p.name for p in (out / VERIFICATION).iterdir()}
    assert all(len(list((out / TRAIN / p).iterdir())) >= 1 for p in trained)


def test_bad_photos_are_reported_and_the_good_ones_kept(prepared: tuple[Path, PrepareReport]) -> None:
    out, report = prepared
    records = {r["source"]: r for r in _manifest(out)["photos"]}
    assert records["rose_leslie/noise.png"]["status"] == "no_face"
    assert records["biden/broken.jpg"]["status"] == "unreadable"
    assert records["obama/group/two_people.jpg"]["status"] == "several_faces"
    assert "faces found where one is needed" in records["obama/group/two_people.jpg"]["reason"]
    assert records["obama/group/two_people.jpg"]["faces_found"] == 2
    assert records["loose.jpg"]["status"] == "no_person"
    assert records["alex_lacamoire/img1.jpg"]["status"] == "too_few_photos"
    assert "min_photos 2" in records["alex_lacamoire/img1.jpg"]["reason"]
    assert report.skipped == 5
    assert records["rose_leslie/img1.jpg"]["status"] in ("train", "val", "verification")
    assert len(records) == 14  # every photo accounted for
    assert _manifest(out)["options"]["crop"]["template"] == "dlib64"


def test_pairs_file_is_read_by_evaluate_and_labels_follow_the_person(
    prepared: tuple[Path, PrepareReport],
) -> None:
    from faceverify.evaluate.pairs import read_pairs

    out, report = prepared
    pairs = read_pairs(out / PAIRS_VAL, out)
    assert not pairs.problems and pairs.labelled
    assert len(pairs.pairs) == report.pairs["genuine"] + report.pairs["impostor"] == 4
    for pair in pairs.pairs:
        assert pair.a.parent.parent == out / VERIFICATION
        assert pair.label == int(pair.a.parent.name == pair.b.parent.name)
    assert {p.label for p in pairs.pairs} == {0, 1}


def test_rerun_reuses_every_face_and_changes_nothing(
    prepared: tuple[Path, PrepareReport], copy: Path, tree: Path
) -> None:
    out = prepared[0]
    again = prepare_photos(tree, copy, crop=FAST, progress=False)
    assert again.reused == 14
    assert _digest(copy) == _digest(out)
    assert _status(copy) == _status(out)


def test_the_seed_decides_the_split_and_going_back_restores_it(
    prepared: tuple[Path, PrepareReport], copy: Path, tree: Path
) -> None:
    out = prepared[0]
    digests = {_digest(out)}
    for seed in range(1, 6):
        prepare_photos(tree, copy, crop=FAST, split=SplitOptions(seed=seed), progress=False)
        digests.add(_digest(copy))
    assert len(digests) > 1
    prepare_photos(tree, copy, crop=FAST, split=SplitOptions(seed=0), progress=False)
    assert _digest(copy) == _digest(out)


def test_without_val_share_or_held_out_people_train_is_told_to_skip_them(copy: Path, tree: Path) -> None:
    report = prepare_photos(
        tree, copy, crop=FAST, split=SplitOptions(val_share=0, pairs_people=0), progress=False
    )
    assert report.train_overrides == [f"data.root={copy}", "data.val_dir=null", "data.pairs=null"]
    assert not (copy / VAL).exists() and not (copy / PAIRS_VAL).exists()
    assert report.people["train"] == 4 and report.counts["train"] == 9


def test_refuses_a_foreign_folder_and_force_rebuilds_the_same_set(
    prepared: tuple[Path, PrepareReport], copy: Path, tree: Path
) -> None:
    out, foreign = prepared[0], copy
    (foreign / MANIFEST).unlink()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not made by faceverify prepare"):
        prepare_photos(tree, foreign, crop=FAST, progress=False)
    report = prepare_photos(tree, foreign, crop=FAST, force=True, progress=False)
    assert report.reused == 1  # only the photo outside any person folder needs no detection
    assert _digest(foreign) == _digest(out)  # a fresh run makes the same set
    assert (foreign / "notes.txt").read_text() == "mine"  # only prepare's own outputs are replaced
    with pytest.raises(ConfigError, match="inside the photos folder"):
        prepare_photos(tree, tree / "out", progress=False)


def test_new_crop_options_crop_again_and_a_failed_run_is_resumed(copy: Path, tree: Path) -> None:
    """150 px grey crops with the largest face; a run whose split fails keeps its faces for the next."""
    options = CropOptions(size=150, grayscale=True, faces=replace(FAST.faces, several="largest"))
    with pytest.raises(ConfigError, match="lower --min-photos"):
        prepare_photos(tree, copy, crop=options, split=SplitOptions(min_photos=5), progress=False)
    failed = _manifest(copy)
    assert failed["complete"] is False and not (copy / TRAIN).exists()  # no stale training set
    assert {r["status"] for r in failed["photos"]} >= {"cropped", "no_face", "unreadable"}
    report = prepare_photos(tree, copy, crop=options, progress=False)
    assert report.reused == 14  # nothing detected twice
    status = _status(copy)
    assert status["obama/group/two_people.jpg"][0] in ("train", "val", "verification")
    with Image.open(copy / str(status["biden/biden.jpg"][1])) as image:
        assert (image.size, image.mode) == ((150, 150), "L")
    assert _manifest(copy)["options"]["crop"]["template"] == "dlib150"


def test_trainer_learns_from_the_prepared_folder(
    prepared: tuple[Path, PrepareReport], tmp_path: Path
) -> None:
    """`faceverify train data.root=OUT` needs nothing else: train, val and pairs are all read."""
    from faceverify.train.config import load_config
    from faceverify.train.loop import train

    _, report = prepared
    config = load_config(
        None,
        [
            *report.train_overrides,
            "data.workers=0",
            "model.args={width: 8}",
            "epochs=1",
            "batch_size=4",
            f"out={tmp_path / 'run'}",
        ],
    )
    metrics = train(config)
    assert metrics["skipped_images"] == 0
    assert 0.0 <= metrics["val_auc"] <= 1.0  # the held-out pairs were scored
    assert (tmp_path / "run" / "best.pt").is_file()


def test_a_64_pixel_model_sees_at_inference_exactly_the_crops_it_trained_on(
    prepared: tuple[Path, PrepareReport], tree: Path
) -> None:
    """`--detect` with a 64-px checkpoint aligns photos as prepare did: no train/test skew."""
    from faceverify import build_model, load_image
    from faceverify.photos import prepare_photo

    out = prepared[0]
    model = build_model("face_resnet", weights="random", device="cpu", model_args={"width": 8})
    assert model.preprocess.input_size[-1] == 64
    source = "biden/biden.jpg"
    at_inference = prepare_photo(model, load_image(tree / source), FAST.faces, source)[0].tensor
    trained_on = model.prepare(load_image(out / str(_status(out)[source][1])))
    assert isinstance(at_inference, np.ndarray) and at_inference.dtype == trained_on.dtype == np.float32
    np.testing.assert_array_equal(at_inference, trained_on)


def test_a_model_trained_on_112_pixel_crops_aligns_photos_to_their_template(
    copy: Path, tree: Path, tmp_path: Path
) -> None:
    """ArcFace-template crops train a checkpoint that names arcface112, so `--detect` at
    inference aligns photos as the crops were (without it: dlib-style chips, a skew)."""
    from faceverify import build_model
    from faceverify.train.config import load_config
    from faceverify.train.loop import train

    report = prepare_photos(tree, copy, crop=CropOptions(size=112, faces=FAST.faces), progress=False)
    settings = [*report.train_overrides, "data.workers=0", "model.args={width: 8}", "epochs=1"]
    train(load_config(None, [*settings, "batch_size=4", f"out={tmp_path / 'run'}"]))
    model = build_model(weights=tmp_path / "run" / "best.pt", device="cpu")
    assert model.preprocess.face_template == "arcface112"
