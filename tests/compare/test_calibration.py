"""Calibrated thresholds: chosen on pairs, stored with the weights, used, and invalidated."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from faceverify import build_model, verify
from faceverify.compare.calibration import (
    calibration_path,
    choose_threshold,
    load_calibration,
    save_calibration,
)
from faceverify.compare.roc import operating_point
from faceverify.errors import ConfigError, MetricsError
from faceverify.evaluate.pairs import read_pairs
from faceverify.evaluate.run import calibrate


@pytest.fixture
def weights(tmp_path: Path, atto_file: Path) -> Path:
    copy = tmp_path / "model.safetensors"
    shutil.copyfile(atto_file, copy)
    return copy


def test_calibrate_store_and_use_by_default(weights: Path, identity_data: Path) -> None:
    model = build_model(weights=weights, device="cpu")
    pairs = read_pairs(identity_data / "pairs.txt", identity_data)
    calibration, problems = calibrate(model, pairs, far=0.1)
    assert problems == []
    assert calibration.target == "far=0.1"
    assert calibration.far <= 0.1
    assert calibration.impostor == 45 and calibration.genuine == 10
    path = save_calibration(model, calibration)
    assert path == weights.with_name("model.safetensors.threshold.json")
    stored = json.loads(path.read_text())
    assert stored["weights"] == str(weights)
    assert stored["pairs_file"] == str((identity_data / "pairs.txt").resolve())
    reloaded = build_model(weights=weights, device="cpu")
    assert reloaded.threshold.value == pytest.approx(calibration.threshold)
    assert reloaded.threshold.source == "calibrated"
    assert verify([1.0, 0.0], [1.0, 0.0], model=reloaded).threshold == pytest.approx(calibration.threshold)
    explicit = build_model(weights=weights, threshold=0.2, device="cpu").threshold
    assert (explicit.value, explicit.source) == (0.2, "given")  # explicit wins


def test_eer_calibration_separates_the_generated_people(weights: Path, identity_data: Path) -> None:
    model = build_model(weights=weights, device="cpu")
    calibration, _ = calibrate(model, read_pairs(identity_data / "pairs.txt", identity_data))
    assert calibration.target == "eer"
    assert (calibration.far, calibration.frr) == (0.0, 0.0)


def test_calibration_is_ignored_when_preprocessing_or_weights_change(
    weights: Path, identity_data: Path, caplog: pytest.LogCaptureFixture, atto_state: dict[str, torch.Tensor]
) -> None:
    model = build_model(weights=weights, device="cpu")
    save_calibration(model, calibrate(model, read_pairs(identity_data / "pairs.txt", identity_data))[0])
    with caplog.at_level(logging.WARNING, logger="faceverify"):
        assert build_model(weights=weights, input_size=112, device="cpu").threshold.source == "default"
    assert "measured with other preprocessing" in caplog.text
    changed = {k: v + 0.01 if v.is_floating_point() else v for k, v in atto_state.items()}
    save_file(changed, str(weights))
    with caplog.at_level(logging.WARNING, logger="faceverify"):
        assert build_model(weights=weights, device="cpu").threshold.source == "default"
    assert "the weights have changed" in caplog.text


def test_hub_models_keep_calibrations_in_the_data_folder(hf_cache: Path, identity_data: Path) -> None:
    model = build_model(device="cpu")
    path = calibration_path(model)
    assert "hf-cache" not in str(path)
    assert path.name == "timm--convnext_atto.d2_in1k.threshold.json"
    save_calibration(model, calibrate(model, read_pairs(identity_data / "pairs.txt", identity_data))[0])
    assert load_calibration(build_model(device="cpu")) is not None
    path.unlink()


def test_impossible_calibrations_are_refused(weights: Path, identity_data: Path, tmp_path: Path) -> None:
    model = build_model(weights=weights, device="cpu")
    pairs = read_pairs(identity_data / "pairs.txt", identity_data)
    with pytest.raises(MetricsError, match="needs at least 1000: use more pairs or a larger FAR"):
        calibrate(model, pairs, far=1e-3)
    with pytest.raises(ConfigError, match="must be between 0 and 1"):
        calibrate(model, pairs, far=2.0)
    with pytest.raises(ConfigError, match="random weights cannot carry a calibrated threshold"):
        calibration_path(build_model(weights="random", device="cpu"))
    unlabelled = tmp_path / "test_pairs.txt"
    unlabelled.write_text("probes/p0/0.png probes/p0/1.png\n")
    with pytest.raises(ConfigError, match="have no labels"):
        calibrate(model, read_pairs(unlabelled, identity_data))


def test_a_corrupt_sidecar_is_ignored(
    weights: Path, caplog: pytest.LogCaptureFixture, atto_model: Any
) -> None:
    weights.with_name("model.safetensors.threshold.json").write_text("{broken")
    with caplog.at_level(logging.WARNING, logger="faceverify"):
        assert build_model(weights=weights, device="cpu").threshold.source == "default"
    assert "unreadable calibration" in caplog.text


def test_choose_threshold_is_the_most_lenient_within_the_target() -> None:
    scores = np.r_[np.linspace(0.5, 1, 50), np.linspace(0, 0.6, 50)]
    labels = np.r_[np.ones(50, dtype=int), np.zeros(50, dtype=int)]
    point, target = choose_threshold(scores, labels, far=0.1)
    assert target == "far=0.1"
    assert point.far <= 0.1
    next_looser = scores[scores < point.threshold].max()
    assert operating_point(scores, labels, next_looser).far > 0.1
    eer, name = choose_threshold(scores, labels)
    assert name == "eer"
    assert abs(eer.far - eer.frr) < 0.05


def test_a_packaged_models_threshold_is_stored_in_faceverifys_folder_not_in_site_packages(
    tmp_path: Path,
) -> None:
    """dlib's ``.dat`` lives in an installed package (read-only in system installs, replaced
    by the next install): its calibration goes to the data folder; a copy of the file kept
    by the user still gets its sidecar beside it."""
    import shutil

    from faceverify.paths import data_dir

    packaged = build_model("dlib_resnet_v1", device="cpu")
    path = calibration_path(packaged)
    assert path.parent == data_dir() / "thresholds" and "site-packages" not in str(path)
    assert path.name == "dlib_resnet_v1--dlib_face_recognition_resnet_model_v1.dat.threshold.json"
    assert packaged.weights_file is not None
    copy = tmp_path / packaged.weights_file.name
    shutil.copyfile(packaged.weights_file, copy)
    mine = build_model("dlib_resnet_v1", weights=str(copy), device="cpu")
    assert calibration_path(mine) == copy.with_name(copy.name + ".threshold.json")


def test_a_packaged_models_calibration_is_saved_loaded_and_read_where_it_used_to_be(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Weights under a ``site-packages`` folder: the calibration goes to the data folder and
    comes back from there; one an earlier release left beside the file is still read."""
    from faceverify.compare.calibration import Calibration, save_calibration
    from faceverify.faces.dlib_files import RECOGNITION_NET, dlib_model_path

    # the same weights anywhere share a calibration: keep this one from the session's models
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))

    packaged = tmp_path / "site-packages" / "face_recognition_models" / RECOGNITION_NET
    packaged.parent.mkdir(parents=True)
    shutil.copyfile(dlib_model_path(RECOGNITION_NET), packaged)
    model = build_model("dlib_resnet_v1", weights=str(packaged), device="cpu", backend="onnxruntime")
    identity = model.identity()
    fields = {
        "target": "eer", "far": 0.01, "frr": 0.01, "genuine": 10, "impostor": 10, "pairs_file": "p.csv",
        "model": identity.model, "weights": str(packaged), "weights_sha256": identity.weights_sha256,
        "preprocess_fingerprint": identity.preprocess_fingerprint, "created": "2026-12-05",
    }  # fmt: skip
    beside = packaged.with_name(packaged.name + ".threshold.json")
    beside.write_text(json.dumps(Calibration(threshold=0.8, **fields).to_dict()))
    again = build_model("dlib_resnet_v1", weights=str(packaged), device="cpu", backend="onnxruntime")
    assert (again.threshold.value, again.threshold.source.value) == (0.8, "calibrated")
    saved = save_calibration(again, Calibration(threshold=0.85, **fields))
    assert saved == calibration_path(again) and saved.parent.name == "thresholds" and saved != beside
    beside.unlink()
    last = build_model("dlib_resnet_v1", weights=str(packaged), device="cpu", backend="onnxruntime")
    assert (last.threshold.value, last.threshold.source.value) == (0.85, "calibrated")
