"""faceverify prepare: the report path (or JSON) on stdout, one summary line, honest exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from faceverify.cli.common import EXIT_ERROR, EXIT_PARTIAL, EXIT_USAGE
from tests.cli.test_cli import Capture, _one_line_error, run
from tests.conftest import SHARED_FACES

pytest.importorskip("dlib")


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four people with two photos each, and one file that is not an image."""
    if not SHARED_FACES.is_dir():
        pytest.skip(f"real face photos not found at {SHARED_FACES}")
    root = tmp_path_factory.mktemp("photos")
    for person in ("biden", "kit_harington", "obama", "rose_leslie"):
        shutil.copytree(SHARED_FACES / "gallery" / person, root / person)
    (root / "obama" / "notes.jpg").write_text("not an image")
    return root


def test_prepare_reports_on_stderr_and_prints_the_report_path(
    capsys: Capture, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "data"
    code, stdout, stderr = run(capsys, "prepare", str(photos), str(out), "--upsample", "0", "--seed", "1")
    assert code == EXIT_PARTIAL  # done, but one photo was skipped
    assert stdout.strip() == str(out / "prepare.json")
    summary = [line for line in stderr.splitlines() if "photos used" in line]
    assert len(summary) == 1
    assert "8 of 9 photos used" in summary[0] and "1 unreadable" in summary[0]
    assert f"faceverify train data.root={out}" in summary[0]
    assert (out / "classification_train").is_dir() and (out / "verification_pairs_val.txt").is_file()

    code, stdout, stderr = run(
        capsys, "prepare", str(photos), str(out), "--seed", "1", "--upsample", "0", "--json", "-q"
    )
    report = json.loads(stdout)
    assert (code, stderr) == (EXIT_PARTIAL, "")
    assert report["reused"] == 9 and report["counts"]["unreadable"] == 1
    assert report["train_overrides"] == [f"data.root={out}"]


def test_prepare_errors_are_one_line(capsys: Capture, photos: Path, tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("keep me")
    code, _, stderr = run(capsys, "prepare", str(photos), str(foreign))
    assert code == EXIT_ERROR
    assert "--force" in _one_line_error(stderr)
    assert (foreign / "thesis.tex").read_text() == "keep me"
    code, _, stderr = run(capsys, "prepare", str(tmp_path / "missing"), str(tmp_path / "out"))
    assert code == EXIT_ERROR
    assert "photos folder" in _one_line_error(stderr)
    with pytest.raises(SystemExit) as usage:
        run(capsys, "prepare", str(photos), str(tmp_path / "out"), "--size", "100")
    assert usage.value.code == EXIT_USAGE
    assert "choose from 64, 112, 150" in _one_line_error(capsys.readouterr().err)
