"""`faceverify enroll --from-folder`: output, exit codes, and a run killed half-way then resumed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceverify.cli.common import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE
from faceverify.gallery.sqlite import SQLiteStore
from tests.cli.test_cli import Capture, _one_line_error, run


@pytest.fixture
def folder(identity_data: Path, tmp_path: Path) -> Path:
    root = tmp_path / "people"
    for person in ("p0", "p1", "p2"):
        shutil.copytree(identity_data / "gallery" / person, root / person)
    (root / "p2" / "broken.jpg").write_bytes(b"not an image")
    return root


def test_from_folder_prints_people_then_resumes_with_nothing_to_do(
    capsys: Capture, folder: Path, atto_file: Path, tmp_path: Path
) -> None:
    common = [
        "--db",
        str(tmp_path / "g"),
        "--weights",
        str(atto_file),
        "--backend",
        "torch",
        "--meta",
        "site=hq",
    ]
    code, out, err = run(capsys, "enroll", "--from-folder", str(folder), *common)
    assert code == EXIT_PARTIAL, err  # done, but an image was skipped
    assert out.splitlines() == ["p0\tadded 2", "p1\tadded 2", "p2\tadded 2"]
    assert f"skipped {folder / 'p2' / 'broken.jpg'}: not an image file" in err
    assert "enrolled 3 people (6 faces); 0 already enrolled; 0 failed; 1 images skipped (1 unreadable)" in err
    (folder / "p2" / "broken.jpg").unlink()
    code, out, err = run(capsys, "enroll", "--from-folder", str(folder), *common, "--json")
    assert code == EXIT_OK, err
    summary = json.loads(out)
    assert (summary["enrolled"], summary["already_enrolled"], summary["faces_added"]) == (0, 3, 0)
    code, out, _ = run(capsys, "list", *common[:2])
    assert out.splitlines() == ["p0\t2\tsite=hq", "p1\t2\tsite=hq", "p2\t2\tsite=hq"]


def test_nothing_enrolled_is_an_error_and_usage_is_checked(
    capsys: Capture, tmp_path: Path, atto_file: Path, folder: Path
) -> None:
    common = ["--db", str(tmp_path / "g"), "--weights", str(atto_file), "--backend", "torch"]
    bad = tmp_path / "bad"
    (bad / "someone").mkdir(parents=True)
    (bad / "someone" / "a.jpg").write_bytes(b"text")
    code, _, err = run(capsys, "enroll", "--from-folder", str(bad), *common)
    assert code == EXIT_ERROR
    assert "none of the 1 people could be enrolled; first: someone: no usable image" in _one_line_error(err)
    code, _, err = run(capsys, "enroll", "p9", "--from-folder", str(folder), *common)
    assert "give either --from-folder or NAME IMAGE..., not both" in _one_line_error(err)
    code, _, err = run(capsys, "enroll", *common)
    assert "enroll needs NAME and IMAGE... (one person), or --from-folder FOLDER" in _one_line_error(err)
    code, _, err = run(capsys, "enroll", "--from-folder", str(folder / "p0"), *common)
    assert "has no sub-folders" in _one_line_error(err)
    with pytest.raises(SystemExit) as exited:
        run(capsys, "enroll", "--from-folder", str(folder), "--existing", "replace", *common)
    assert exited.value.code == EXIT_USAGE


def test_a_run_killed_half_way_and_rerun_ends_with_every_person_exactly_once(
    atto_file: Path, tmp_path: Path
) -> None:
    """SIGKILL once some people are stored; the rerun (2 gloo ranks under torchrun, sharing
    the gallery) enrols the rest, nobody twice or in part."""
    root = tmp_path / "people"
    rng = np.random.default_rng(0)
    for person in range(12):
        (root / f"person{person:02d}").mkdir(parents=True)
        for k in range(2):
            pixels = rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"person{person:02d}" / f"{k}.png")
    db = tmp_path / "g"
    command = ["-m", "faceverify", "enroll", "--from-folder", str(root), "--db", str(db), "--json", "-q"]
    command += ["--weights", str(atto_file), "--backend", "torch", "--batch-size", "2", "--device", "cpu"]
    command += ["--input-size", "64"]  # a small network input keeps the test fast
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(
        [sys.executable, *command], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    stored = _wait_for_people(db, child)
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)
    with SQLiteStore(db) as store:
        killed = {p.name: p.faces for p in store.people()}
    assert 0 < len(killed) < 12, f"the kill came too late to be half-way ({stored} people stored)"
    assert set(killed.values()) == {2}  # each person whole, never in part

    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone"]
    done = subprocess.run([*torchrun, *command], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == EXIT_OK, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert (summary["enrolled"], summary["already_enrolled"]) == (12 - len(killed), len(killed))
    with SQLiteStore(db) as store:
        assert [(p.name, p.faces) for p in store.people()] == [(f"person{i:02d}", 2) for i in range(12)]


def _wait_for_people(db: Path, child: subprocess.Popen[str]) -> int:
    """Poll the gallery (as another process would) until someone is stored."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and child.poll() is None:
        if (db / "gallery.db").exists():
            with SQLiteStore(db) as store:
                count = len(store.people())
            if count:
                return count
        time.sleep(0.02)
    raise AssertionError(f"nobody was enrolled before the run ended: {child.communicate()[1][-2000:]}")
