"""The ONNX Runtime backend: same numbers as PyTorch, a cache that is reused and not trusted blindly."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import faceverify as fv
from faceverify.errors import ConfigError, MissingDependencyError, ModelError

pytest.importorskip("onnxruntime")
from faceverify.runtime.onnx_backend import OnnxEmbedder
from faceverify.runtime.onnx_export import cached_graph_path

FP32_TOLERANCE = 1e-4


def _agree(torch_model: Any, onnx_model: Any, size: tuple[int, int]) -> float:
    batch = np.random.default_rng(1).standard_normal((5, 3, *size), dtype=np.float32)
    expected, got = torch_model.embed(batch), onnx_model.embed(batch)
    assert isinstance(expected, np.ndarray) and isinstance(got, np.ndarray)
    assert got.shape == expected.shape == (5, onnx_model.embedding_dim)
    assert got.dtype == expected.dtype == np.float32
    return float(np.abs(got - expected).max())


@pytest.fixture
def resnet_file(tmp_path: Path) -> Path:
    """Random weights of the course ResNet, saved as users save theirs."""
    torch.manual_seed(3)
    model = fv.build_model("face_resnet", weights="random", model_args={"width": 16}, device="cpu")
    path = tmp_path / "face_resnet.safetensors"
    save_file({k: v.contiguous() for k, v in model.backbone.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One epoch of real training: a course ResNet with an embedding neck (a Linear + BN)."""
    from faceverify.data.synthetic_faces import generate
    from faceverify.train.config import load_config
    from faceverify.train.loop import train

    root = tmp_path_factory.mktemp("trained")
    generate(
        root / "data", identities=4, images_per_identity=4, held_out=2, images_per_held_out=2, size=32, seed=0
    )
    overrides = [
        f"data.root={root / 'data'}",
        "data.workers=0",
        "model.args={width: 8}",
        "model.input_size=32",
        "model.embedding_dim=24",
        "epochs=1",
        f"out={root / 'run'}",
    ]
    train(load_config(None, overrides))
    return root / "run" / "last.pt"


def _resnet(weights: Path | str, backend: str) -> Any:
    return fv.build_model(
        "face_resnet", weights=weights, model_args={"width": 16}, input_size=32, device="cpu", backend=backend
    )


def test_convnext_atto_runs_in_onnxruntime_with_pytorchs_numbers(atto_file: Path, atto_model: Any) -> None:
    onnx_model = fv.build_model(weights=atto_file, device="cpu", backend="onnxruntime")
    assert isinstance(onnx_model, OnnxEmbedder)
    assert _agree(atto_model, onnx_model, (224, 224)) <= FP32_TOLERANCE
    # what galleries and calibrations pin is the weights' identity, whatever the runtime
    assert onnx_model.weights_sha256() == atto_model.weights_sha256() != ""
    assert onnx_model.preprocess == atto_model.preprocess
    assert (onnx_model.name, onnx_model.embedding_dim) == (atto_model.name, 320)
    assert onnx_model.describe()["runtime"] == "onnxruntime"


def test_a_trained_checkpoint_with_its_neck_exports(trained_checkpoint: Path) -> None:
    torch_model = fv.build_model(weights=trained_checkpoint, device="cpu")
    onnx_model = fv.build_model(weights=trained_checkpoint, device="cpu", backend="onnxruntime")
    assert onnx_model.embedding_dim == torch_model.embedding_dim
    assert _agree(torch_model, onnx_model, torch_model.preprocess.input_size) <= FP32_TOLERANCE


def test_the_cached_graph_is_reused_and_rebuilt_when_the_weights_change(
    resnet_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = _resnet(resnet_file, "onnxruntime")
    graph = first.graph_file
    stamp = graph.stat().st_mtime_ns
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="faceverify.runtime"):
        again = _resnet(resnet_file, "onnxruntime")
    assert again.graph_file == graph and graph.stat().st_mtime_ns == stamp
    assert "exported" not in caplog.text
    other = tmp_path / "other.safetensors"
    state = {k: v * 1.01 if v.is_floating_point() else v for k, v in _load(resnet_file).items()}
    save_file(state, str(other))
    changed = _resnet(other, "onnxruntime")
    assert changed.graph_file != graph
    assert _agree(_resnet(other, "torch"), changed, (32, 32)) <= FP32_TOLERANCE


