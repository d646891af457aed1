"""synth, train and predict through the CLI."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from faceverify.cli.common import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL
from tests.cli.test_cli import Capture, _one_line_error, run


def test_synth_train_predict(capsys: Capture, tmp_path: Path) -> None:
    data = tmp_path / "data"
    code, out, _ = run(
        capsys, "synth", str(data), "--identities", "6", "--images", "4", "--held-out", "4", "--size", "32"
    )
    assert (code, out.strip()) == (EXIT_OK, str(data))
    overrides = [
        f"data.root={data}",
        "data.workers=0",
        "model.args={width: 8}",
        "model.input_size=32",
        "epochs=1",
        "batch_size=8",
        f"out={tmp_path / 'run'}",
    ]
    code, out, err = run(capsys, "train", "-q", *overrides)
    assert code == EXIT_OK, err
    checkpoint = out.strip()
    assert checkpoint == str(tmp_path / "run" / "best.pt")
    pairs = data / "verification_pairs_test.txt"  # no labels
    code, out, _ = run(
        capsys, "predict", "--pairs", str(pairs), "--root", str(data), "--model", checkpoint, "-q"
    )
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == EXIT_OK
    assert len(rows) == len(pairs.read_text().splitlines())
    assert rows[0].keys() == {"a", "b", "score"}
    assert rows[0]["a"].startswith("verification_data/")
    labelled = data / "verification_pairs_val.txt"
    broken = tmp_path / "with_missing.txt"
    broken.write_text(labelled.read_text() + "verification_data/none.jpg verification_data/0000_0.jpg 1\n")
    out_file = tmp_path / "scores.csv"
    code, _, err = run(
        capsys,
        "predict",
        "--pairs",
        str(broken),
        "--root",
        str(data),
        "--model",
        checkpoint,
        "--out",
        str(out_file),
    )
    assert code == EXIT_PARTIAL
    assert "line" in err and "none.jpg not found" in err
    with out_file.open() as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == len(labelled.read_text().splitlines())
    assert {r["label"] for r in rows} == {"0", "1"}


def test_train_errors_are_one_line(capsys: Capture, tmp_path: Path) -> None:
    code, _, err = run(capsys, "train", "optim.lrate=1")
    assert code == EXIT_ERROR
    assert "unknown key optim.lrate" in _one_line_error(err)
    code, _, err = run(capsys, "train", f"data.root={tmp_path}")
    assert code == EXIT_ERROR
    assert "dataset folder" in _one_line_error(err)
