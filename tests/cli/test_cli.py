"""The faceverify command: data on stdout, one-line errors on stderr, honest exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from faceverify.cli.common import EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE
from faceverify.cli.main import main

Capture = pytest.CaptureFixture[str]


def run(capsys: Capture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("faceverify: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_models_lists_families_with_true_dims(capsys: Capture) -> None:
    code, out, _ = run(capsys, "models")
    assert code == EXIT_OK
    default = next(line for line in out.splitlines() if line.startswith("convnext_atto.d2_in1k *"))
    assert default.split()[3] == "320"
    code, out, _ = run(capsys, "models", "--json")
    rows = json.loads(out)
    assert {r["name"]: r["embedding_dim"] for r in rows}["vgg16_bn.tv_in1k"] == 4096
    assert [r["name"] for r in rows if r["default"]] == ["convnext_atto.d2_in1k"]


def test_embed_folder_to_stdout_as_jsonl(capsys: Capture, face_dir: Path, atto_file: Path) -> None:
    code, out, err = run(capsys, "embed", str(face_dir), "--weights", str(atto_file), "--device", "cpu")
    assert code == EXIT_OK, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [Path(r["path"]).name for r in rows] == ["face0.png", "face1.png", "face2.png", "b0.jpg"]
    assert all(len(r["embedding"]) == 320 for r in rows)
    assert "embedded 4 of 4 images" in err


@pytest.mark.parametrize("suffix", [".npy", ".jsonl"])
def test_embed_to_file_writes_a_metadata_sidecar(
    capsys: Capture, face_dir: Path, atto_file: Path, tmp_path: Path, suffix: str
) -> None:
    out_file = tmp_path / f"emb{suffix}"
    argv = ["embed", str(face_dir / "face0.png"), str(face_dir / "face1.png"), "--normalize"]
    code, out, _ = run(capsys, *argv, "--weights", str(atto_file), "--out", str(out_file))
    assert code == EXIT_OK
    assert out == ""
    if suffix == ".npy":
        vectors = np.load(out_file)
    else:
        vectors = np.array([json.loads(line)["embedding"] for line in out_file.read_text().splitlines()])
    assert vectors.shape == (2, 320)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    meta = json.loads((tmp_path / "emb.meta.json").read_text())
    assert meta["model"] == "convnext_atto.d2_in1k"
    assert meta["embedding_dim"] == 320
    assert meta["normalized"] is True
    assert meta["paths"] == [str(face_dir / "face0.png"), str(face_dir / "face1.png")]
    assert meta["preprocess"]["input_size"] == [224, 224]


def test_embed_reports_bad_files_and_keeps_good_ones(
    capsys: Capture, face_dir: Path, atto_file: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_text("text")
    out_file = tmp_path / "e.npy"
    argv = ["embed", str(face_dir / "face0.png"), str(bad), str(tmp_path / "gone.png")]
    code, _, err = run(capsys, *argv, "--weights", str(atto_file), "--out", str(out_file))
    assert code == EXIT_PARTIAL
    assert np.load(out_file).shape == (1, 320)
    assert f"skipped {bad}: not an image file" in err
    assert "gone.png: file not found" in err
    meta = json.loads((tmp_path / "e.meta.json").read_text())
    assert [s["path"] for s in meta["skipped"]] == [str(bad), str(tmp_path / "gone.png")]


def test_embed_errors_are_one_line(capsys: Capture, tmp_path: Path, atto_file: Path) -> None:
    (tmp_path / "bad.jpg").write_text("text")
    code, out, err = run(capsys, "embed", str(tmp_path / "bad.jpg"), "--weights", str(atto_file))
    assert (code, out) == (EXIT_ERROR, "")
    assert "none of the 1 images could be embedded" in _one_line_error(err)
    code, _, err = run(capsys, "embed", str(tmp_path), "--out", str(tmp_path / "x.csv"))
    assert code == EXIT_ERROR
    assert "valid suffixes: .npy, .jsonl" in _one_line_error(err)
    (tmp_path / "bad.jpg").unlink()
    code, _, err = run(capsys, "embed", str(tmp_path), "--weights", str(atto_file))
    assert "no images found" in _one_line_error(err)


def test_verify_prints_score_and_decision(capsys: Capture, face_dir: Path, atto_file: Path) -> None:
    image = str(face_dir / "face0.png")
    code, out, _ = run(capsys, "verify", image, image, "--weights", str(atto_file))
    assert code == EXIT_OK
    score, verdict, _ = out.strip().split("\t")
    assert (float(score), verdict) == (1.0, "SAME")
    other = str(face_dir / "face1.png")
    code, out, _ = run(
        capsys, "verify", image, other, "--weights", str(atto_file), "--threshold", "1", "--json"
    )
    result = json.loads(out)
    assert result["same"] is False
    assert result["threshold"] == 1.0
    assert result["a"] == image
    assert result["score"] < 1.0


def test_verify_bad_inputs_and_usage(
    capsys: Capture, face_dir: Path, atto_file: Path, tmp_path: Path
) -> None:
    image = str(face_dir / "face0.png")
    code, out, err = run(capsys, "verify", image, str(tmp_path / "nope.jpg"), "--weights", str(atto_file))
    assert (code, out) == (EXIT_ERROR, "")
    assert "nope.jpg: file not found" in _one_line_error(err)
    code, _, err = run(capsys, "verify", image, image, "--weights", str(atto_file), "--threshold", "3")
    assert "threshold 3.0 is not a cosine similarity" in _one_line_error(err)
    code, _, err = run(capsys, "verify", image, image, "--device", "tpu", "--weights", str(atto_file))
    assert "valid: auto, cpu, cuda" in _one_line_error(err)
    with pytest.raises(SystemExit) as info:
        main(["verify", image])
    assert info.value.code == EXIT_USAGE
    assert "required: IMAGE_B" in _one_line_error(capsys.readouterr().err)
    with pytest.raises(SystemExit):
        main(["embed", image, "--batch-size", "0"])
    assert "0 must be at least 1" in _one_line_error(capsys.readouterr().err)


def test_missing_weights_offline_says_what_to_do(capsys: Capture, face_dir: Path) -> None:
    image = str(face_dir / "face0.png")
    code, _, err = run(capsys, "verify", image, image, "--model", "resnet18.a1_in1k")
    assert code == EXIT_ERROR
    line = _one_line_error(err)
    assert "--weights PATH" in line
    assert "HF_HUB_OFFLINE=1" in line


def _cli(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "faceverify", *argv], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.mark.slow
def test_console_entry_point_with_a_prefilled_hf_cache(hf_cache: Path, face_dir: Path) -> None:
    # The user's path exactly: no --weights, the default model from the HF cache, offline.
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    image = str(face_dir / "face0.png")
    done = _cli("verify", image, image, "--json", env=env)
    assert done.returncode == EXIT_OK, done.stderr
    assert json.loads(done.stdout)["same"] is True
    assert "hf-hub:timm/convnext_atto.d2_in1k" in done.stderr
    empty = {**env, "HF_HUB_CACHE": str(face_dir / "no-cache-here")}
    done = _cli("verify", image, image, env=empty)
    assert (done.returncode, done.stdout) == (EXIT_ERROR, "")
    assert "HF_HUB_OFFLINE=1" in _one_line_error(done.stderr)


def test_real_photos_decode_and_embed(
    capsys: Capture, shared_faces: Path, atto_file: Path, tmp_path: Path
) -> None:
    # Real JPEGs of many sizes, two-person scenes and an RGBA PNG: every one must embed.
    out_file = tmp_path / "real.npy"
    folders = [str(shared_faces / "gallery"), str(shared_faces / "probes"), str(shared_faces / "scenes")]
    argv = ["embed", *folders, "--weights", str(atto_file), "--input-size", "112", "--out", str(out_file)]
    code, _, err = run(capsys, *argv)
    assert code == EXIT_OK, err
    meta = json.loads((tmp_path / "real.meta.json").read_text())
    assert meta["skipped"] == []
    assert np.load(out_file).shape == (len(meta["paths"]), 320)
    assert any(p.endswith("32bit.png") for p in meta["paths"])
