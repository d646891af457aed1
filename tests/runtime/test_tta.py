"""Flip test-time augmentation: one pass of twice the batch, recorded wherever vectors are kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import faceverify as fv
from faceverify.compare.calibration import new_calibration, save_calibration
from faceverify.errors import ConfigError, ModelMismatchError
from faceverify.runtime.base import Embedder
from faceverify.runtime.tta import FlipEmbedder


class Recording(Embedder):
    """A real embedder that notes the size of every batch it is given."""

    def __init__(self, inner: Embedder) -> None:
        self.inner, self.batches = inner, []
        self.name, self.embedding_dim, self.preprocess = inner.name, inner.embedding_dim, inner.preprocess
        self.weights_source, self.weights_file, self.threshold = (
            inner.weights_source,
            inner.weights_file,
            inner.threshold,
        )

    def embed(self, batch: np.ndarray) -> np.ndarray:
        self.batches.append(len(batch))
        return self.inner.embed(batch)

    @property
    def device(self) -> str:
        return self.inner.device


def _unit(x: np.ndarray) -> np.ndarray:
    unit: np.ndarray = x / np.linalg.norm(x, axis=1, keepdims=True)
    return unit


def test_each_face_is_summed_with_its_mirror_in_one_pass(atto_model: Any) -> None:
    rng = np.random.default_rng(0)
    batch = rng.standard_normal((3, 3, *atto_model.preprocess.input_size), dtype=np.float32)
    recording = Recording(atto_model)
    augmented = FlipEmbedder(recording).embed(batch)
    assert recording.batches == [6]  # both views in one batch of twice the size
    by_hand = _unit(atto_model.embed(batch)) + _unit(atto_model.embed(batch[..., ::-1].copy()))
    assert isinstance(augmented, np.ndarray) and augmented.dtype == np.float32
    assert augmented.shape == (3, atto_model.embedding_dim)
    np.testing.assert_allclose(augmented, by_hand, atol=1e-5, rtol=1e-5)


def test_a_photo_and_its_mirror_image_give_the_same_vector(atto_file: Path, face_dir: Path) -> None:
    model = fv.build_model(weights=atto_file, device="cpu", input_size=64, crop_pct=1.0, tta="flip")
    image = Image.open(face_dir / "face0.png").convert("RGB")
    plain = fv.build_model(weights=atto_file, device="cpu", input_size=64, crop_pct=1.0)
    pair = [image, image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    with_tta = fv.compute_embedding(model, pair, normalize=True)
    without = fv.compute_embedding(plain, pair, normalize=True)
    assert float(with_tta[0] @ with_tta[1]) == pytest.approx(1.0, abs=1e-4)
    assert float(without[0] @ without[1]) < 0.9999  # the network itself is not mirror-symmetric
    assert model.identity().tta == "flip" and model.describe()["tta"] == "flip"
    with pytest.raises(ConfigError, match="tta 'rotate' is unknown; valid: flip"):
        fv.build_model(weights=atto_file, device="cpu", tta="rotate")


def test_galleries_and_calibrations_keep_augmented_vectors_apart(
    atto_file: Path, face_dir: Path, tmp_path: Path
) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(atto_file.read_bytes())
    plain = fv.build_model(weights=weights, device="cpu", backend="torch")
    flipped = fv.build_model(weights=weights, device="cpu", backend="torch", tta="flip")
    with fv.open_gallery(tmp_path / "g", plain, faces=fv.FaceOptions(detect=False)) as gallery:
        gallery.enroll("a", [face_dir / "face0.png"])
    with pytest.raises(ModelMismatchError, match="tta: gallery '' vs model 'flip'"):
        fv.open_gallery(tmp_path / "g", flipped)
    calibration = new_calibration(flipped, [0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0], far=None, pairs_file="p")
    assert calibration.tta == "flip"
    assert save_calibration(flipped, calibration) == weights.with_name(
        "model.safetensors.threshold.flip.json"
    )
    assert fv.build_model(weights=weights, device="cpu", tta="flip").threshold.source == "calibrated"
    assert fv.build_model(weights=weights, device="cpu").threshold.source == "default"  # not the plain one's


def test_the_cli_and_the_service_take_it(
    atto_file: Path, face_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from faceverify.cli.main import main

    image = str(face_dir / "face0.png")
    args = ["embed", image, "--weights", str(atto_file), "--no-detect", "--device", "cpu", "-q"]
    assert main([*args, "--tta", "flip"]) == 0
    flipped = np.array(json.loads(capsys.readouterr().out)["embedding"])
    assert main(args) == 0
    plain = np.array(json.loads(capsys.readouterr().out)["embedding"])
    assert not np.allclose(flipped / np.linalg.norm(flipped), plain / np.linalg.norm(plain), atol=1e-4)
    from faceverify.service.settings import ServiceSettings

    assert ServiceSettings(tta="flip").spec.tta == "flip"
