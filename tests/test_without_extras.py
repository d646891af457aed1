"""The base install (no PyTorch, no plots, no PostgreSQL drivers) runs every base command
and gives the full install's answers: dlib's network on ONNX Runtime, written from dlib's
own file, against the PyTorch port (``tests/without_extras.py`` blocks the extras)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import SHARED_FACES

RUNNER = Path(__file__).with_name("without_extras.py")
MODEL = ("--model", "dlib_resnet_v1")
#: Base and full installs compute the same vectors (ONNX Runtime vs PyTorch, fp32).
TOLERANCE = 1e-4

needs_photos = pytest.mark.skipif(not SHARED_FACES.is_dir(), reason=f"{SHARED_FACES} is absent")


def base(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``faceverify ARGS`` with the extras unimportable."""
    done = subprocess.run([sys.executable, str(RUNNER), *args], capture_output=True, text=True, timeout=300)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def full(*args: str) -> subprocess.CompletedProcess[str]:
    """``faceverify ARGS`` on the full install, with the network in PyTorch."""
    command = [sys.executable, "-m", "faceverify", *args, "--backend", "torch"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dlib's file where a user keeps it, so calibrating writes beside it, not in site-packages."""
    from faceverify.faces.dlib_files import RECOGNITION_NET, dlib_model_path

    copy = tmp_path_factory.mktemp("weights") / RECOGNITION_NET
    shutil.copyfile(dlib_model_path(RECOGNITION_NET), copy)
    return copy


@needs_photos
def test_embedding_and_verifying_give_the_full_installs_numbers(tmp_path: Path) -> None:
    gallery = SHARED_FACES / "gallery"
    base("embed", str(gallery), *MODEL, "--out", str(tmp_path / "base.npy"), "-q")
    full("embed", str(gallery), *MODEL, "--out", str(tmp_path / "full.npy"), "-q")
    ours, theirs = np.load(tmp_path / "base.npy"), np.load(tmp_path / "full.npy")
    assert ours.shape == theirs.shape == (9, 128)
    assert float(np.abs(ours - theirs).max()) <= TOLERANCE
    pair = [str(gallery / "obama" / "obama.jpg"), str(gallery / "biden" / "biden.jpg")]
    got = json.loads(base("verify", *pair, *MODEL, "--json").stdout)
    expected = json.loads(full("verify", *pair, *MODEL, "--json").stdout)
    assert abs(got["score"] - expected["score"]) <= TOLERANCE
    assert got["same"] is expected["same"] is False
    assert got["threshold"] == expected["threshold"] and got["threshold_source"] == "published"


@needs_photos
def test_a_gallery_enrolled_on_the_base_install_serves_the_full_one(tmp_path: Path) -> None:
    db = str(tmp_path / "gallery")
    for person in sorted((SHARED_FACES / "gallery").iterdir()):
        base("enroll", person.name, str(person), *MODEL, "--db", db, "-q")
    probe = str(SHARED_FACES / "probes" / "obama1.jpg")
    got = json.loads(base("identify", probe, *MODEL, "--db", db, "--json").stdout)
    expected = json.loads(full("identify", probe, *MODEL, "--db", db, "--json").stdout)
    assert _names(got) == _names(expected) == ["obama"]
    assert np.allclose(_scores(got), _scores(expected), atol=TOLERANCE)
    found = base("detect", str(SHARED_FACES / "probes"), *MODEL, "--db", db, "--json", "-q").stdout
    assert "obama" in found and "biden" in found


@needs_photos
def test_a_photo_library_needs_no_extra(tmp_path: Path) -> None:
    """Scan, group, name and a contact sheet on the base install (no torch, no faiss)."""
    db, sheet = str(tmp_path / "library"), tmp_path / "sheet.html"
    done = base("cluster", str(SHARED_FACES / "gallery"), "--db", db, "--json", "--sheet", str(sheet), "-q")
    report = json.loads(done.stdout)
    grouping = report["grouping"]
    assert report["scan"]["faces_added"] == 9 and (grouping["groups"], grouping["alone"]) == (4, 1)
    groups = [line.split("\t") for line in base("people", "list", "--db", db).stdout.splitlines()]
    base("people", "name", "--db", db, groups[0][0], "someone")
    assert base("list", "--db", db).stdout.startswith("someone\t")
    assert sheet.read_text().count("data:image/jpeg") == 9


@needs_photos
def test_evaluating_and_calibrating_need_no_extra(tmp_path: Path, weights: Path) -> None:
    pairs = _pairs_file(tmp_path)
    model = (*MODEL, "--weights", str(weights))
    report = tmp_path / "report"
    pairs_args = ("--pairs", str(pairs), "--root", str(SHARED_FACES / "gallery"))
    base("evaluate", *model, *pairs_args, "--report", str(report), "--json", "-q")
    written = json.loads((report / "report.json").read_text())
    assert written["verification"]["pairs"] == 10 and not list(report.glob("*.png"))  # plots need the extra
    done = base("calibrate", *model, *pairs_args, "--at", "eer", "--json", "-q")
    calibrated = json.loads(done.stdout)["threshold"]
    verdict = base("verify", *_two(), *model, "--json").stdout
    assert json.loads(verdict)["threshold_source"] == "calibrated"
    assert json.loads(full("verify", *_two(), *model, "--json").stdout)["threshold"] == pytest.approx(
        calibrated
    )


@needs_photos
def test_what_needs_an_extra_says_which_in_one_line() -> None:
    photo = str(SHARED_FACES / "probes" / "obama1.jpg")
    for args, extra in (
        (("embed", photo), "torch"),  # the default model is a timm one
        (("embed", photo, "--model", "resnet18.a1_in1k"), "torch"),
        (("embed", photo, *MODEL, "--device", "cuda"), "torch"),
        (("train", "data.root=x"), "torch"),
        (("serve", "--insecure", "--port", "9"), "torch"),  # refused before it starts, not inside uvicorn
        (("quantize", *MODEL, "--calibration-images", photo, "--out", "int8.onnx"), "onnx"),
        (("watch", photo, "--no-gallery"), "video"),
    ):
        done = base(*args, check=False)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
        assert f'pip install "faceverify[{extra}]"' in lines[0], lines[0]
    hint = base("embed", photo, check=False).stderr
    assert "--model dlib_resnet_v1" in hint  # and the way to go on without it
    listed = base("models").stdout
    assert "dlib_resnet_v1" in listed and 'needs: pip install "faceverify[torch]"' in listed


@needs_photos
def test_the_service_answers_without_extras(tmp_path: Path) -> None:
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, str(RUNNER), "serve", "--port", str(port), "--insecure", *MODEL]
    command += ["--db", str(tmp_path / "g")]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until_up(url, server)
        a, b = _two()
        with open(a, "rb") as fa, open(b, "rb") as fb:
            answer = httpx.post(f"{url}/v1/verify", files={"a": fa, "b": fb}, timeout=60)
        assert answer.status_code == 200, answer.text
        cli = json.loads(base("verify", a, b, *MODEL, "--json").stdout)
        assert answer.json()["score"] == pytest.approx(cli["score"], abs=TOLERANCE)
        assert answer.json()["same"] is True
        assert httpx.get(url + "/", timeout=10).status_code == 200  # the page
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    assert "optional modules imported" not in err, err


