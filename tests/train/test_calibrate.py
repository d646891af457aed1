"""Trained models carry a calibrated threshold: chosen on held-out people, used by verify."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import faceverify as fv
from faceverify.compare.calibration import Calibration, save_calibration
from faceverify.errors import ConfigError
from faceverify.models.checkpoint import load_checkpoint
from faceverify.preprocess import PreprocessConfig
from faceverify.runtime.base import Embedder
from faceverify.train.calibrate import (
    CalibrationPairs,
    Calibrator,
    calibration_pairs,
    held_out_identities,
)
from faceverify.train.config import load_config
from faceverify.train.loop import train

FAR = 0.05  # needs 20 impostor pairs; the 5 held-out people give 1,000


@pytest.fixture(scope="module")
def run(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `fast` settings without a pairs file: 5 of the 30 identities are held out."""
    out = tmp_path_factory.mktemp("calibrated") / "run"
    overrides = [
        f"data.root={synth_root}",
        "data.workers=0",
        "data.pairs=null",
        "model.args={width: 16}",
        "model.input_size=32",
        "batch_size=32",
        "optim.lr=0.05",
        "epochs=4",
        f"calibrate.far={FAR}",
        f"out={out}",
    ]
    train(load_config(None, overrides))
    return out


def _held_out_scores(run: Path, model: Embedder) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """Every pair of the run's held-out images, scored by ``model``: scores, labels, images."""
    config = load_config(run / "config.yaml")
    pairs = calibration_pairs(config, held_out_identities(config))
    assert pairs is not None
    scores, labels = pairs.score(model, batch_size=64)
    return scores, labels, pairs.images


def test_the_built_model_carries_the_threshold_its_checkpoint_stores(run: Path) -> None:
    """build_model(best.pt) uses the stored threshold (not 0.5), in PyTorch and ONNX Runtime,
    and each checkpoint stores the calibration of its own epoch, as logged."""
    stored = load_checkpoint(run / "best.pt")["calibration"]
    assert stored["target"] == f"far={FAR:g}" and stored["impostor"] == 1000 and stored["genuine"] == 225
    model = fv.build_model(weights=run / "best.pt", device="cpu")
    assert model.threshold.value == stored["threshold"] != 0.5
    assert model.threshold.source == "checkpoint"  # not "calibrated": no sidecar was written
    onnx = fv.build_model(weights=run / "best.pt", device="cpu", backend="onnxruntime")
    assert onnx.threshold == model.threshold
    last = load_checkpoint(run / "last.pt")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["threshold"] == last["calibration"]["threshold"]
    assert rows[-1]["threshold_far"] <= FAR


def test_verify_with_the_stored_threshold_tells_held_out_people_apart(run: Path, tmp_path: Path) -> None:
    """On people training never saw, the stored threshold keeps FAR within the target, so
    `faceverify verify` calls a pair of strangers that look more alike than 90% of stranger
    pairs DIFFERENT (the fixed 0.5 called such pairs SAME: they scored 0.8-0.9 when this was
    written), a gallery does not name one after the other, and a pair of one person more
    alike than 90% of such pairs is SAME."""
    model = fv.build_model(weights=run / "best.pt", device="cpu")
    scores, labels, images = _held_out_scores(run, model)
    accepted = scores >= model.threshold.value
    assert accepted[labels == 0].mean() <= FAR + 1e-3  # one borderline pair of float noise
    first, second = np.triu_indices(len(images), k=1)

    def pair_at(label: int, quantile: float) -> tuple[Path, Path, float]:
        own = np.flatnonzero(labels == label)
        pick = own[np.argsort(scores[own])[int(quantile * (len(own) - 1))]]
        return images[first[pick]], images[second[pick]], float(scores[pick])

    a, b, score = pair_at(0, 0.9)
    done = subprocess.run(
        [sys.executable, "-m", "faceverify", "verify", str(a), str(b), "--model", str(run / "best.pt")],
        capture_output=True,
        text=True,
        check=True,
    )
    verdict = done.stdout.split("\t")
    assert verdict[1] == "DIFFERENT", (score, done.stdout)
    assert verdict[2].strip() == f"(threshold {model.threshold.value:g}, checkpoint)"
    gallery = fv.open_gallery(tmp_path / "gallery", model)
    gallery.enroll("a", [a])
    found = gallery.identify(b)
    assert found.threshold == model.threshold and found.name is None, found
    a, b, score = pair_at(1, 0.9)
    assert fv.verify(a, b, model=model).same, (score, model.threshold)


