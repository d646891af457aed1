"""ArcFace-family ONNX graphs users bring: an IResNet-style network with random weights,
exported by PyTorch as insightface exports its models, used through the users' path."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import faceverify as fv
from faceverify.errors import ConfigError, ModelError
from faceverify.faces import align_faces, detect_faces

pytest.importorskip("onnxruntime")
pytest.importorskip("dlib")
# the TorchScript exporter on purpose: it writes graphs as insightface's published models are
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

DIM = 64


class _Block(nn.Module):
    """IResNet's basic block: BN, conv, BN, PReLU, strided conv, BN, plus a shortcut."""

    def __init__(self, inputs: int, outputs: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(inputs),
            nn.Conv2d(inputs, outputs, 3, 1, 1, bias=False),
            nn.BatchNorm2d(outputs),
            nn.PReLU(outputs),
            nn.Conv2d(outputs, outputs, 3, 2, 1, bias=False),
            nn.BatchNorm2d(outputs),
        )
        self.shortcut = nn.Sequential(nn.Conv2d(inputs, outputs, 1, 2, bias=False), nn.BatchNorm2d(outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.body(x) + self.shortcut(x)
        return out


class TinyIResNet(nn.Module):
    """A small network of the IResNet shape: 112x112 RGB chips in, a BN'd vector out."""

    def __init__(self, channels_last: bool = False) -> None:
        super().__init__()
        self.channels_last = channels_last
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8), nn.PReLU(8))
        self.blocks = nn.Sequential(_Block(8, 16), _Block(16, 16), _Block(16, 32))
        self.head = nn.Sequential(
            nn.BatchNorm2d(32), nn.Flatten(), nn.Linear(32 * 14 * 14, DIM), nn.BatchNorm1d(DIM)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.permute(0, 3, 1, 2)
        out: torch.Tensor = self.head(self.blocks(self.stem(x)))
        return out


def _onnx_of(
    module: nn.Module,
    path: Path,
    shape: tuple[int, ...],
    names: tuple[str, str] = ("x", "y"),
    *,
    dynamic: bool = True,
) -> Path:
    """``module`` exported with the TorchScript exporter, its batch free unless ``dynamic`` is False."""
    module.eval()
    axes = {name: {0: "batch"} for name in names} if dynamic else None
    with torch.no_grad():
        torch.onnx.export(
            module,
            (torch.randn(*shape),),
            str(path),
            input_names=[names[0]],
            output_names=[names[1]],
            dynamic_axes=axes,
            dynamo=False,
        )
    return path


def _export(network: nn.Module, path: Path, shape: tuple[int, ...]) -> Path:
    torch.manual_seed(0)
    for module in network.modules():  # non-trivial statistics, as a trained network has
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    return _onnx_of(network, path, shape, names=("input.1", "fc1"))


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return _export(TinyIResNet(), tmp_path_factory.mktemp("arcface") / "tiny_r.onnx", (2, 3, 112, 112))


def _by_hand(
    graph_file: Path, photo: Path, mean: float = 127.5, std: float = 127.5, bgr: bool = False
) -> np.ndarray:
    """The insightface recipe done by hand: detect, align to arcface112, normalise, run."""
    import onnxruntime as ort

    pixels = np.asarray(fv.load_image(photo))
    chip = align_faces(pixels, detect_faces(pixels)[:1], "arcface112")[0].astype(np.float32)
    if bgr:
        chip = chip[:, :, ::-1]
    x = ((chip - mean) / std).transpose(2, 0, 1)[None].astype(np.float32)
    session = ort.InferenceSession(str(graph_file), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"input.1": x})
    return np.asarray(out[0])


def test_a_graph_faceverify_did_not_write_embeds_faces_as_insightface_does(
    graph: Path, shared_faces: Path
) -> None:
    photo = shared_faces / "gallery/obama/obama.jpg"
    model = fv.build_model(str(graph))  # the insightface convention by default
    assert (model.name, model.embedding_dim, model.preprocess.face_template) == ("tiny_r", DIM, "arcface112")
    assert model.identity().weights_sha256 == hashlib.sha256(graph.read_bytes()).hexdigest()
    vectors = fv.compute_embedding(model, photo)
    assert isinstance(vectors, np.ndarray) and vectors.dtype == np.float32 and vectors.shape == (1, DIM)
    np.testing.assert_allclose(vectors[0], _by_hand(graph, photo), atol=2e-4)
    bgr = fv.build_model(weights=graph, channel_order="BGR", pixel_mean=[120, 110, 100], pixel_std=64)
    expected = _by_hand(graph, photo, mean=np.array([100, 110, 120]), std=64.0, bgr=True)  # type: ignore[arg-type]
    np.testing.assert_allclose(fv.compute_embedding(bgr, photo)[0], expected, atol=2e-4)
    assert bgr.identity().preprocess_fingerprint != model.identity().preprocess_fingerprint


def test_a_channels_last_graph_is_read_from_its_input(tmp_path: Path, shared_faces: Path) -> None:
    torch.manual_seed(0)
    nhwc = _export(TinyIResNet(channels_last=True), tmp_path / "nhwc.onnx", (2, 112, 112, 3))
    torch.manual_seed(0)
    nchw = _export(TinyIResNet(), tmp_path / "nchw.onnx", (2, 3, 112, 112))
    photo = shared_faces / "gallery/biden/biden.jpg"
    a, b = (fv.compute_embedding(fv.build_model(str(g)), photo) for g in (nhwc, nchw))
    assert a.dtype == b.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


