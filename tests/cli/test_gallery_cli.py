"""Gallery commands end to end on an embedded gallery."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from faceverify.cli.common import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL
from tests.cli.test_cli import Capture, _one_line_error, run


@pytest.fixture
def enrolled(capsys: Capture, identity_data: Path, atto_file: Path, tmp_path: Path) -> list[str]:
    common = ["--db", str(tmp_path / "g"), "--weights", str(atto_file)]
    for person in ("p0", "p1", "p2"):
        images = [str(p) for p in sorted((identity_data / "gallery" / person).glob("*.png"))]
        code, out, err = run(capsys, "enroll", person, *images, *common, "--meta", "team=blue")
        assert (code, out) == (EXIT_OK, f"{person}\tadded 2\n"), err
    return common


def test_list_identify_verify_remove(capsys: Capture, enrolled: list[str], identity_data: Path) -> None:
    db = enrolled[:2]
    code, out, _ = run(capsys, "list", *db)
    assert out.splitlines() == ["p0\t2\tteam=blue", "p1\t2\tteam=blue", "p2\t2\tteam=blue"]
    probe = str(identity_data / "probes" / "p1" / "0.png")
    code, out, _ = run(capsys, "identify", probe, *enrolled, "--threshold", "0.85")
    lines = out.splitlines()
    assert lines[0].startswith("p1\t") and lines[1].startswith("1\tp1\t")
    code, out, _ = run(
        capsys,
        "identify",
        str(identity_data / "probes" / "p9" / "0.png"),
        *enrolled,
        "--threshold",
        "0.85",
        "--json",
    )
    assert json.loads(out)["name"] is None
    code, out, _ = run(
        capsys, "verify-id", "p1", probe, *enrolled, "--threshold", "0.85", "--match", "centroid"
    )
    assert out.split("\t")[1] == "SAME"
    code, out, _ = run(capsys, "remove", "p1", *db)
    assert out == "removed p1 (2 faces)\n"
    code, out, _ = run(capsys, "identify", probe, *enrolled, "--json")
    assert "p1" not in [m["name"] for m in json.loads(out)["matches"]]
    code, _, err = run(capsys, "remove", "p1", *db)
    assert code == EXIT_ERROR
    assert "no person named 'p1'" in _one_line_error(err)
    listed = json.loads(run(capsys, "list", *db, "--json")[1])["people"]
    p2 = next(person for person in listed if person["name"] == "p2")
    code, out, _ = run(capsys, "remove", "--id", str(p2["id"]), *db, "--json")
    assert (code, json.loads(out)) == (EXIT_OK, {"removed": "p2", "faces": 2})
    code, _, err = run(capsys, "remove", "--id", str(p2["id"]), *db)
    assert code == EXIT_ERROR and f"no person with id {p2['id']}" in _one_line_error(err)
    code, _, err = run(capsys, "remove", "..", *db)
    assert code == EXIT_ERROR and "path step" in _one_line_error(err)
    code, _, err = run(capsys, "remove", *db)
    assert code == EXIT_ERROR and "give either a NAME or --id ID" in _one_line_error(err)


def test_repeated_images_export_and_import(
    capsys: Capture, enrolled: list[str], identity_data: Path, tmp_path: Path
) -> None:
    again = str(identity_data / "gallery" / "p0" / "0.png")
    code, out, err = run(capsys, "enroll", "p0", again, *enrolled)
    assert (code, out) == (EXIT_PARTIAL, "p0\tadded 0\n")
    assert "this image is already enrolled" in err
    code, _, err = run(capsys, "enroll", "someone", again, *enrolled)
    assert "already enrolled as 'p0'" in _one_line_error(err)
    exported = str(tmp_path / "g.jsonl")
    code, out, _ = run(capsys, "export", exported, *enrolled[:2])
    assert out == f"exported 3 people to {exported}\n"
    code, out, _ = run(capsys, "import", exported, "--db", str(tmp_path / "copy"), "--json")
    assert json.loads(out) == {"people": 3, "faces_added": 6}


def test_gallery_errors_are_one_line(
    capsys: Capture, enrolled: list[str], identity_data: Path, tmp_path: Path
) -> None:
    image = str(identity_data / "probes" / "p0" / "0.png")
    code, _, err = run(capsys, "identify", image, "--db", "postgresql://u:pw@127.0.0.1:1/x", *enrolled[2:])
    assert code == EXIT_ERROR
    assert "cannot connect to PostgreSQL at postgresql://u:***@127.0.0.1:1/x" in _one_line_error(err)
    code, _, err = run(capsys, "identify", image, *enrolled, "--input-size", "112")
    assert "built with another model" in _one_line_error(err)
    code, _, err = run(capsys, "enroll", "x", image, *enrolled, "--meta", "novalue")
    assert "--meta 'novalue' is not key=value" in _one_line_error(err)


def test_audit_names_the_os_user_and_never_a_person(
    capsys: Capture, enrolled: list[str], tmp_path: Path
) -> None:
    import getpass

    db = enrolled[:2]
    code, out, _ = run(capsys, "remove", "p1", *db)
    code, out, _ = run(capsys, "audit", *db)
    rows = [line.split("\t") for line in out.splitlines()]
    assert code == EXIT_OK and [(r[2], r[3], r[5]) for r in rows] == [
        (f"cli:{getpass.getuser()}", "enrol", "2"),
        (f"cli:{getpass.getuser()}", "enrol", "2"),
        (f"cli:{getpass.getuser()}", "enrol", "2"),
        (f"cli:{getpass.getuser()}", "erase", "2"),
    ]
    assert "p1" not in out and rows[3][4] == rows[1][4]  # p1's id, not their name
    code, out, _ = run(capsys, "audit", *db, "--after", rows[2][0], "--json")
    assert [json.loads(line)["action"] for line in out.splitlines()] == ["erase"]

    from faceverify.gallery.base import Change
    from faceverify.gallery.catalog import FolderCatalog

    FolderCatalog(tmp_path / "service").create("staff", change=Change(actor="key:ab12"))
    FolderCatalog(tmp_path / "service").delete("staff")
    code, out, _ = run(capsys, "audit", "--deleted", "--db", str(tmp_path / "service"), "--gallery", "staff")
    assert all(line.startswith("staff\t") for line in out.splitlines())
    assert [line.split("\t")[4] for line in out.splitlines()] == ["create", "delete"]
