"""dlib's face recognition network as data: its contract, its layers and its weights, without torch.

``dlib_face_recognition_resnet_model_v1.dat`` (installed by ``face-recognition-models``)
holds ``anet_type`` of dlib's ``face_recognition.cpp``: a 7×7/2 stem, a 3×3/2 max-pool,
14 residual blocks (29 convolutions in all), global average pooling and a 128-output
linear layer without bias, on 150×150 face chips. Two runtimes are built from it: the
PyTorch port (:mod:`faceverify.models.dlib_resnet`) and the ONNX graph written from the
file directly (:mod:`faceverify.runtime.dlib_graph`), which must work on installs
without PyTorch.

What both must agree on lives here, once: the input contract, dlib's decision rule,
the layer list the file is parsed with, the geometry each convolution must have (dlib
pads only stride-1 convolutions), the checks that a file holds this network and not
another, and each convolution folded with the ``affine`` layer (batch norm frozen at
training time) that follows it. At import only numpy, :mod:`faceverify.dlib_format`
and :mod:`faceverify.errors` load (the rest inside the functions that need it), so
reading and checking the file never loads torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from faceverify.dlib_format import DlibLayer, DlibNet, LayerSpec, fold_affine, parse_dlib_net, read_dlib_bytes
from faceverify.errors import ModelError

if TYPE_CHECKING:
    from faceverify.preprocess import PreprocessConfig

#: Chip side in pixels, and dlib's padding around the face when cutting it.
INPUT_SIZE = 150
CHIP_PADDING = 0.25
#: dlib's per-channel means (red, green, blue) on 0–255 pixels, and its divisor.
PIXEL_MEANS = (122.782, 117.001, 104.298)
PIXEL_SCALE = 256.0
NUM_FEATURES = 128
#: The name recorded in saved weights; loading refuses files of other architectures.
ARCHITECTURE = "dlib_face_resnet_v1"
#: dlib's decision rule: same person when the Euclidean distance is at most this.
DLIB_DISTANCE_THRESHOLD = 0.6
#: The same rule as a cosine similarity of L2-normalised descriptors. dlib's descriptors
#: are not unit vectors: on the 21 faces of the shared photos their norms were 1.32-1.59
#: (root mean square r = 1.42). For two descriptors of norm r, a distance d is a cosine
#: of 1 - d²/(2r²), so d = 0.6 is a cosine of 0.911 (0.897-0.929 over the norms seen).
#: Both rules decided all 210 pairs of those faces alike (same person: cosine >= 0.957,
#: different people: <= 0.880). ArcFace-style thresholds (0.3-0.5) mean nothing here.
DLIB_COSINE_THRESHOLD = 0.91
#: The chips it was trained on (a template of ``faceverify.faces.align``): dlib's own.
FACE_TEMPLATE = "dlib150"
#: The model name in faceverify (build_model, the CLI, galleries, training).
MODEL_NAME = "dlib_resnet_v1"

#: The preprocessing contract in timm terms, for ``faceverify.preprocess.PreprocessConfig``.
PREPROCESS: dict[str, Any] = {
    "input_size": (INPUT_SIZE, INPUT_SIZE),
    "interpolation": "bilinear",
    "mean": tuple(m / 255.0 for m in PIXEL_MEANS),
    "std": (PIXEL_SCALE / 255.0,) * 3,
    "crop_pct": 1.0,
    "crop_mode": "center",
}
#: The same contract as timm's pretrained cfg holds it (``input_size`` with channels first):
#: ``timm.data.resolve_model_data_config`` reads it off the network.
PRETRAINED_CFG: dict[str, Any] = {**PREPROCESS, "input_size": (3, INPUT_SIZE, INPUT_SIZE)}

#: (channels, downsample) of the 14 residual blocks, input side first (alevel4 ... alevel0).
BLOCKS: tuple[tuple[int, bool], ...] = (
    ((32, False),) * 3
    + ((64, True),)
    + ((64, False),) * 3
    + ((128, True),)
    + ((128, False),) * 2
    + ((256, True),)
    + ((256, False),) * 2
    + ((256, True),)
)
#: The stem's output channels and kernel side (it has stride 2 and, being strided, no padding).
STEM_FILTERS, STEM_KERNEL = 32, 7
#: The loss layer dlib's metric networks are saved with (any version of it).
_METRIC_LOSS = "loss_metric_"
#: What other losses say a file holds, for the error that refuses it.
_OTHER_NETWORKS = {"loss_mmod_": "dlib's MMOD face detector"}


def dlib_layer_list() -> list[LayerSpec]:
    """The layers of ``anet_type`` innermost first, as the ``.dat`` file stores them."""
    specs: list[LayerSpec] = ["con", "affine", "relu", "max_pool"]
    for _, down in BLOCKS:
        specs += ["tag1", "con", "affine", "relu", "con", "affine"]
        specs += ["tag2", "skip1", "avg_pool", "add_prev", "relu"] if down else ["add_prev", "relu"]
    return [*specs, "avg_pool", "fc"]


class ConvGeometry(NamedTuple):
    """What a convolution of the file must be: (filters, kernel side, stride, padding)."""

    filters: int
    kernel: int
    stride: int
    padding: int


def _geometry(filters: int, kernel: int, stride: int) -> ConvGeometry:
    """dlib's padding rule: half the kernel at stride 1, none when strided."""
    return ConvGeometry(filters, kernel, stride, kernel // 2 if stride == 1 else 0)


def conv_geometry() -> list[tuple[str, ConvGeometry]]:
    """The 29 convolutions in file order, named as the PyTorch port's modules
    (``stem``, ``blocks.{i}.conv1``, ``blocks.{i}.conv2``); the first convolution of a
    downsampling block has stride 2."""
    convs = [("stem", _geometry(STEM_FILTERS, STEM_KERNEL, 2))]
    for index, (filters, down) in enumerate(BLOCKS):
        convs.append((f"blocks.{index}.conv1", _geometry(filters, 3, 2 if down else 1)))
        convs.append((f"blocks.{index}.conv2", _geometry(filters, 3, 1)))
    return convs


# ----------------------------------------------------------------------------------------
# Reading a file and checking that it holds this network


def read_face_net(source: str | os.PathLike[str] | bytes) -> DlibNet:
    """Parse ``dlib_face_recognition_resnet_model_v1.dat`` (raw or ``.bz2``, or its bytes).

    Raises:
        ModelError: the file is unreadable, damaged, or holds another dlib network (the
            error says which one when its loss layer tells).
    """
    if isinstance(source, bytes):
        data, name = source, "<bytes>"
    else:
        data, name = read_dlib_bytes(source), os.fspath(source)
    loss = _loss_version(data)
    if loss is not None and not loss.startswith(_METRIC_LOSS):
        held = _OTHER_NETWORKS.get(loss, "another network")
        raise ModelError(
            f"{name} holds {held} (loss layer '{loss}'), not dlib's face recognition network "
            f"(loss layer '{_METRIC_LOSS}2'): expected dlib_face_recognition_resnet_model_v1.dat"
        )
    return parse_dlib_net(data, dlib_layer_list(), name=name)


def _loss_version(data: bytes) -> str | None:
    """The loss layer's version string that opens a dlib network file, or None.

    Read before the layers, so that a file of another network is refused by what it is
    rather than by the first layer that does not fit. A file starts with the loss
    wrapper's version (dlib's integer 1: ``01 01``) and the string's length as a one-byte
    integer (``01 n``); anything else is left to :func:`parse_dlib_net` to explain.
    """
    if len(data) < 4 or data[:3] != b"\x01\x01\x01":
        return None
    raw = data[4 : 4 + data[3]]
    return raw.decode("ascii") if len(raw) == data[3] and raw.isascii() else None


@dataclass(frozen=True)
class FaceNetWeights:
    """The checked weights of the network, ready for either runtime.

    Attributes:
        convs: per convolution in file order (named as :func:`conv_geometry` names
            them), its ``[out, in, k, k]`` weight and ``[out]`` bias with the affine
            layer folded in.
        fc: the ``[128, 256]`` projection (it has no bias).
    """

    convs: dict[str, tuple[np.ndarray, np.ndarray]]
    fc: np.ndarray


def face_net_weights(net: DlibNet) -> FaceNetWeights:
    """The weights of a parsed file, after checking every layer against ``anet_type``.

    Raises:
        ModelError: naming the first layer that differs (input, a convolution's geometry,
            a pool's padding, the fc layer) and what was expected of it.
    """
    check_input(net.input)
    convs = [index for index, layer in enumerate(net.layers) if layer.kind == "con"]
    expected = conv_geometry()
    if len(convs) != len(expected):
        raise ModelError(f"expected {len(expected)} convolutions in dlib's face network, found {len(convs)}")
    folded: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for (name, geometry), index in zip(expected, convs):
        check_conv(net.layers[index], name, geometry)
        folded[name] = fold(net.layers[index], net.layers[index + 1])
    for layer in net.layers:
        if layer.kind in ("max_pool", "avg_pool") and layer.attrs["padding_y"] != 0:
            raise ModelError(f"dlib's face network pools without padding; found {layer.attrs}")
    fc = net.layers[-1]
    if "bias" in fc.params or fc.params["weight"].shape != (NUM_FEATURES, BLOCKS[-1][0]):
        raise ModelError(f"dlib's face network ends in a 256→128 fc without bias; found {fc.attrs}")
    return FaceNetWeights(convs=folded, fc=fc.params["weight"])


def check_input(layer: DlibLayer) -> None:
    """The input layer: 150×150 chips with dlib's channel means."""
    means = (layer.attrs["mean_red"], layer.attrs["mean_green"], layer.attrs["mean_blue"])
    if not np.allclose(means, PIXEL_MEANS, atol=1e-3) or layer.attrs.get("rows") != INPUT_SIZE:
        raise ModelError(
            f"dlib input layer {layer.attrs} differs from the expected 150×150, means {PIXEL_MEANS}"
        )


def check_conv(layer: DlibLayer, name: str, expected: ConvGeometry) -> None:
    """A convolution of the file against the geometry ``anet_type`` gives it."""
    found = (
        layer.attrs["num_filters"],
        layer.attrs["rows"],
        layer.attrs["stride_y"],
        layer.attrs["padding_y"],
    )
    if found != tuple(expected):
        raise ModelError(
            f"convolution {name} of the dlib file has (filters, kernel, stride, padding) {found}, "
            f"expected {tuple(expected)}: this is not dlib_face_recognition_resnet_model_v1"
        )


def fold(con: DlibLayer, affine: DlibLayer) -> tuple[np.ndarray, np.ndarray]:
    """A convolution with the affine layer after it merged in: one layer, the same output
    up to float32 rounding (computed in float64)."""
    if affine.kind != "affine":
        raise ModelError(f"expected an affine layer after a convolution, found '{affine.version}'")
    return fold_affine(con, affine)


# ----------------------------------------------------------------------------------------
# Where the contract and the weights are found


def preprocess_config() -> PreprocessConfig:
    """The input contract as faceverify's :class:`~faceverify.preprocess.PreprocessConfig`."""
    from faceverify.preprocess import PreprocessConfig

    return PreprocessConfig(**PREPROCESS)


def packaged_weights() -> Path:
    """dlib's own ``.dat`` file from the installed ``face-recognition-models`` (offline)."""
    from faceverify.faces.dlib_files import RECOGNITION_NET, dlib_model_path

    return dlib_model_path(RECOGNITION_NET)
