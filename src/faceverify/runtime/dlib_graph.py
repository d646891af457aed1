"""dlib's face recognition network as an ONNX graph, written from its ``.dat`` file alone.

The ``onnxruntime`` backend otherwise reaches a network through ``torch.onnx.export`` of
its PyTorch module. dlib's network does not need that detour: its file is read with
:mod:`faceverify.dlib_format`, checked and folded by :mod:`faceverify.models.dlib_spec`,
and written here node by node with :mod:`faceverify.onnx_proto`, so an install without
PyTorch, timm or the ``onnx`` package can still compute dlib's descriptors in ONNX
Runtime. Nothing here may import torch, timm or onnx, not even lazily.

The graph reproduces the PyTorch port (:mod:`faceverify.models.dlib_resnet`) and dlib:

* ``input`` is ``[batch, 3, 150, 150]`` float32 chips already normalised as
  ``(pixel - mean) / 256`` (the model's preprocessing contract does it, as for every
  runtime); ``embedding`` is ``[batch, 128]``, the unnormalised descriptors;
* each convolution carries its ``affine`` layer folded in; strided convolutions and the
  max-pool have no padding;
* a residual sum of tensors of different shapes zero-pads the smaller one (extra
  channels, rows and columns at the bottom/right), after a 2×2 average pool of the
  shortcut in downsampling blocks.

Its vectors agree with the PyTorch port's to about 3e-7 (``tests/runtime/test_dlib_graph.py``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from faceverify import onnx_proto
from faceverify.models.dlib_spec import (
    BLOCKS,
    INPUT_SIZE,
    NUM_FEATURES,
    FaceNetWeights,
    conv_geometry,
    face_net_weights,
    read_face_net,
)
from faceverify.paths import atomic_path

INPUT_NAME, OUTPUT_NAME = "input", "embedding"
#: The symbolic batch dimension of both.
BATCH = "batch"
#: Supported by every onnxruntime faceverify accepts (1.17 on), as the MMOD graph's.
OPSET = 13
IR_VERSION = 7
_GRAPH_NAME = "dlib_face_recognition_resnet_model_v1"


def dlib_graph(
    source: str | os.PathLike[str] | bytes, *, metadata: Mapping[str, str] | None = None
) -> onnx_proto.Proto:
    """The ONNX graph of ``dlib_face_recognition_resnet_model_v1.dat``, as a
    :data:`faceverify.onnx_proto.ModelProto` (not an ``onnx.ModelProto``: its
    ``SerializeToString()`` is the file, which ``onnx.ModelProto.FromString`` reads).

    Args:
        source: the ``.dat`` file (raw or the ``.bz2`` download) or its uncompressed bytes.
        metadata: key/value pairs written as the model's ``metadata_props``.

    Raises:
        ModelError: the file is unreadable or damaged, or holds another network (the
            message names the layer that differs and what was expected).
    """
    weights = face_net_weights(read_face_net(source))
    model = _Builder().network(weights, metadata or {})
    onnx_proto.check_graph(model.graph)
    return model


def write_dlib_graph(
    source: str | os.PathLike[str] | bytes, target: Path, metadata: Mapping[str, str] | None = None
) -> Path:
    """:func:`dlib_graph` saved to ``target`` (via a temporary file: readers never see half a graph)."""
    data = dlib_graph(source, metadata=metadata).SerializeToString()
    target = Path(target)
    with atomic_path(target, suffix=".onnx") as temporary:
        temporary.write_bytes(data)
    return target


class _Builder:
    """Nodes and initializers of the graph, with the static ``(channels, rows, cols)`` of
    every tensor: where a residual sum must pad is known when the graph is written."""

    def __init__(self) -> None:
        self.nodes: list[onnx_proto.Proto] = []
        self.initializers: list[onnx_proto.Proto] = []
        self.shapes: dict[str, tuple[int, ...]] = {INPUT_NAME: (3, INPUT_SIZE, INPUT_SIZE)}
        self._geometry = dict(conv_geometry())

    def network(self, weights: FaceNetWeights, metadata: Mapping[str, str]) -> onnx_proto.Proto:
        """The whole model: stem, residual blocks, pooled 128-d projection."""
        x = self.conv(INPUT_NAME, "stem", weights)
        x = self.pool("MaxPool", self.relu(x), 3)
        for index, (_, down) in enumerate(BLOCKS):
            x = self.block(x, index, down, weights)
        self.head(x, weights.fc)
        value = onnx_proto.make_value_info
        graph = onnx_proto.make_graph(
            self.nodes,
            _GRAPH_NAME,
            [value(INPUT_NAME, onnx_proto.FLOAT, [BATCH, 3, INPUT_SIZE, INPUT_SIZE])],
            [value(OUTPUT_NAME, onnx_proto.FLOAT, [BATCH, NUM_FEATURES])],
            initializers=self.initializers,
        )
        return onnx_proto.make_model(
            graph,
            opsets={"": OPSET},
            ir_version=IR_VERSION,
            producer_name="faceverify",
            metadata=metadata,
        )

    def block(self, x: str, index: int, down: bool, weights: FaceNetWeights) -> str:
        """``ares``/``ares_down``: relu(conv2(relu(conv1(x))) + shortcut), dlib's sum."""
        hidden = self.relu(self.conv(x, f"blocks.{index}.conv1", weights))
        out = self.conv(hidden, f"blocks.{index}.conv2", weights)
        shortcut = self.pool("AveragePool", x, 2) if down else x
        return self.relu(self.add_zero_padded(out, shortcut))

    def conv(self, x: str, name: str, weights: FaceNetWeights) -> str:
        """A convolution of the file (its geometry checked against ``anet_type``'s)."""
        weight, bias = weights.convs[name]
        filters, kernel, stride, pad = self._geometry[name]
        self.initializers += [
            onnx_proto.make_tensor(weight, f"{name}.weight"),
            onnx_proto.make_tensor(bias, f"{name}.bias"),
        ]
        _, rows, cols = self.shapes[x]
        return self._node(
            "Conv",
            [x, f"{name}.weight", f"{name}.bias"],
            (filters, _out(rows, kernel, stride, pad), _out(cols, kernel, stride, pad)),
            kernel_shape=[kernel, kernel],
            pads=[pad] * 4,
            strides=[stride] * 2,
        )

    def relu(self, x: str) -> str:
        return self._node("Relu", [x], self.shapes[x])

    def pool(self, op: str, x: str, size: int) -> str:
        """A ``size``×``size`` pool of stride 2 without padding (dlib's)."""
        channels, rows, cols = self.shapes[x]
        shape = (channels, _out(rows, size, 2, 0), _out(cols, size, 2, 0))
        return self._node(op, [x], shape, kernel_shape=[size, size], strides=[2, 2])

    def add_zero_padded(self, a: str, b: str) -> str:
        """dlib's ``add_prev``: the sum over the larger shape, missing entries counted as 0."""
        shape = tuple(max(m, n) for m, n in zip(self.shapes[a], self.shapes[b]))
        return self._node("Add", [self.grow(a, shape), self.grow(b, shape)], shape)

    def grow(self, x: str, shape: tuple[int, ...]) -> str:
        """``x`` zero-padded at the end of each of (channels, rows, cols) to ``shape``."""
        channels, rows, cols = self.shapes[x]
        if shape[0] > channels:
            x = self.widen(x, shape[0])
        if (rows, cols) != shape[1:]:
            missing = np.array([0, 0, 0, 0, 0, 0, shape[1] - rows, shape[2] - cols], dtype=np.int64)
            x = self._node("Pad", [x, self._constant(f"{x}.pads", missing)], shape)
        return x

    def widen(self, x: str, channels: int) -> str:
        """``x`` with zero channels appended, written as a 1×1 convolution (identity, then
        zeros; no bias), which is exact.

        A ``Pad`` node would do the same, but onnxruntime runs it outside its blocked
        convolution layout: the sum after it, and the sums of every later block, then
        run unfused between layout conversions. As a convolution the sums fuse into
        the convolutions before them: about 5% faster at batch 1, 1% at batch 32 (2 threads).
        """
        have = self.shapes[x][0]
        weight = np.zeros((channels, have, 1, 1), dtype=np.float32)
        weight[np.arange(have), np.arange(have)] = 1.0
        shape = (channels, *self.shapes[x][1:])
        return self._node("Conv", [x, self._constant(f"{x}.widen", weight)], shape, kernel_shape=[1, 1])

    def head(self, x: str, fc: np.ndarray) -> None:
        """Global average pooling and the 256→128 projection (``fc`` is ``[128, 256]``)."""
        pooled = self._node("GlobalAveragePool", [x], (self.shapes[x][0], 1, 1))
        flat = self._node("Flatten", [pooled], self.shapes[x][:1], axis=1)
        matrix = self._constant("fc.weight", np.ascontiguousarray(fc.T))
        self.nodes.append(onnx_proto.make_node("MatMul", [flat, matrix], [OUTPUT_NAME]))

    def _constant(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(onnx_proto.make_tensor(value, name))
        return name

    def _node(self, op: str, inputs: list[str], shape: tuple[int, ...], **attrs: Any) -> str:
        name = f"n{len(self.nodes)}.{op.lower()}"
        self.nodes.append(onnx_proto.make_node(op, inputs, [name], name=name, **attrs))
        self.shapes[name] = shape
        return name


def _out(size: int, kernel: int, stride: int, pad: int) -> int:
    """Output positions of a convolution or pool along one axis."""
    return (size + 2 * pad - kernel) // stride + 1
