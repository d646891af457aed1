"""``faceverify cluster``, ``faceverify people`` and ``evaluate --clusters`` end to end."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from faceverify.cli.common import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL
from tests.cli.test_cli import Capture, _one_line_error, run
from tests.cluster.conftest import dev_people


@pytest.fixture(scope="module")
def small_dev(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 people of photos-dev (folder = person) and one file that is no photo."""
    root = tmp_path_factory.mktemp("dev") / "people"
    for person in dev_people(12):
        shutil.copytree(person, root / person.name)
    (root / dev_people(12)[0].name / "notes.jpg").write_text("not a photo")
    return root


def test_cluster_then_correct_from_the_command_line(capsys: Capture, small_dev: Path, tmp_path: Path) -> None:
    db = ["--db", str(tmp_path / "g")]
    export, sheet = tmp_path / "out" / "library.json", tmp_path / "out" / "sheet.html"
    code, out, err = run(
        capsys, "cluster", str(small_dev), *db, "--json", "--export", str(export), "--sheet", str(sheet)
    )
    assert code == EXIT_PARTIAL, err  # one unreadable file, reported, the rest done
    assert "notes.jpg" in err and "Traceback" not in err
    report = json.loads(out)
    assert report["scan"]["new"] == report["scan"]["photos"] > 30
    assert report["grouping"]["groups"] >= 10
    assert report["grouping"]["thresholds"]["source"].startswith("from the model's")
    for written in (export, sheet):
        assert stat.S_IMODE(os.stat(written).st_mode) == 0o600  # faces and names: owner only
    page = sheet.read_text()
    assert page.count("<h2>") >= 10 and "data:image/jpeg;base64," in page
    photos = json.loads(export.read_text())["photos"]
    assert {p["status"] for p in photos} == {"ok", "failed"}

    code, out, _ = run(capsys, "people", "list", *db)
    rows = [line.split("\t") for line in out.splitlines()]
    assert code == EXIT_OK and all(name == "-" for _, _, name in rows)
    first, second = int(rows[0][0]), int(rows[1][0])
    code, out, err = run(capsys, "people", "name", *db, str(first), "Ann Example")
    assert (code, out) == (EXIT_OK, f"{first}\tAnn Example\n"), err
    code, out, _ = run(capsys, "list", *db)  # the gallery's people: the named group is one
    assert out.startswith("Ann Example\t")
    code, out, _ = run(capsys, "people", "faces", *db, str(second), "--json")
    faces = json.loads(out)
    moved = faces[0]["id"]
    code, out, _ = run(capsys, "people", "reject", *db, str(moved), str(second))
    assert code == EXIT_OK
    code, _, err = run(capsys, "people", "move", *db, str(moved), str(second))
    assert code == EXIT_ERROR
    line = _one_line_error(err)
    assert f"face {moved}" in line and f"group {second}" in line
    code, out, _ = run(capsys, "people", "move", *db, str(moved), "new", "--json")
    assert json.loads(out)["group"] not in (first, second)
    code, _, err = run(capsys, "people", "move", *db, str(moved), "somewhere")
    assert code == EXIT_ERROR and "not a group id" in _one_line_error(err)
    code, out, _ = run(capsys, "cluster", str(small_dev), *db, "--full", "--json")
    assert json.loads(out)["grouping"]["mode"] == "full"
    code, out, _ = run(capsys, "people", "faces", *db, "--json")  # the ungrouped ones
    assert moved not in {f["id"] for f in json.loads(out)}


def test_evaluate_clusters_scores_groups_against_the_folders(capsys: Capture, small_dev: Path) -> None:
    code, out, err = run(capsys, "evaluate", "--clusters", str(small_dev), "--json")
    assert code == EXIT_PARTIAL, err
    figures = json.loads(out)
    assert set(figures) >= {"bcubed", "pairwise", "groups", "unassigned"}
    assert figures["labels"] == 12 and figures["failed"] == 1
    assert figures["bcubed"]["f1"] > 0.9
    # a threshold far too loose merges everyone: the figures must show it
    code, out, _ = run(
        capsys, "evaluate", "--clusters", str(small_dev), "--json", "--cluster-threshold", "0.5"
    )
    assert json.loads(out)["bcubed"]["precision"] < 0.5
    code, _, err = run(capsys, "evaluate", "--clusters", str(small_dev), "--pairs", "x.csv")
    assert code == EXIT_ERROR and "--clusters" in _one_line_error(err)