def _load(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_a_corrupt_cached_graph_is_rebuilt_not_trusted(resnet_file: Path) -> None:
    graph = _resnet(resnet_file, "onnxruntime").graph_file
    data = bytearray(graph.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)  # zero some weights in place
    graph.write_bytes(bytes(data))
    rebuilt = _resnet(resnet_file, "onnxruntime")
    assert rebuilt.graph_file == graph
    assert _agree(_resnet(resnet_file, "torch"), rebuilt, (32, 32)) <= FP32_TOLERANCE


def test_auto_picks_onnxruntime_on_the_cpu_and_torch_stays_the_python_default(resnet_file: Path) -> None:
    assert isinstance(_resnet(resnet_file, "auto"), OnnxEmbedder)
    assert isinstance(_resnet(resnet_file, "torch"), torch.nn.Module)
    assert isinstance(
        fv.build_model("face_resnet", weights=resnet_file, model_args={"width": 16}), torch.nn.Module
    )
    with pytest.raises(ConfigError, match="backend 'tensorrt' is unknown; valid: torch, onnxruntime, auto"):
        _resnet(resnet_file, "tensorrt")


def test_an_exported_graph_file_loads_as_weights(resnet_file: Path) -> None:
    graph = _resnet(resnet_file, "onnxruntime").graph_file
    loaded = fv.build_model(weights=graph)
    assert isinstance(loaded, OnnxEmbedder)
    assert loaded.name == "face_resnet" and loaded.preprocess.input_size == (32, 32)
    assert _agree(_resnet(resnet_file, "torch"), loaded, (32, 32)) <= FP32_TOLERANCE
    embeddings = fv.compute_embedding(loaded, torch.randint(0, 256, (2, 3, 40, 40), dtype=torch.uint8))
    assert isinstance(embeddings, np.ndarray) and embeddings.dtype == np.float32
    assert embeddings.shape == (2, loaded.embedding_dim)


def test_a_file_that_is_not_a_graph_is_refused_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"not a graph at all")
    with pytest.raises(ModelError, match=r"junk\.onnx is not an ONNX graph ONNX Runtime can load: .*"):
        fv.build_model(weights=path)


def test_missing_onnxruntime_names_the_extra(resnet_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ONNX Runtime is part of the base install now: its absence means a broken install, and
    the message says to reinstall faceverify, naming no extra."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what Python does when it is not installed
    with pytest.raises(MissingDependencyError) as info:
        _resnet(resnet_file, "onnxruntime")
    message = str(info.value)
    assert message == (
        "the onnxruntime backend needs ONNX Runtime; reinstall faceverify (ONNX Runtime is part "
        "of its base install): pip install faceverify"
    )
    assert "faceverify[" not in message


def test_cache_key_follows_the_preprocessing(resnet_file: Path) -> None:
    small = fv.build_model("face_resnet", weights=resnet_file, model_args={"width": 16}, input_size=32)
    large = fv.build_model("face_resnet", weights=resnet_file, model_args={"width": 16}, input_size=48)
    assert cached_graph_path(small) != cached_graph_path(large)


def test_dlib_face_network_runs_in_onnxruntime(caplog: pytest.LogCaptureFixture) -> None:
    """On the CPU dlib's network runs as the graph written from dlib's ``.dat`` file (not
    exported from PyTorch), cached under the file's hash, with the PyTorch port's numbers."""
    pytest.importorskip("dlib")
    from faceverify.paths import cache_dir
    from faceverify.runtime.dlib_onnx import GRAPH_FORMAT
    from faceverify.runtime.torch_backend import EmbeddingModel

    try:
        torch_model = fv.build_model("dlib_resnet_v1", device="cpu", backend="torch")
    except fv.FaceVerifyError as exc:
        pytest.skip(f"dlib's model files are not installed: {exc}")
    assert isinstance(torch_model, EmbeddingModel)  # the PyTorch port, to compare with
    with caplog.at_level(logging.INFO, logger="faceverify.runtime"):
        onnx_model = fv.build_model("dlib_resnet_v1", device="cpu", backend="onnxruntime")
    assert isinstance(onnx_model, OnnxEmbedder)
    sha = torch_model.weights_sha256()
    assert onnx_model.weights_sha256() == sha != ""  # the .dat file's hash, as the port's
    assert onnx_model.graph_file == cache_dir() / "onnx" / f"dlib_resnet_v1-{sha[:24]}-g{GRAPH_FORMAT}.onnx"
    assert onnx_model.graph_file.is_file()
    assert "exported" not in caplog.text  # written from dlib's file, not exported from PyTorch
    auto = fv.build_model("dlib_resnet_v1", device="cpu", backend="auto")
    assert isinstance(auto, OnnxEmbedder) and auto.graph_file == onnx_model.graph_file
    assert onnx_model.preprocess == torch_model.preprocess
    assert onnx_model.preprocess.face_template == "dlib150"
    assert (onnx_model.name, onnx_model.embedding_dim) == (torch_model.name, 128)
    assert onnx_model.threshold == torch_model.threshold
    assert _agree(torch_model, onnx_model, (150, 150)) <= FP32_TOLERANCE