def _wait_until_up(url: str, server: subprocess.Popen[str]) -> None:
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert server.poll() is None, server.stderr.read() if server.stderr else "the server exited"
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError("the server did not become ready in 120 s")


def _two() -> tuple[str, str]:
    folder = SHARED_FACES / "gallery" / "obama"
    return str(folder / "obama.jpg"), str(folder / "obama2.jpg")


def _pairs_file(folder: Path) -> Path:
    """Every same-person pair of the shared gallery and different-person ones, ten in all
    (paths relative to the gallery: ``--root``)."""
    people = {p.name: sorted(p.iterdir()) for p in sorted((SHARED_FACES / "gallery").iterdir())}
    same = [(photos[0], photos[1], 1) for photos in people.values() if len(photos) > 1]
    firsts = [photos[0] for photos in people.values()]
    different = [(firsts[i], firsts[j], 0) for i in range(len(firsts)) for j in range(i + 1, len(firsts))]
    rows = same + different[: 10 - len(same)]
    path = folder / "pairs.csv"
    root = SHARED_FACES / "gallery"
    lines = "".join(f"{a.relative_to(root)},{b.relative_to(root)},{label}\n" for a, b, label in rows)
    path.write_text("a,b,label\n" + lines)
    return path


def _names(answer: dict[str, Any]) -> list[str]:
    """The name given to each face of an ``identify --json`` answer."""
    return [str(face["name"]) for face in answer["faces"]]


def _scores(answer: dict[str, Any]) -> list[float]:
    """Every face's score against every enrolled person, in name order."""
    return [
        float(match["score"])
        for face in answer["faces"]
        for match in sorted(face["matches"], key=lambda match: str(match["name"]))
    ]


#: Packages that must never become base dependencies (each is an extra's, or a future one's).
HEAVY = {
    "torch",
    "torchvision",
    "timm",
    "matplotlib",
    "scikit-learn",
    "av",
    "supervision",
    "opencv-python",
    "trackers",
}


def test_the_base_install_depends_on_nothing_heavy() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    base_names = {_name(requirement) for requirement in project["dependencies"]}
    assert not base_names & HEAVY, f"heavy packages in the base install: {sorted(base_names & HEAVY)}"
    torch_extra = {_name(requirement) for requirement in project["optional-dependencies"]["torch"]}
    assert {"torch", "timm"} <= torch_extra


def _name(requirement: str) -> str:
    import re

    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()


GALLERY_WITHOUT_FAISS = """
import logging, sys
sys.modules["faiss"] = None
import numpy as np
from faceverify.errors import MissingDependencyError
from faceverify.gallery.base import StoredFace
from faceverify.gallery.sqlite import SQLiteStore

logging.basicConfig(level=logging.WARNING, format="%(message)s")
vectors = np.random.default_rng(0).normal(size=(60, 16)).astype(np.float32)
store = SQLiteStore(sys.argv[1], index_min_faces=20, background=False)
store.bind({"model": "m", "embedding_dim": 16, "preprocess_fingerprint": "f", "weights_sha256": "w"})
for i, vector in enumerate(vectors):
    store.add(f"p{i}", [StoredFace(vector, f"h{i}", "x")], None)
print(store.search(vectors[7], 1, "best")[0].name, type(store._cache.index).__name__)
try:
    SQLiteStore(sys.argv[1] + "-pq", index="pq")
except MissingDependencyError as exc:
    print(exc)
"""


def test_galleries_are_searched_exactly_without_faiss_and_say_so(tmp_path: Path) -> None:
    """Past the size where ``auto`` picks the faiss ``pq`` index, a base install searches
    every face (right, slower) and warns once with the fix; asking for ``pq`` names the extra."""
    done = subprocess.run(
        [sys.executable, "-c", GALLERY_WITHOUT_FAISS, str(tmp_path / "g")], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    found, refused = done.stdout.splitlines()
    assert found == "p7 ExactIndex"
    assert done.stderr.count("searched exactly") == 1 and 'pip install "faceverify[index]"' in done.stderr
    assert "'pq' gallery index needs faiss" in refused and 'pip install "faceverify[index]"' in refused
