"""faceverify detect / identify on real photos with the real face network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from faceverify.cli.common import EXIT_OK, EXIT_PARTIAL
from faceverify.cli.main import main
from tests.cli.test_cli import run as _run

pytest.importorskip("dlib")
MODEL = ["--model", "dlib_resnet_v1", "--backend", "torch"]


@pytest.fixture(scope="module")
def enrolled(shared_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("gallery") / "db"
    for person in sorted((shared_root / "gallery").iterdir()):
        assert main(["enroll", person.name, str(person), "--db", str(db), "-q", *MODEL]) == EXIT_OK
    return db


@pytest.fixture(scope="module")
def shared_root() -> Path:
    from tests.conftest import SHARED_FACES

    if not SHARED_FACES.is_dir():
        pytest.skip(f"real face photos not found at {SHARED_FACES}")
    return SHARED_FACES


def test_identify_answers_for_every_face_of_a_group_photo(
    capsys: pytest.CaptureFixture[str], enrolled: Path, shared_root: Path
) -> None:
    code, out, _ = _run(
        capsys,
        "identify",
        str(shared_root / "probes/obama_and_biden.jpg"),
        "--db",
        str(enrolled),
        "--json",
        *MODEL,
    )
    assert code == EXIT_OK
    answer = json.loads(out)
    names = [face["name"] for face in answer["faces"]]
    assert names[:2] == ["obama", "biden"]  # largest first
    assert names[2] is None  # a child nobody enrolled: unknown, not the nearest stranger
    assert all(len(face["box"]) == 4 for face in answer["faces"])


@pytest.mark.parametrize(
    ("probe", "person"), [("johnsnow_test1.jpg", "kit_harington"), ("obama1.jpg", "obama")]
)
def test_each_probe_is_identified(
    capsys: pytest.CaptureFixture[str], enrolled: Path, shared_root: Path, probe: str, person: str
) -> None:
    code, out, _ = _run(
        capsys, "identify", str(shared_root / "probes" / probe), "--db", str(enrolled), *MODEL
    )
    assert code == EXIT_OK
    assert out.splitlines()[0].split("\t")[0] == person


def test_detect_lists_faces_writes_crops_and_draws_names(
    capsys: pytest.CaptureFixture[str], enrolled: Path, shared_root: Path, tmp_path: Path
) -> None:
    photo = shared_root / "probes/kit_with_rose.jpg"
    picture, crops = tmp_path / "named.png", tmp_path / "crops"
    code, out, _ = _run(
        capsys,
        "detect",
        str(photo),
        "--db",
        str(enrolled),
        "--annotate",
        str(picture),
        "--crops",
        str(crops),
        "--json",
        *MODEL,
    )
    assert code == EXIT_OK
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["name"].split()[0] for r in rows] == ["kit_harington", "rose_leslie"]
    assert all(len(r["landmarks"]) == 5 for r in rows)
    assert Image.open(picture).size == Image.open(photo).size
    assert sorted(p.name for p in crops.iterdir()) == ["kit_with_rose_face0.png", "kit_with_rose_face1.png"]
    assert Image.open(crops / "kit_with_rose_face0.png").size == (150, 150)


def test_detect_reports_unreadable_photos_and_keeps_the_rest(
    capsys: pytest.CaptureFixture[str], shared_root: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    code, out, err = _run(capsys, "detect", str(broken), str(shared_root / "scenes/two_people.jpg"), *MODEL)
    assert code == EXIT_PARTIAL
    assert len(out.splitlines()) == 2
    assert "broken.jpg" in err


def test_predict_honours_the_face_options(
    capsys: pytest.CaptureFixture[str], shared_root: Path, tmp_path: Path
) -> None:
    """The pairs commands take the face options: a photo without a face is reported (not
    scored as if it were one) by default for a model that needs aligned faces, and scored
    whole with --no-detect."""
    Image.new("RGB", (200, 200), (128, 128, 128)).save(tmp_path / "blank.png")
    for name in ("obama1.jpg", "johnsnow_test1.jpg"):
        (tmp_path / name).write_bytes((shared_root / "probes" / name).read_bytes())
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("obama1.jpg johnsnow_test1.jpg 0\nobama1.jpg blank.png 0\n")
    common = ["predict", "--pairs", str(pairs), "--root", str(tmp_path), "-q", *MODEL]

    code, out, _ = _run(capsys, *common)
    assert code == EXIT_PARTIAL
    assert [line.split(",")[1] for line in out.splitlines()[1:]] == ["johnsnow_test1.jpg"]

    code, out, _ = _run(capsys, *common, "--no-detect")
    assert code == EXIT_OK
    rows = [line.split(",") for line in out.splitlines()[1:]]
    assert [row[1] for row in rows] == ["johnsnow_test1.jpg", "blank.png"]


def test_one_faces_flag_with_a_default_per_command(
    capsys: pytest.CaptureFixture[str], enrolled: Path, shared_root: Path, tmp_path: Path
) -> None:
    group = str(shared_root / "probes/obama_and_biden.jpg")
    obama = str(shared_root / "gallery/obama/obama.jpg")
    db = str(tmp_path / "db")
    code, out, err = _run(capsys, "enroll", "obama", obama, group, "--db", db, *MODEL)
    assert code == 1 and out == ""  # enrolment refuses, in one line
    assert "obama_and_biden.jpg: 3 faces found where one is needed" in err.strip().splitlines()[-1]
    code, out, err = _run(capsys, "enroll", "obama", obama, group, "--db", db, "--faces", "skip", *MODEL)
    assert (code, out) == (EXIT_PARTIAL, "obama\tadded 1\n") and "3 faces found" in err
    code, out, _ = _run(capsys, "embed", group, *MODEL)  # embedding: the largest, with a warning
    assert code == EXIT_OK and len(out.splitlines()) == 1
    code, out, _ = _run(capsys, "embed", group, "--faces", "all", *MODEL)
    assert len(out.splitlines()) == 3 and all("box" in json.loads(line)["face"] for line in out.splitlines())
    code, out, _ = _run(
        capsys, "identify", group, "--db", str(enrolled), "--faces", "largest", "--json", *MODEL
    )
    assert [face["name"] for face in json.loads(out)["faces"]] == ["obama"]
    code, _, err = _run(capsys, "embed", group, "--detector", "yolo", *MODEL)
    assert code != EXIT_OK and "unknown face detector 'yolo'; valid names: cnn, hog" in err


def test_max_side_reduces_photos_for_detection_only(
    capsys: pytest.CaptureFixture[str], shared_root: Path
) -> None:
    photo = str(shared_root / "gallery" / "obama" / "obama.jpg")  # a 259 px face box
    hog0 = ("--detector", "hog", "--upsample", "0", "--json")
    code, out, _ = _run(capsys, "detect", photo, *hog0, "--max-side", "500")
    (face,) = [json.loads(line) for line in out.splitlines()]
    assert code == EXIT_OK and 220 < face["box"]["right"] - face["box"]["left"] < 300  # the photo's pixels
    code, out, err = _run(capsys, "detect", photo, *hog0, "--max-side", "200")  # 46 px: under HOG's window
    assert code == EXIT_OK and out == "" and "no face found" in err
