"""The Embedder interface is the whole contract: a runtime that is not PyTorch works too.

``NumpyEmbedder`` is a real, if tiny, embedder computed by numpy (a fixed random
projection of the model-ready pixels), standing in for an ONNX Runtime session. Embedding,
verification, the gallery and evaluation run on it unchanged; an embedder that refuses
some images in ``prepare`` (as one that finds faces itself will) has them reported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import faceverify as fv
from faceverify.errors import ImageError
from faceverify.evaluate.identification import identification_metrics
from faceverify.evaluate.pairs import read_pairs
from faceverify.evaluate.scoring import score_pairs
from faceverify.gallery.gallery import Gallery, model_manifest
from faceverify.gallery.sqlite import SQLiteStore
from faceverify.preprocess import PreprocessConfig
from faceverify.runtime.base import Embedder
from faceverify.runtime.threshold import Threshold, ThresholdSource

CONTRACT = PreprocessConfig(
    input_size=(32, 32), interpolation="bilinear", mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=1.0
)


class NumpyEmbedder(Embedder):
    """Model-ready input flattened and projected to 64 dims by a matrix kept in a file."""

    def __init__(self, weights: Path) -> None:
        self.projection = np.load(weights)
        self.name = "numpy-projection"
        self.embedding_dim = self.projection.shape[1]
        self.preprocess = CONTRACT
        self.weights_source = str(weights)
        self.weights_file = weights
        self.threshold = Threshold(0.4, ThresholdSource.CALIBRATED)

    @property
    def device(self) -> str:
        return "cpu"

    def embed(self, batch: np.ndarray) -> np.ndarray:
        flat = np.asarray(batch, dtype=np.float32).reshape(len(batch), -1)
        out: np.ndarray = (flat @ self.projection).astype(np.float32)
        return out


class FussyEmbedder(NumpyEmbedder):
    """Refuses images with a dark top-left pixel, as a face finder refuses faceless photos."""

    def prepare(self, image: Image.Image) -> np.ndarray:
        if sum(image.getpixel((0, 0))) < 150:
            raise ImageError("<image>", "no face found")
        return super().prepare(image)


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("numpy-embedder") / "projection.npy"
    np.save(path, np.random.default_rng(0).normal(size=(3 * 32 * 32, 64)).astype(np.float32))
    return path


def test_embedding_and_verification_go_through_the_interface(weights: Path, identity_data: Path) -> None:
    embedder = NumpyEmbedder(weights)
    images = sorted((identity_data / "probes" / "p0").glob("*.png"))
    vectors = fv.compute_embedding(embedder, images, normalize=True)
    expected = np.stack([CONTRACT(Image.open(p).convert("RGB")) for p in images])
    raw = embedder.embed(expected)
    assert isinstance(vectors, np.ndarray) and vectors.dtype == np.float32
    np.testing.assert_allclose(
        vectors, raw / np.linalg.norm(raw, axis=1, keepdims=True), rtol=1.3e-6, atol=1e-5
    )
    outcome = fv.verify(images[0], images[1], model=embedder)
    assert outcome.threshold == 0.4  # the embedder's own threshold
    assert outcome.same
    assert embedder.describe()["model"] == "numpy-projection"


def test_gallery_and_evaluation_run_on_another_runtime(
    weights: Path, identity_data: Path, tmp_path: Path
) -> None:
    embedder = NumpyEmbedder(weights)
    with SQLiteStore(tmp_path / "g") as store:
        gallery = Gallery(store, embedder)
        for person in sorted((identity_data / "gallery").iterdir()):
            gallery.enroll(person.name, sorted(person.glob("*.png")))
        assert gallery.identify(identity_data / "probes" / "p3" / "0.png").name == "p3"
        assert gallery.identify(identity_data / "probes" / "p9" / "0.png").name is None
        assert store.manifest() == model_manifest(embedder)
    gallery_dir, probes = identity_data / "gallery", identity_data / "probes"
    metrics = identification_metrics(embedder, gallery_dir, probes, threshold=embedder.threshold.value)
    assert metrics["rank_accuracy"]["rank_1"] == 1.0
    scored = score_pairs(embedder, read_pairs(identity_data / "pairs.txt", identity_data), progress=False)
    genuine, impostor = scored.scores[scored.labels == 1], scored.scores[scored.labels == 0]
    assert genuine.min() > impostor.max()


def test_images_an_embedder_refuses_are_reported_and_the_rest_embedded(weights: Path, tmp_path: Path) -> None:
    bright, dark = tmp_path / "bright.png", tmp_path / "dark.png"
    Image.new("RGB", (40, 40), (200, 200, 200)).save(bright)
    Image.new("RGB", (40, 40), (10, 10, 10)).save(dark)
    result = fv.embed_images(FussyEmbedder(weights), [bright, dark, bright])
    assert result.indices == [0, 2]
    assert [(f.index, f.source, f.reason) for f in result.failures] == [(1, str(dark), "no face found")]