def test_held_out_identities_never_become_training_classes(run: Path, synth_root: Path) -> None:
    """The held-out people are drawn by seed, recorded in the saved config, and absent from
    the classifier's classes (and so from its validation accuracy)."""
    recorded = load_config(run / "config.yaml").calibrate.holdout_identities
    assert recorded is not None and len(recorded) == 5
    classes = load_checkpoint(run / "best.pt")["class_names"]
    assert not set(recorded) & set(classes)
    assert sorted(set(recorded) | set(classes)) == sorted(
        p.name for p in (synth_root / "classification_train").iterdir()
    )
    base = load_config(None, [f"data.root={synth_root}", "data.pairs=null"])
    assert held_out_identities(base) == recorded  # seed 0, as the run
    other = held_out_identities(replace(base, seed=1))
    assert len(other) == 5 and other != recorded
    assert held_out_identities(load_config(None, [f"data.root={synth_root}"])) == []  # pairs given


def test_a_calibrate_sidecar_outranks_the_checkpoint_and_an_explicit_threshold_both(
    run: Path, tmp_path: Path
) -> None:
    """Precedence: threshold= > `faceverify calibrate` for these weights > the checkpoint's own;
    built with other preprocessing, the checkpoint's threshold no longer applies."""
    weights = tmp_path / "best.pt"
    shutil.copy(run / "best.pt", weights)
    model = fv.build_model(weights=weights, device="cpu")
    carried = model.threshold
    assert fv.build_model(weights=weights, device="cpu", input_size=40).threshold.source == "default"
    entry = load_checkpoint(weights)["calibration"]
    mine = Calibration(
        **{**entry, "threshold": 0.25, "weights_sha256": model.weights_sha256(), "target": "eer"}
    )
    save_calibration(model, mine)
    sidecar = fv.build_model(weights=weights, device="cpu").threshold
    assert (sidecar.value, sidecar.source) == (0.25, "calibrated") and sidecar != carried
    assert fv.build_model(weights=weights, device="cpu", threshold=0.6).threshold.value == 0.6


def test_too_few_impostor_pairs_for_the_target_far_calibrate_at_the_eer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """FAR 1e-3 cannot be measured on 500 impostor pairs: the EER point is chosen, once warned."""
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(200), np.zeros(500)].astype(np.int8)
    scores = np.r_[rng.normal(0.7, 0.1, 200), rng.normal(0.3, 0.1, 500)]
    contract = PreprocessConfig((32, 32), "bilinear", (0.5,) * 3, (0.5,) * 3, 1.0)
    calibrator = Calibrator(1e-3, "pairs", "face_resnet", contract)
    with caplog.at_level(logging.WARNING, logger="faceverify"):
        first = calibrator.choose(scores, labels)
        calibrator.choose(scores, labels)
    assert first is not None and first.target == "eer"
    assert abs(first.far - first.frr) < 0.02 and 0.2 < first.threshold < 0.8
    assert sum("equal error rate" in r.getMessage() for r in caplog.records) == 1
    many = np.r_[rng.normal(0.7, 0.1, 200), rng.normal(0.3, 0.1, 2000)]
    enough = Calibrator(1e-3, "pairs", "face_resnet", contract).choose(
        many, np.r_[np.ones(200), np.zeros(2000)].astype(np.int8)
    )
    assert enough is not None and enough.target == "far=0.001" and enough.far <= 1e-3


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("calibrate.far=0", "calibrate.far 0.0 must lie between 0 and 1"),
        ("calibrate.far=1.5", "calibrate.far 1.5 must lie between 0 and 1"),
        ("calibrate.holdout=1", "calibrate.holdout 1.0 must be a share in"),
        ("calibrate.images_per_identity=1", "calibrate.images_per_identity 1 must be at least 2"),
        ("calibrate.holdout_max=2", "calibrate.holdout_max 2 is below calibrate.holdout_min 5"),
        ("calibrate.holdout_identities=[a, 3]", r"calibrate.holdout_identities = \['a', 3\] must be list"),
        ("calibrate.target=0.1", "unknown key calibrate.target in calibrate; valid keys: far, holdout"),
    ],
)
def test_bad_calibrate_settings_name_the_valid_range(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_explicit_held_out_identities_must_exist(synth_root: Path) -> None:
    config = load_config(None, [f"data.root={synth_root}", "calibrate.holdout_identities=[id00001, bob]"])
    with pytest.raises(ConfigError, match=r"names \['bob'\], not identity folders"):
        held_out_identities(config)


def test_an_unreadable_held_out_image_is_reported_once_and_the_others_still_paired(
    synth_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = sorted((synth_root / "classification_val").iterdir())[:3]
    images = [image for person in good for image in sorted(person.iterdir())]  # 3 people × 2
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    pairs = CalibrationPairs("3 held-out identities", images=[*images, broken], people=[0, 0, 1, 1, 2, 2, 2])
    model = fv.build_model(
        "face_resnet", weights="random", model_args={"width": 8}, input_size=32, device="cpu"
    )
    with caplog.at_level(logging.WARNING, logger="faceverify"):
        scores, labels = pairs.score(model, batch_size=4)
        pairs.score(model, batch_size=4)
    assert len(scores) == 15 and labels.tolist().count(1) == 3  # C(6, 2) pairs, 3 of them genuine
    assert sum("broken.jpg" in r.getMessage() for r in caplog.records) == 1