def test_a_graph_with_a_fixed_batch_of_one_takes_any_batch(
    tmp_path: Path, graph: Path, shared_faces: Path
) -> None:
    torch.manual_seed(0)
    network = TinyIResNet()
    one = tmp_path / "one.onnx"
    _export(network, tmp_path / "dynamic.onnx", (2, 3, 112, 112))
    _onnx_of(network, one, (1, 3, 112, 112), names=("input.1", "fc1"), dynamic=False)
    photos = sorted((shared_faces / "gallery").glob("*/*.jpg"))[:3]
    fixed = fv.compute_embedding(fv.build_model(str(one)), photos)
    dynamic = fv.compute_embedding(fv.build_model(str(tmp_path / "dynamic.onnx")), photos)
    assert fixed.dtype == dynamic.dtype == np.float32 and fixed.shape == (3, DIM)
    np.testing.assert_allclose(fixed, dynamic, atol=1e-4, rtol=1e-4)


def test_every_feature_works_with_it(graph: Path, shared_faces: Path, tmp_path: Path) -> None:
    """Verification, a gallery pinned to the graph, and a calibrated threshold beside it."""
    from faceverify.compare.calibration import new_calibration, save_calibration

    model = fv.build_model(str(graph))
    gallery_photos = shared_faces / "gallery"
    outcome = fv.verify(gallery_photos / "obama/obama.jpg", gallery_photos / "obama/obama2.jpg", model=model)
    assert outcome.threshold_source == "default" and -1.0 <= outcome.score <= 1.0
    with fv.open_gallery(tmp_path / "g", model) as gallery:
        gallery.enroll("obama", [gallery_photos / "obama/obama.jpg"])
        found = gallery.identify(gallery_photos / "obama/obama.jpg", threshold=0.99)
        assert found.name == "obama" and found.matches[0].score == pytest.approx(1.0, abs=1e-5)
    other = fv.build_model(str(graph), pixel_std=100)
    with pytest.raises(fv.FaceVerifyError, match="preprocess_fingerprint"):
        fv.open_gallery(tmp_path / "g", other)
    calibration = new_calibration(model, [0.9, 0.8, 0.3, 0.2, 0.1], [1, 1, 0, 0, 0], far=None, pairs_file="p")
    assert save_calibration(model, calibration) == graph.with_name("tiny_r.onnx.threshold.json")
    again = fv.build_model(str(graph)).threshold
    assert (again.value, again.source) == (calibration.threshold, "calibrated")
    graph.with_name("tiny_r.onnx.threshold.json").unlink()


def test_the_cli_takes_it_as_a_model(
    graph: Path, shared_faces: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from faceverify.cli.main import main

    photo = str(shared_faces / "gallery/obama/obama.jpg")
    assert main(["verify", photo, photo, "--model", str(graph), "-q"]) == 0
    score, verdict, _ = capsys.readouterr().out.split("\t")
    assert float(score) == pytest.approx(1.0, abs=1e-4) and verdict == "SAME"


class _FeatureMap(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2.0


class _Flat(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(dim=-1)


def test_graphs_that_are_not_face_models_are_refused_saying_what_was_found(
    tmp_path: Path, graph: Path
) -> None:
    maps = _onnx_of(_FeatureMap(), tmp_path / "maps.onnx", (1, 3, 112, 112))
    with pytest.raises(
        ModelError, match=r"output .* is \[2, 3, 112, 112\] for a batch of 2 images; a face model"
    ):
        fv.build_model(str(maps))
    rank3 = _onnx_of(_Flat(), tmp_path / "rank3.onnx", (1, 3, 112))
    with pytest.raises(ModelError, match=r"has shape \['batch', 3, 112\]; a face model takes \[N, 3, H, W\]"):
        fv.build_model(str(rank3))
    with pytest.raises(ModelError, match=r"takes 112x112 images; template 'dlib150' cuts 150x150 chips"):
        fv.build_model(str(graph), face_template="dlib150")
    (tmp_path / "junk.onnx").write_bytes(b"not a graph")
    with pytest.raises(ModelError, match="not an ONNX graph ONNX Runtime can load"):
        fv.build_model(str(tmp_path / "junk.onnx"))
    with pytest.raises(ConfigError, match="face_template describe ONNX graphs faceverify did not write"):
        fv.build_model(weights="random", face_template="arcface112", device="cpu")


def test_a_graph_faceverify_wrote_refuses_foreign_options(atto_model: Any) -> None:
    from faceverify.runtime.onnx_export import onnx_embedder_for

    own = onnx_embedder_for(atto_model)
    with pytest.raises(
        ConfigError, match="was written by faceverify and carries its own preprocessing contract"
    ):
        fv.build_model(weights=own.graph_file, pixel_std=1.0)


def test_the_service_serves_it(graph: Path, shared_faces: Path, tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from faceverify.service.app import create_app
    from faceverify.service.settings import ServiceSettings
    from tests.service.helpers import admin_key

    settings = ServiceSettings(
        db=str(tmp_path / "g"), keys_file=str(tmp_path / "keys.json"), weights=str(graph)
    )
    photo = (shared_faces / "gallery/obama/obama.jpg").read_bytes()
    with TestClient(create_app(settings), headers={"X-API-Key": admin_key(settings)}) as client:
        answer = client.post("/v1/verify", files={"a": ("a.jpg", photo), "b": ("b.jpg", photo)})
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"] == "tiny_r" and answer.json()["same"] is True
