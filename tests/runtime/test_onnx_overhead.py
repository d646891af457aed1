"""The ONNX Runtime path gives a bare session's numbers, and its spinning option is honoured.

Timings live in benchmarks/ort_overhead.py and docs/benchmarks.md; these tests check only
that faceverify's session and input handling change no number, alone or from threads.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from faceverify.embed import compute_embedding
from faceverify.errors import ConfigError
from faceverify.runtime.build import build_model
from faceverify.runtime.torch_backend import EmbeddingModel

pytest.importorskip("onnxruntime")
from faceverify.runtime.onnx_backend import OnnxEmbedder, load_onnx_embedder

SPINNING = "FACEVERIFY_ORT_SPINNING"


@pytest.fixture(scope="module")
def resnet_graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The exported graph of a small course ResNet with random weights (quick to export)."""
    from safetensors.torch import save_file

    torch.manual_seed(5)
    model = build_model("face_resnet", weights="random", model_args={"width": 16}, device="cpu")
    assert isinstance(model, EmbeddingModel)
    path = tmp_path_factory.mktemp("overhead") / "face_resnet.safetensors"
    save_file({k: v.contiguous() for k, v in model.backbone.state_dict().items()}, str(path))
    onnx_model = build_model(
        "face_resnet",
        weights=path,
        model_args={"width": 16},
        input_size=32,
        device="cpu",
        backend="onnxruntime",
    )
    assert isinstance(onnx_model, OnnxEmbedder)
    return onnx_model.graph_file


def _bare(graph: Path, batch: np.ndarray) -> np.ndarray:
    """What a bare session with ONNX Runtime's default options gives."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: batch})
    return np.asarray(out)


def _assert_same(got: np.ndarray, expected: np.ndarray) -> None:
    assert isinstance(got, np.ndarray)
    assert got.dtype == np.float32 and got.shape == expected.shape
    scale = max(1.0, float(np.abs(expected).max()))
    assert float(np.abs(got - expected).max()) <= 1e-6 * scale


def _batch(model: Any, size: int) -> np.ndarray:
    """Model-ready float32 input, ``[size, 3, H, W]``."""
    rng = np.random.default_rng(size)
    return rng.standard_normal((size, 3, *model.preprocess.input_size), dtype=np.float32)


@pytest.mark.parametrize("size", [1, 8])
def test_embed_and_compute_embedding_give_a_bare_sessions_numbers(resnet_graph: Path, size: int) -> None:
    model = load_onnx_embedder(resnet_graph)
    batch = _batch(model, size)
    expected = _bare(resnet_graph, batch)
    _assert_same(model.embed(batch), expected)
    tensor = torch.from_numpy(batch)  # compute_embedding takes model-ready input as float tensors
    _assert_same(compute_embedding(model, tensor), expected)
    _assert_same(compute_embedding(model, tensor, batch_size=3), expected)  # several chunks
    _assert_same(compute_embedding(model, list(tensor)), expected)  # a list of float tensors


@pytest.mark.parametrize("size", [1, 8])
def test_convnext_atto_gives_a_bare_sessions_numbers(atto_file: Path, size: int) -> None:
    model = build_model(weights=atto_file, device="cpu", backend="onnxruntime")
    assert isinstance(model, OnnxEmbedder)
    batch = _batch(model, size)
    expected = _bare(model.graph_file, batch)
    _assert_same(model.embed(batch), expected)
    _assert_same(compute_embedding(model, torch.from_numpy(batch)), expected)


def test_channels_last_and_float64_input_give_the_same_numbers(resnet_graph: Path) -> None:
    model = load_onnx_embedder(resnet_graph)
    batch = _batch(model, 4)
    expected = _bare(resnet_graph, batch)
    channels_last = np.ascontiguousarray(batch.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    assert channels_last.shape == batch.shape and not channels_last.flags.c_contiguous
    _assert_same(model.embed(channels_last), expected)
    _assert_same(model.embed(batch.astype(np.float64)), expected)  # fp32 values, held in fp64
    tensor = torch.from_numpy(batch)  # the same through compute_embedding, as tensors
    _assert_same(compute_embedding(model, tensor.contiguous(memory_format=torch.channels_last)), expected)
    _assert_same(compute_embedding(model, tensor.double()), expected)


def _config(model: OnnxEmbedder, key: str) -> str | None:
    options = model._session.get_session_options()
    try:
        return str(options.get_session_config_entry(key))
    except RuntimeError:  # ONNX Runtime's answer for a key that was never set
        return None


def test_spinning_is_off_by_default_and_threads_are_honoured(
    resnet_graph: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SPINNING, raising=False)
    model = load_onnx_embedder(resnet_graph, threads=1)
    assert _config(model, "session.intra_op.allow_spinning") == "0"
    assert _config(model, "session.force_spinning_stop") is None
    assert model.threads == 1
    assert model._session.get_session_options().intra_op_num_threads == 1
    monkeypatch.setenv(SPINNING, "0")
    assert _config(load_onnx_embedder(resnet_graph), "session.intra_op.allow_spinning") == "0"


def test_spinning_on_request_spins_during_calls_only_and_changes_no_number(
    resnet_graph: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SPINNING, " 1 ")
    model = load_onnx_embedder(resnet_graph)
    assert _config(model, "session.intra_op.allow_spinning") == "1"
    assert _config(model, "session.force_spinning_stop") == "1"
    batch = _batch(model, 8)
    _assert_same(model.embed(batch), _bare(resnet_graph, batch))


@pytest.mark.parametrize("value", ["yes", "2", "true", "on"])
def test_a_bad_spinning_value_is_refused_naming_the_variable(
    resnet_graph: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(SPINNING, value)
    with pytest.raises(ConfigError, match=f"{SPINNING} must be 0 .* or 1, not '{value}'"):
        load_onnx_embedder(resnet_graph)
    with pytest.raises(ConfigError, match=SPINNING):
        build_model(weights=resnet_graph)  # the path users take with a graph file


@pytest.mark.parametrize("spinning", ["0", "1"])
def test_embed_from_several_threads_at_once_gives_each_its_own_numbers(
    resnet_graph: Path, monkeypatch: pytest.MonkeyPatch, spinning: str
) -> None:
    monkeypatch.setenv(SPINNING, spinning)
    model = load_onnx_embedder(resnet_graph)
    batches = [_batch(model, size) for size in (1, 2, 3, 5, 8, 1, 4, 6)]
    expected = [_bare(resnet_graph, batch) for batch in batches]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(3):
            for got, want in zip(pool.map(model.embed, batches), expected):
                _assert_same(got, want)


def _files(face_dir: Path) -> list[Path]:
    return sorted(face_dir.rglob("*.png")) + sorted(face_dir.rglob("*.jpg"))


def test_images_embed_to_a_bare_sessions_numbers_on_their_prepared_input(
    resnet_graph: Path, face_dir: Path
) -> None:
    from PIL import Image

    from faceverify.embed import embed_images
    from faceverify.photos import FaceOptions

    model = load_onnx_embedder(resnet_graph)
    files = _files(face_dir)
    prepared = np.stack([model.prepare(Image.open(path).convert("RGB")) for path in files])
    assert prepared.dtype == np.float32
    for batch_size in (1, 3, 32):
        result = embed_images(model, files, batch_size=batch_size, faces=FaceOptions(detect=False))
        assert result.indices == list(range(len(files))) and not result.failures
        _assert_same(result.embeddings, _bare(resnet_graph, prepared))
