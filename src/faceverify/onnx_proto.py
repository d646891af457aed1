"""The part of ONNX's protobuf schema that faceverify writes, without the ``onnx`` package.

faceverify writes two graphs itself (dlib's face network, :mod:`faceverify.runtime.dlib_graph`,
and dlib's MMOD face detector, :mod:`faceverify.faces.mmod`) and reads back the metadata of
graphs it wrote. Neither needs the 31 MB ``onnx`` package: an ONNX file is a protobuf
message, and ``protobuf`` comes with onnxruntime anyway. So the messages used are declared
here at import time, with the field numbers and types of ONNX's ``onnx.proto`` (a model
written here is read by onnx and onnxruntime as if onnx had written it;
``tests/test_onnx_proto.py`` compares both field by field), and built by the ``make_*``
functions below, named after the ``onnx.helper`` functions they stand in for:

* :func:`make_tensor` (``numpy_helper.from_array``): an array as ``raw_data``, little-endian;
* :func:`make_attribute`, :func:`make_node`: attributes of kinds int, float, string,
  tensor, ints, floats and strings, ordered by name as ``onnx.helper`` orders them;
* :func:`make_value_info`: a tensor's element type and shape (ints, symbolic names, or
  ``None`` for an unknown dimension; ``shape=None`` for an unknown rank);
* :func:`make_graph`, :func:`make_model` (with opset imports, IR version and metadata);
* :func:`check_graph`: the structural part of ``onnx.checker`` that can go wrong here
  (every input defined before it is used, every name produced once);
* :func:`read_metadata`: the ``metadata_props`` of an ``.onnx`` file.

``make_model(...).SerializeToString()`` is the file. The schema lives in a private
descriptor pool under its own file name, so it never clashes with the ``onnx`` package's
messages when both are imported. It writes the same bytes with protobuf 4.21 to 7.x, in
its C (upb) and pure-Python implementations alike. This module may import only numpy,
protobuf and :mod:`faceverify.errors`.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import (  # type: ignore[import-untyped]
    descriptor_pb2,
    descriptor_pool,
    message,
    message_factory,
)
from numpy.typing import DTypeLike

from faceverify.errors import ModelError

#: A message of this schema (protobuf ships no type hints, so every message is ``Any``).
Proto = Any

_PACKAGE = "onnx"
_FILE_NAME = "faceverify/onnx_subset.proto"

# Each field as in onnx.proto: (name, number, label, type). "packed" is a repeated field
# declared [packed = true]; a type is a scalar, a message or an enum of this schema.
_Field = tuple[str, int, str, str]
_MESSAGES: dict[str, tuple[_Field, ...]] = {
    "ModelProto": (
        ("ir_version", 1, "optional", "int64"),
        ("opset_import", 8, "repeated", "OperatorSetIdProto"),
        ("producer_name", 2, "optional", "string"),
        ("producer_version", 3, "optional", "string"),
        ("domain", 4, "optional", "string"),
        ("model_version", 5, "optional", "int64"),
        ("doc_string", 6, "optional", "string"),
        ("graph", 7, "optional", "GraphProto"),
        ("metadata_props", 14, "repeated", "StringStringEntryProto"),
    ),
    "OperatorSetIdProto": (
        ("domain", 1, "optional", "string"),
        ("version", 2, "optional", "int64"),
    ),
    "StringStringEntryProto": (
        ("key", 1, "optional", "string"),
        ("value", 2, "optional", "string"),
    ),
    "GraphProto": (
        ("node", 1, "repeated", "NodeProto"),
        ("name", 2, "optional", "string"),
        ("initializer", 5, "repeated", "TensorProto"),
        ("doc_string", 10, "optional", "string"),
        ("input", 11, "repeated", "ValueInfoProto"),
        ("output", 12, "repeated", "ValueInfoProto"),
        ("value_info", 13, "repeated", "ValueInfoProto"),
    ),
    "NodeProto": (
        ("input", 1, "repeated", "string"),
        ("output", 2, "repeated", "string"),
        ("name", 3, "optional", "string"),
        ("op_type", 4, "optional", "string"),
        ("domain", 7, "optional", "string"),
        ("attribute", 5, "repeated", "AttributeProto"),
        ("doc_string", 6, "optional", "string"),
    ),
    "AttributeProto": (
        ("name", 1, "optional", "string"),
        ("type", 20, "optional", "AttributeProto.AttributeType"),
        ("f", 2, "optional", "float"),
        ("i", 3, "optional", "int64"),
        ("s", 4, "optional", "bytes"),
        ("t", 5, "optional", "TensorProto"),
        ("floats", 7, "repeated", "float"),
        ("ints", 8, "repeated", "int64"),
        ("strings", 9, "repeated", "bytes"),
    ),
    "TensorProto": (
        ("dims", 1, "repeated", "int64"),
        ("data_type", 2, "optional", "int32"),
        ("float_data", 4, "packed", "float"),
        ("int64_data", 7, "packed", "int64"),
        ("name", 8, "optional", "string"),
        ("raw_data", 9, "optional", "bytes"),
    ),
    "ValueInfoProto": (
        ("name", 1, "optional", "string"),
        ("type", 2, "optional", "TypeProto"),
        ("doc_string", 3, "optional", "string"),
    ),
    "TypeProto": (("tensor_type", 1, "optional", "TypeProto.Tensor"),),
    "TypeProto.Tensor": (
        ("elem_type", 1, "optional", "int32"),
        ("shape", 2, "optional", "TensorShapeProto"),
    ),
    "TensorShapeProto": (("dim", 1, "repeated", "TensorShapeProto.Dimension"),),
    "TensorShapeProto.Dimension": (
        ("dim_value", 1, "optional", "int64"),
        ("dim_param", 2, "optional", "string"),
    ),
}
#: The oneofs of the schema: message -> (oneof name, its fields).
_ONEOFS = {
    "TypeProto": ("value", ("tensor_type",)),
    "TensorShapeProto.Dimension": ("value", ("dim_value", "dim_param")),
}
_ENUMS: dict[str, dict[str, int]] = {
    "AttributeProto.AttributeType": {
        "UNDEFINED": 0, "FLOAT": 1, "INT": 2, "STRING": 3, "TENSOR": 4, "GRAPH": 5,
        "FLOATS": 6, "INTS": 7, "STRINGS": 8, "TENSORS": 9, "GRAPHS": 10,
        "SPARSE_TENSOR": 11, "SPARSE_TENSORS": 12, "TYPE_PROTO": 13, "TYPE_PROTOS": 14,
    },
    "TensorProto.DataType": {
        "UNDEFINED": 0, "FLOAT": 1, "UINT8": 2, "INT8": 3, "UINT16": 4, "INT16": 5,
        "INT32": 6, "INT64": 7, "STRING": 8, "BOOL": 9, "FLOAT16": 10, "DOUBLE": 11,
        "UINT32": 12, "UINT64": 13, "COMPLEX64": 14, "COMPLEX128": 15, "BFLOAT16": 16,
    },
}  # fmt: skip
_FDP = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "int64": _FDP.TYPE_INT64,
    "int32": _FDP.TYPE_INT32,
    "float": _FDP.TYPE_FLOAT,
    "string": _FDP.TYPE_STRING,
    "bytes": _FDP.TYPE_BYTES,
}


def _schema() -> Any:
    """The file descriptor of the schema, nested messages and enums inside their parents."""
    file = descriptor_pb2.FileDescriptorProto(name=_FILE_NAME, package=_PACKAGE, syntax="proto2")
    declared: dict[str, Any] = {}
    for name, fields in _MESSAGES.items():  # parents come before what they nest
        parent, _, short = name.rpartition(".")
        declared[name] = (declared[parent].nested_type if parent else file.message_type).add(name=short)
        oneof, members = _ONEOFS.get(name, ("", ()))
        if oneof:
            declared[name].oneof_decl.add(name=oneof)
        for field in fields:
            _declare_field(declared[name], field, in_oneof=field[0] in members)
    for name, values in _ENUMS.items():
        parent, _, short = name.rpartition(".")
        enum = declared[parent].enum_type.add(name=short)
        for key, number in values.items():
            enum.value.add(name=key, number=number)
    return file


def _declare_field(owner: Any, field: _Field, *, in_oneof: bool) -> None:
    name, number, label, kind = field
    declared = owner.field.add(name=name, number=number)
    declared.label = _FDP.LABEL_OPTIONAL if label == "optional" else _FDP.LABEL_REPEATED
    if label == "packed":
        declared.options.packed = True
    if kind in _SCALARS:
        declared.type = _SCALARS[kind]
    else:
        declared.type = _FDP.TYPE_ENUM if kind in _ENUMS else _FDP.TYPE_MESSAGE
        declared.type_name = f".{_PACKAGE}.{kind}"
    if in_oneof:
        declared.oneof_index = 0


def _message_classes() -> dict[str, Any]:
    """Every message class by name (``"TypeProto.Tensor"`` too), from a pool of their own.

    Nested classes are also set on their parents (``TypeProto.Tensor``), as generated
    code does: protobuf's C implementation does it by itself, the pure-Python one does not.
    """
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_schema())
    get_class = getattr(message_factory, "GetMessageClass", None)
    if get_class is None:  # protobuf before 4.22
        get_class = message_factory.MessageFactory(pool).GetPrototype
    classes = {name: get_class(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}")) for name in _MESSAGES}
    for name, cls in classes.items():
        parent, _, short = name.rpartition(".")
        if parent and not hasattr(classes[parent], short):
            setattr(classes[parent], short, cls)
    return classes


_CLASSES = _message_classes()
ModelProto: Any = _CLASSES["ModelProto"]
OperatorSetIdProto: Any = _CLASSES["OperatorSetIdProto"]
StringStringEntryProto: Any = _CLASSES["StringStringEntryProto"]
GraphProto: Any = _CLASSES["GraphProto"]
NodeProto: Any = _CLASSES["NodeProto"]
AttributeProto: Any = _CLASSES["AttributeProto"]
TensorProto: Any = _CLASSES["TensorProto"]
ValueInfoProto: Any = _CLASSES["ValueInfoProto"]
TypeProto: Any = _CLASSES["TypeProto"]
TensorShapeProto: Any = _CLASSES["TensorShapeProto"]

#: ONNX element types (``TensorProto.DataType``) of the numpy dtypes :func:`make_tensor` writes.
DATA_TYPES: dict[np.dtype[Any], int] = {
    np.dtype(numpy_type): _ENUMS["TensorProto.DataType"][onnx_name]
    for numpy_type, onnx_name in (
        (np.float32, "FLOAT"),
        (np.uint8, "UINT8"),
        (np.int8, "INT8"),
        (np.uint16, "UINT16"),
        (np.int16, "INT16"),
        (np.int32, "INT32"),
        (np.int64, "INT64"),
        (np.bool_, "BOOL"),
        (np.float16, "FLOAT16"),
        (np.float64, "DOUBLE"),
        (np.uint32, "UINT32"),
        (np.uint64, "UINT64"),
    )
}
FLOAT = DATA_TYPES[np.dtype(np.float32)]
INT64 = DATA_TYPES[np.dtype(np.int64)]


def data_type(dtype: Any) -> int:
    """The ONNX element type of a numpy dtype (or anything ``np.dtype`` accepts)."""
    key = np.dtype(dtype)
    if key.newbyteorder("=") in DATA_TYPES:
        return DATA_TYPES[key.newbyteorder("=")]
    known = ", ".join(str(d) for d in DATA_TYPES)
    raise ModelError(f"numpy dtype '{key}' has no ONNX element type here; expected one of {known}")


def make_tensor(array: np.ndarray, name: str = "") -> Proto:
    """A ``TensorProto`` holding ``array`` as little-endian ``raw_data`` (as onnx writes arrays)."""
    elem_type = data_type(array.dtype)
    little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    tensor = TensorProto(dims=array.shape, data_type=elem_type, raw_data=little.tobytes())
    if name:
        tensor.name = name
    return tensor


#: What :func:`make_attribute` takes: a number, a string, a tensor (``make_tensor``'s
#: result), or a sequence of numbers or of strings.
AttributeValue = Any


def make_attribute(name: str, value: AttributeValue) -> Proto:
    """An ``AttributeProto`` whose kind follows the value, as ``onnx.helper.make_attribute``:
    bool and int are INT, other reals FLOAT, str/bytes STRING (UTF-8), a TensorProto TENSOR;
    a sequence is INTS if all its items are integers, else FLOATS if all are real, else STRINGS."""
    attribute = AttributeProto(name=name)
    kind = AttributeProto.AttributeType
    if isinstance(value, numbers.Integral):
        attribute.i, attribute.type = int(value), kind.Value("INT")
    elif isinstance(value, numbers.Real):
        attribute.f, attribute.type = float(value), kind.Value("FLOAT")
    elif isinstance(value, (str, bytes)):
        attribute.s, attribute.type = _utf8(value), kind.Value("STRING")
    elif isinstance(value, TensorProto):
        attribute.t.CopyFrom(value)
        attribute.type = kind.Value("TENSOR")
    elif isinstance(value, Iterable):
        _set_list(attribute, list(value))
    else:
        raise ModelError(f"attribute '{name}' has a value of type {type(value).__name__}: {value!r}")
    return attribute


def _set_list(attribute: Proto, items: list[Any]) -> None:
    """Fill a list attribute; its kind comes from the items, so an empty list has none."""
    kind = AttributeProto.AttributeType
    if not items:
        raise ModelError(f"attribute '{attribute.name}' is an empty list: its kind cannot be told")
    if all(isinstance(item, numbers.Integral) for item in items):
        attribute.ints.extend(int(item) for item in items)
        attribute.type = kind.Value("INTS")
    elif all(isinstance(item, numbers.Real) for item in items):
        attribute.floats.extend(float(item) for item in items)
        attribute.type = kind.Value("FLOATS")
    elif all(isinstance(item, (str, bytes)) for item in items):
        attribute.strings.extend(_utf8(item) for item in items)
        attribute.type = kind.Value("STRINGS")
    else:
        kinds = sorted({type(item).__name__ for item in items})
        raise ModelError(f"attribute '{attribute.name}' mixes items of types {kinds}; expected one kind")


def _utf8(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def make_node(
    op_type: str,
    inputs: Sequence[str],
    outputs: Sequence[str],
    *,
    name: str = "",
    domain: str | None = None,
    doc_string: str = "",
    **attributes: AttributeValue,
) -> Proto:
    """A ``NodeProto``; attributes (``None`` ones left out) sorted by name, as onnx.helper
    writes them, so the same call gives the same bytes with either."""
    node = NodeProto(op_type=op_type, input=inputs, output=outputs)
    if name:
        node.name = name
    if doc_string:
        node.doc_string = doc_string
    if domain is not None:
        node.domain = domain
    node.attribute.extend(
        make_attribute(key, value) for key, value in sorted(attributes.items()) if value is not None
    )
    return node


def make_value_info(name: str, elem_type: int | DTypeLike, shape: Sequence[int | str | None] | None) -> Proto:
    """A tensor's ``ValueInfoProto``.

    Args:
        elem_type: an ONNX element type (:data:`FLOAT`, :data:`INT64`...) or a numpy dtype.
        shape: per dimension a size, a symbolic name (``"batch"``) or ``None`` (unknown);
            ``None`` for a tensor of unknown rank.
    """
    elem = elem_type if isinstance(elem_type, int) else data_type(elem_type)
    value = ValueInfoProto(name=name)
    tensor_type = value.type.tensor_type
    tensor_type.elem_type = elem
    if shape is not None:
        tensor_type.shape.SetInParent()  # a scalar's shape is present and empty
        for size in shape:
            _set_dimension(tensor_type.shape.dim.add(), name, size)
    return value


def _set_dimension(dim: Proto, name: str, size: object) -> None:
    if isinstance(size, str):
        dim.dim_param = size
    elif isinstance(size, numbers.Integral):
        dim.dim_value = int(size)
    elif size is not None:
        raise ModelError(f"tensor '{name}' has dimension {size!r}; expected an int, a name or None")


def make_graph(
    nodes: Iterable[Proto],
    name: str,
    inputs: Iterable[Proto],
    outputs: Iterable[Proto],
    *,
    initializers: Iterable[Proto] = (),
    value_info: Iterable[Proto] = (),
    doc_string: str = "",
) -> Proto:
    """A ``GraphProto`` of nodes in execution order, weights as ``initializers``."""
    graph = GraphProto(name=name, node=nodes, input=inputs, output=outputs, initializer=initializers)
    graph.value_info.extend(value_info)
    if doc_string:
        graph.doc_string = doc_string
    return graph


def make_model(
    graph: Proto,
    *,
    opsets: Mapping[str, int],
    ir_version: int,
    metadata: Mapping[str, str] | None = None,
    producer_name: str = "",
    producer_version: str = "",
    domain: str = "",
    model_version: int | None = None,
    doc_string: str = "",
) -> Proto:
    """A ``ModelProto`` around ``graph`` (copied into it).

    Args:
        opsets: operator set versions by domain (``{"": 13}``: the default domain's opset 13).
        ir_version: the ONNX IR version; every onnxruntime the graph must load in has to
            know it (7 is read by all since 1.6).
        metadata: written as ``metadata_props``, in this order.
    """
    model = ModelProto(ir_version=ir_version)
    model.graph.CopyFrom(graph)
    for opset_domain, version in opsets.items():
        model.opset_import.add(domain=opset_domain, version=version)
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    for field, text in (("producer_name", producer_name), ("producer_version", producer_version)):
        if text:
            setattr(model, field, text)
    if domain:
        model.domain = domain
    if model_version is not None:
        model.model_version = model_version
    if doc_string:
        model.doc_string = doc_string
    return model


def check_graph(graph: Proto) -> None:
    """Raise ModelError unless every node input is a graph input, an initializer or an
    earlier node's output, every name is produced once, and every graph output is produced.

    The part of ``onnx.checker`` that a builder's mistake can break; operator schemas are
    left to onnxruntime, which refuses a graph that does not follow them when it loads it.
    """
    known = {value.name for value in graph.input}
    for tensor in graph.initializer:
        _define(known, tensor.name, "initializer")
    for node in graph.node:
        missing = [name for name in node.input if name and name not in known]
        if missing:
            raise ModelError(
                f"node '{node.name or node.op_type}' reads {missing}, defined by nothing before it"
            )
        for output in node.output:
            _define(known, output, f"node '{node.name or node.op_type}'")
    missing = [value.name for value in graph.output if value.name not in known]
    if missing:
        raise ModelError(f"graph '{graph.name}' outputs {missing}, which no node produces")


def _define(known: set[str], name: str, by: str) -> None:
    if name in known:
        raise ModelError(f"{by} defines '{name}' a second time")
    known.add(name)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``metadata_props`` of an ``.onnx`` file, as a dict.

    The whole file is parsed with this schema's ``ModelProto`` (fields it does not declare
    are kept as unknown bytes; external data lives in other files and is not read). On a
    22.6 MB graph that takes about 3 ms, 1 ms of it reading the file: cheaper than
    ``onnx.load`` (7 ms), an onnxruntime session's ``custom_metadata_map`` (80 ms, 12 ms
    without graph optimisation), and a message declaring the metadata alone (20 ms:
    protobuf copies the skipped graph into its unknown fields).

    Raises:
        ModelError: the file is not a protobuf message (not an ONNX graph).
        OSError: the file cannot be read.
    """
    data = Path(path).read_bytes()
    model = ModelProto()
    try:
        model.ParseFromString(data)
    except message.DecodeError as exc:
        raise ModelError(f"{os.fspath(path)} is not a readable ONNX graph: {exc}") from exc
    return {entry.key: entry.value for entry in model.metadata_props}
