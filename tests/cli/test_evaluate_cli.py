"""faceverify evaluate / calibrate through the CLI on generated people."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from faceverify.cli.common import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE
from faceverify.cli.main import main
from tests.cli.test_cli import Capture, _one_line_error, run


@pytest.fixture
def weights(tmp_path: Path, atto_file: Path) -> str:
    copy = tmp_path / "w.safetensors"
    shutil.copyfile(atto_file, copy)
    return str(copy)


def test_evaluate_pairs_and_identification_with_a_report(
    capsys: Capture, identity_data: Path, weights: str, tmp_path: Path
) -> None:
    report_dir = tmp_path / "report"
    code, out, err = run(
        capsys,
        "evaluate",
        "--pairs",
        str(identity_data / "pairs.txt"),
        "--root",
        str(identity_data),
        "--gallery",
        str(identity_data / "gallery"),
        "--probes",
        str(identity_data / "probes"),
        "--weights",
        weights,
        "--report",
        str(report_dir),
    )
    assert code == EXIT_OK, err
    assert "ROC AUC    1.0000" in out
    assert "TAR@FAR=0.01   needs at least 100 impostor pairs, have 45" in out
    assert "rank-1     1.0000" in out
    report = json.loads((report_dir / "report.json").read_text())
    assert report["verification"]["pairs"] == 55
    assert report["inputs"]["pairs_file"] == str(identity_data / "pairs.txt")
    assert report["model"]["weights"] == weights
    assert report["identification"]["probes"]["unknown"] == 4
    for name in ("roc.png", "scores.png", "cmc.png"):
        with Image.open(report_dir / name) as image:
            assert image.format == "PNG" and image.width > 300


def test_evaluate_reports_bad_lines_and_still_evaluates(
    capsys: Capture, identity_data: Path, weights: str, tmp_path: Path
) -> None:
    pairs = tmp_path / "pairs.txt"
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG broken")
    lines = (identity_data / "pairs.txt").read_text().splitlines()
    lines += [f"probes/p0/0.png {broken} 0", "only-one-field"]
    pairs.write_text("\n".join(lines) + "\n")
    code, out, err = run(
        capsys,
        "evaluate",
        "--pairs",
        str(pairs),
        "--root",
        str(identity_data),
        "--weights",
        weights,
        "--json",
    )
    assert code == EXIT_PARTIAL
    report = json.loads(out)
    assert report["verification"]["pairs"] == 56  # the pair with a broken image counts, as a failure
    assert report["verification_usable"]["pairs"] == 55
    assert report["failed_pairs"] == {"total": 1, "by_kind": {"unreadable": 1}, "score": -1.0}
    assert report["problems"][0].startswith("line 57: expected 'path_a path_b [label]'")
    assert report["problems"][1].startswith(f"line 56: image {broken} (not an image file")
    assert "skipped line 56" in err


def test_calibrate_then_verify_uses_the_threshold(capsys: Capture, identity_data: Path, weights: str) -> None:
    pairs = ["--pairs", str(identity_data / "pairs.txt"), "--root", str(identity_data)]
    code, out, err = run(capsys, "calibrate", *pairs, "--weights", weights, "--far", "0.1")
    assert code == EXIT_OK, err
    threshold, far, frr, target = out.strip().split("\t")
    assert target == "(far=0.1)"
    assert frr.startswith("FRR ")
    assert float(far.split()[1]) <= 0.1
    assert "stored in" in err
    image = str(identity_data / "probes" / "p0" / "0.png")
    code, out, _ = run(capsys, "verify", image, image, "--weights", weights, "--json")
    assert json.loads(out)["threshold"] == pytest.approx(float(threshold), abs=1e-4)
    code, out, _ = run(capsys, "evaluate", *pairs, "--weights", weights, "--json")
    assert json.loads(out)["threshold"]["source"] == "calibrated"
    code, out, err = run(
        capsys, "calibrate", *pairs, "--weights", weights, "--at", "eer", "--dry-run", "--json"
    )
    assert json.loads(out)["target"] == "eer"
    assert "dry run: nothing stored" in err


def test_evaluate_and_calibrate_usage_errors(capsys: Capture, identity_data: Path, weights: str) -> None:
    code, _, err = run(capsys, "evaluate", "--weights", weights)
    assert code == EXIT_ERROR
    assert "--pairs FILE and --root DIR are required" in _one_line_error(err)
    code, _, err = run(capsys, "evaluate", "--pairs", str(identity_data / "pairs.txt"), "--weights", weights)
    assert "--pairs needs --root DIR" in _one_line_error(err)
    code, _, err = run(capsys, "evaluate", "--gallery", str(identity_data / "gallery"), "--weights", weights)
    assert "--gallery and --probes go together" in _one_line_error(err)
    pairs = ["--pairs", str(identity_data / "pairs.txt"), "--root", str(identity_data)]
    code, _, err = run(capsys, "calibrate", *pairs, "--weights", weights, "--far", "0.001")
    assert "needs at least 1000" in _one_line_error(err)
    with pytest.raises(SystemExit) as info:
        main(["calibrate", *pairs, "--weights", weights])
    assert info.value.code == EXIT_USAGE
    assert "one of the arguments --far --at is required" in _one_line_error(capsys.readouterr().err)


def test_predict_reads_csv_pairs_with_named_columns(
    capsys: Capture, identity_data: Path, weights: str, tmp_path: Path
) -> None:
    lines = (identity_data / "pairs.txt").read_text().splitlines()[:6]
    csv_file = tmp_path / "pairs.csv"
    csv_file.write_text("first,second,truth\n" + "\n".join(",".join(line.split()) for line in lines) + "\n")
    columns = ["--col-a", "first", "--col-b", "second", "--col-label", "truth"]
    argv = ["predict", "--pairs", str(csv_file), "--root", str(identity_data), "--weights", weights]
    code, out, err = run(capsys, *argv, *columns)
    assert code == EXIT_OK, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["a"], r["b"], r["label"]) for r in rows] == [tuple(line.split()) for line in lines]
    code, _, err = run(capsys, *argv)
    assert code == EXIT_ERROR
    assert "CSV has no image-a column among first, second, truth" in _one_line_error(err)
    with pytest.raises(SystemExit) as info:
        main(["predict", "--pairs", str(csv_file), "--weights", weights])
    assert info.value.code == EXIT_USAGE
    assert "required: --root" in _one_line_error(capsys.readouterr().err)


def test_evaluate_by_a_csv_column_with_failed_pairs(
    capsys: Capture, identity_data: Path, weights: str, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG broken")
    rows = [line.split() for line in (identity_data / "pairs.txt").read_text().splitlines()]
    rows.append([str(broken), "probes/p9/1.png", "1"])
    csv_file = tmp_path / "pairs.csv"
    lines = [",".join([*row, "masked" if "p9" in row[1] else "bare"]) for row in rows]
    csv_file.write_text("a,b,label,mask\n" + "\n".join(lines) + "\n")
    argv = ["evaluate", "--pairs", str(csv_file), "--root", str(identity_data), "--weights", weights]
    code, out, err = run(capsys, *argv, "--by", "mask", "--report", str(tmp_path / "report"))
    assert code == EXIT_PARTIAL, err
    assert "failed     1 of 56 pairs (1 unreadable); scored -1, below any real score" in out
    assert "-- all pairs, failed ones counted as non-matches --" in out
    assert "-- usable pairs only, failed ones left out --" in out
    table = out[out.index("-- by mask:") :].splitlines()
    assert table[1].split()[:5] == ["mask", "pairs", "genuine", "impostor", "failed"]
    assert [row.split()[:5] for row in table[2:4]] == [
        ["bare", "45", "9", "36", "0"],
        ["masked", "11", "2", "9", "1"],
    ]
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    masked = report["by"]["mask"]["masked"]
    assert (masked["pairs"], masked["genuine"], masked["impostor"], masked["failed"]) == (11, 2, 9, 1)
    assert report["verification"]["roc_auc"] < report["verification_usable"]["roc_auc"]
    with Image.open(tmp_path / "report" / "roc.png") as image:
        assert image.format == "PNG"
    code, _, err = run(capsys, *argv, "--by", "age")
    assert code == EXIT_ERROR
    assert f"cannot group by 'age': no such column in '{csv_file}'; columns: mask" in _one_line_error(err)
