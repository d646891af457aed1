"""int8 quantisation: a graph that keeps the embeddings is saved and loads; the gate refuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import faceverify as fv
from faceverify.errors import ConfigError

pytest.importorskip("onnxruntime")
from faceverify.evaluate.pairs import read_pairs
from faceverify.evaluate.quantize import MIN_MEAN_COSINE, quantize_model


def test_int8_graph_keeps_the_embeddings_and_loads_like_any_graph(
    identity_data: Path, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    model = fv.build_model("face_resnet", weights="random", model_args={"width": 16}, input_size=32)
    images = sorted(identity_data.glob("*/*/*.png"))
    out = tmp_path / "int8.onnx"
    pairs = read_pairs(identity_data / "pairs.txt", identity_data)
    report = quantize_model(model, images, out, pairs=pairs)
    assert report.saved and out.is_file()
    assert report.mean_cosine >= MIN_MEAN_COSINE and report.min_cosine > 0.95
    assert report.held_out_images == len(images[::4]) and report.calibration_images == len(images) - len(
        images[::4]
    )
    assert report.auc_fp32 is not None and report.auc_int8 is not None
    assert abs(report.auc_fp32 - report.auc_int8) < 0.05
    int8 = fv.build_model(weights=out)
    assert int8.describe()["precision"] == "int8"
    assert int8.weights_sha256() == model.weights_sha256()
    batch = np.stack([model.preprocess(Image.open(p).convert("RGB")) for p in images[:6]])
    quantised, exact = int8.embed(batch), model.embed(batch)
    assert quantised.dtype == exact.dtype == np.float32 and quantised.shape == exact.shape == (6, 128)
    cosine = (quantised * exact).sum(axis=1) / (
        np.linalg.norm(quantised, axis=1) * np.linalg.norm(exact, axis=1)
    )
    assert float(cosine.mean()) >= MIN_MEAN_COSINE


def test_the_gate_refuses_a_graph_that_changes_the_embeddings(tmp_path: Path) -> None:
    """Calibrating on flat grey images gives activation ranges far too narrow for real
    ones, so the held-out (noisy) images clip: the int8 graph is measured, and refused."""
    torch.manual_seed(0)
    model = fv.build_model("face_resnet", weights="random", model_args={"width": 16}, input_size=32)
    rng = np.random.default_rng(0)
    images = []
    for i in range(12):
        if i % 4:
            pixels = np.full((32, 32, 3), 128, dtype=np.uint8)
        else:
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        path = tmp_path / f"{i}.png"
        Image.fromarray(pixels).save(path)
        images.append(path)
    out = tmp_path / "bad.onnx"
    report = quantize_model(model, images, out)
    assert not report.passed and not report.saved and not out.exists()
    forced = quantize_model(model, images, out, force=True)
    assert forced.saved and out.is_file()


def test_too_few_images_and_a_wrong_suffix_are_refused(tmp_path: Path) -> None:
    model = fv.build_model("face_resnet", weights="random", model_args={"width": 16}, input_size=32)
    with pytest.raises(ConfigError, match=r"must end in \.onnx"):
        quantize_model(model, [], tmp_path / "x.bin")
    with pytest.raises(ConfigError, match="0 usable calibration images are too few"):
        quantize_model(model, [tmp_path / "missing.png"], tmp_path / "x.onnx")
