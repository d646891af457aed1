"""Reading dlib's serialised DNN files (``.dat``) with numpy alone, without dlib.

dlib writes a network as nested records. The integer format is a control byte (the
number of magnitude bytes in the low nibble, ``0x80`` for negative) followed by the
magnitude in little-endian order; a scalar float is an int64 mantissa and an int16
exponent in that integer format; a bool is the ASCII byte ``'0'`` or ``'1'``; a string
is its length then its bytes; a tensor is a version, ``n, k, nr, nc`` and raw
little-endian float32 values.

A network is written outside in: the loss wrapper's version and the loss details,
then the version of every layer wrapper from the outermost to the innermost, then the
input layer, and then the details of each layer from the innermost (the first
convolution) to the outermost (the last fully-connected layer). Tags and skips write
only their version: the file does not record the graph, so the caller gives the list
of layers (:data:`LayerSpec` strings) that the network type declares.

Two losses are read: ``loss_metric`` (the face recognition network) and ``loss_mmod``
(the MMOD CNN face detector, whose options say which sliding windows the detector
scores and how its detections are suppressed); and three inputs: ``input_rgb_image``,
``input_rgb_image_sized`` and ``input_rgb_image_pyramid`` (the detector's, which adds the
padding of its tiled image pyramid; the pyramid's type is in the C++ type, not the file).

Every failure (truncation, a wrong version, a layer of another kind than expected) is
a :class:`~faceverify.errors.ModelError` that names the file, the byte offset and what
was expected there.
"""

from __future__ import annotations

import bz2
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from faceverify.errors import ModelError

#: One entry of a network's layer list, innermost first: ``"tag1"``, ``"skip1"`` (a
#: tag/skip wrapper with its id) or the kind of an ordinary layer (``"con"``,
#: ``"affine"``, ``"relu"``, ``"max_pool"``, ``"avg_pool"``, ``"add_prev"``, ``"fc"``).
LayerSpec = str

_BZIP2_MAGIC = b"BZh"
# Special exponents of dlib's float_details.
_EXP_INF, _EXP_NINF, _EXP_NAN = 32000, 32001, 32002


@dataclass(frozen=True)
class DlibLayer:
    """One layer as stored in the file.

    Attributes:
        kind: ``input``, ``con``, ``affine``, ``relu``, ``max_pool``, ``avg_pool``,
            ``add_prev``, ``fc``, ``tag``, ``skip`` or ``loss``.
        version: the version string written by dlib (``con_4``, ``fc_2``...); empty for
            tags and skips.
        params: named float32 arrays (``weight``, ``bias``, ``gamma``, ``beta``).
        attrs: the scalar settings (strides, paddings, sizes, flags).
        labels: for a ``loss_mmod`` loss, the label of each detector window (whose
            ``width, height`` are the rows of ``params["detector_windows"]``).
    """

    kind: str
    version: str
    params: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, float | int | bool] = field(default_factory=dict)
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class DlibNet:
    """A parsed network: its input layer, its layers innermost first, and its loss."""

    input: DlibLayer
    layers: list[DlibLayer]
    loss: DlibLayer


def read_dlib_bytes(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a dlib ``.dat`` file, decompressed when it is the ``.bz2`` download."""
    file = Path(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise ModelError(f"{file}: cannot read the dlib model file ({exc.strerror or exc})") from None
    if data.startswith(_BZIP2_MAGIC):
        try:
            data = bz2.decompress(data)
        except (OSError, ValueError, EOFError) as exc:
            raise ModelError(f"{file}: bzip2 data is corrupt ({exc})") from None
    return data


def parse_dlib_net(data: bytes, layers: Sequence[LayerSpec], *, name: str = "<bytes>") -> DlibNet:
    """Parse a serialised ``add_loss_layer`` network.

    Args:
        data: the uncompressed file contents (see :func:`read_dlib_bytes`).
        layers: the layer list of the network type, innermost first, input excluded.
        name: how the source is named in error messages (usually the file path).

    Raises:
        ModelError: the bytes are truncated, altered, or hold another network.
    """
    reader = _Reader(data, name)
    reader.expect_int(1, "the loss layer's version")
    loss = _parse_loss(reader)
    wrappers = [0] * len(layers)
    for index in range(len(layers) - 1, -1, -1):
        wrappers[index] = _read_wrapper_version(reader, layers[index], innermost=index == 0)
    net_input = _parse_input(reader)
    parsed: list[DlibLayer] = []
    for index, spec in enumerate(layers):
        if spec.startswith(("tag", "skip")):
            kind = "tag" if spec.startswith("tag") else "skip"
            parsed.append(DlibLayer(kind=kind, version="", attrs={"id": int(spec[len(kind) :])}))
            continue
        layer = _parse_layer(reader, spec)
        _skip_training_state(reader, wrappers[index], innermost=index == 0)
        parsed.append(layer)
    if reader.remaining:
        raise reader.error(f"{reader.remaining} unexpected bytes after the network's last layer")
    return DlibNet(input=net_input, layers=parsed, loss=loss)


def _read_wrapper_version(reader: _Reader, spec: LayerSpec, *, innermost: bool) -> int:
    if spec.startswith(("tag", "skip")):
        return reader.expect_int(1, f"the version of a {spec} wrapper")
    if innermost:
        return reader.expect_int((2, 3), "the version of the first layer's wrapper (add_layer)")
    return reader.expect_int((1, 2), f"the version of an add_layer wrapper around '{spec}'")


def _skip_training_state(reader: _Reader, version: int, *, innermost: bool) -> None:
    """What add_layer writes after a layer's details: flags and training buffers.

    The wrapper around the first layer (the one that owns the input layer) has its own
    format: it always stores the final gradient, and from version 3 on the sample
    expansion factor; the others store the parameter gradient from version 2 on.
    """
    for what in ("setup flag", "stale-gradient flag", "disabled-output flag"):
        reader.read_bool(what)
    reader.read_tensor("x_grad")
    reader.read_tensor("cached_output")
    if innermost or version >= 2:
        reader.read_tensor("the gradient buffer")
    if innermost and version >= 3:
        reader.read_int("the sample expansion factor")


def _parse_loss(reader: _Reader) -> DlibLayer:
    start = reader.pos
    version = reader.read_string("the loss layer's version string")
    if version == "loss_metric_":
        return DlibLayer("loss", version, attrs={"margin": 0.1, "distance_threshold": 0.75})
    if version == "loss_mmod_":
        return _parse_mmod_options(reader)
    if version != "loss_metric_2":
        raise reader.error(
            f"loss layer '{version}' is not supported; expected loss_metric_2 or loss_mmod_", at=start
        )
    margin = reader.read_float("the loss margin")
    threshold = reader.read_float("the loss distance threshold")
    return DlibLayer("loss", version, attrs={"margin": margin, "distance_threshold": threshold})


def _parse_mmod_options(reader: _Reader) -> DlibLayer:
    """dlib's ``mmod_options`` (versions 1 to 4; later versions add fields at the end).

    Version 1 holds a single unlabelled window; from version 3 on a byte says whether
    training assumed an image pyramid, and from version 4 on bounding box regression
    is stored (older files predate it: off, with dlib's default lambda of 100).
    """
    version = reader.expect_int((1, 2, 3, 4), "the version of the mmod options")
    windows, labels = _read_detector_windows(reader, version)
    attrs: dict[str, float | int | bool] = {
        "loss_per_false_alarm": reader.read_float("the loss per false alarm"),
        "loss_per_missed_target": reader.read_float("the loss per missed target"),
        "truth_match_iou_threshold": reader.read_float("the truth match IoU threshold"),
        "nms_iou_thresh": reader.read_float("the non-max suppression IoU threshold"),
        "nms_percent_covered_thresh": reader.read_float("the non-max suppression covered threshold"),
        "ignore_iou_thresh": reader.read_float("the ignore IoU threshold"),
        "ignore_percent_covered_thresh": reader.read_float("the ignore covered threshold"),
        "assume_image_pyramid": True,
        "use_bounding_box_regression": False,
        "bbr_lambda": 100.0,
    }
    if version >= 3:
        start = reader.pos
        flag = reader.read_byte("the assume_image_pyramid byte")
        if flag not in (0, 1):
            raise reader.error(f"found {flag} for the assume_image_pyramid byte, expected 0 or 1", at=start)
        attrs["assume_image_pyramid"] = flag == 1
    if version >= 4:
        attrs["use_bounding_box_regression"] = reader.read_bool("the bounding box regression flag")
        attrs["bbr_lambda"] = reader.read_float("the bounding box regression lambda")
    return DlibLayer("loss", "loss_mmod_", params={"detector_windows": windows}, attrs=attrs, labels=labels)


def _read_detector_windows(reader: _Reader, version: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """The sliding windows as ``[n, 2]`` (width, height) and their labels."""
    if version == 1:
        size = (reader.read_int("the detector window width"), reader.read_int("the detector window height"))
        return np.array([size], dtype=np.int64), ("",)
    start = reader.pos
    count = reader.read_int("the number of detector windows")
    if not 1 <= count <= 1000:
        raise reader.error(f"found {count} detector windows, expected 1 to 1000", at=start)
    sizes, labels = [], []
    for _ in range(count):
        window_version = reader.expect_int((1, 2), "the version of a detector window")
        sizes.append(
            (reader.read_int("a detector window width"), reader.read_int("a detector window height"))
        )
        labels.append(reader.read_string("a detector window label") if window_version == 2 else "")
    if min(min(size) for size in sizes) < 1:
        raise reader.error(f"detector windows {sizes} include an empty one", at=start)
    return np.array(sizes, dtype=np.int64), tuple(labels)


_INPUTS = ("input_rgb_image", "input_rgb_image_sized", "input_rgb_image_pyramid", "input_rgb_image_pyramid2")


def _parse_input(reader: _Reader) -> DlibLayer:
    start = reader.pos
    version = reader.read_string("the input layer's version string")
    if version not in _INPUTS:
        raise reader.error(
            f"input layer '{version}' is not supported; expected one of {', '.join(_INPUTS)}", at=start
        )
    attrs: dict[str, float | int | bool] = {
        "mean_red": reader.read_float("the red mean"),
        "mean_green": reader.read_float("the green mean"),
        "mean_blue": reader.read_float("the blue mean"),
    }
    if version == "input_rgb_image_sized":
        attrs["rows"] = reader.read_int("the input rows")
        attrs["cols"] = reader.read_int("the input columns")
    elif version == "input_rgb_image_pyramid2":
        attrs["pyramid_padding"] = reader.read_int("the pyramid padding")
        attrs["pyramid_outer_padding"] = reader.read_int("the pyramid outer padding")
    elif version == "input_rgb_image_pyramid":  # the first version: dlib's defaults
        attrs.update(pyramid_padding=10, pyramid_outer_padding=11)
    return DlibLayer("input", version, attrs=attrs)


_VERSIONS = {
    "con": ("con_4", "con_5", "con_6"),
    "affine": ("affine_", "affine_2", "bn_con2", "bn_fc2"),
    "relu": ("relu_", "relu_2"),
    "max_pool": ("max_pool_2",),
    "avg_pool": ("avg_pool_2",),
    "add_prev": ("add_prev_",),
    "fc": ("fc_2", "fc_3"),
}


def _parse_layer(reader: _Reader, kind: str) -> DlibLayer:
    start = reader.pos
    version = reader.read_string(f"the version string of a '{kind}' layer")
    valid = _VERSIONS.get(kind)
    if valid is None:
        raise ModelError(f"layer kind '{kind}' is not supported; valid kinds: {', '.join(_VERSIONS)}")
    if version not in valid:
        raise reader.error(
            f"found layer '{version}' where a '{kind}' layer ({' or '.join(valid)}) was expected", at=start
        )
    if kind == "con":
        return _parse_con(reader, version)
    if kind == "affine" and version.startswith("bn_"):
        return _parse_batch_norm(reader, version)
    if kind == "affine":
        return _parse_affine(reader, version)
    if kind == "fc":
        return _parse_fc(reader, version)
    if kind in ("max_pool", "avg_pool"):
        return DlibLayer(kind, version, attrs=_read_geometry(reader, kind))
    if kind == "relu" and version == "relu_2":
        reader.read_bool("the relu disabled flag")
    return DlibLayer(kind, version)


def _read_geometry(reader: _Reader, kind: str) -> dict[str, float | int | bool]:
    names = ("rows", "cols", "stride_y", "stride_x", "padding_y", "padding_x")
    return {key: reader.read_int(f"the {kind} {key.replace('_', ' ')}") for key in names}


def _parse_con(reader: _Reader, version: str) -> DlibLayer:
    params = reader.read_tensor("the convolution parameters")
    attrs: dict[str, float | int | bool] = {"num_filters": reader.read_int("the number of filters")}
    attrs.update(_read_geometry(reader, "convolution"))
    filters = reader.alias_shape("the filter shape")
    biases = reader.alias_shape("the bias shape")
    for what in ("learning rate", "weight decay", "bias learning rate", "bias weight decay"):
        reader.read_float(f"the {what} multiplier")
    attrs["use_bias"] = reader.read_bool("the use_bias flag") if version in ("con_5", "con_6") else True
    if version == "con_6" and reader.read_bool("the fused relu flag"):
        raise reader.error("convolutions with a fused relu (con_6 use_relu) are not supported")
    weight, bias = _split(reader, params, filters, biases, "convolution")
    if attrs["num_filters"] != filters[0]:
        raise reader.error(f"convolution has {attrs['num_filters']} filters but weights for {filters[0]}")
    layer_params = {"weight": weight}
    if attrs["use_bias"]:
        layer_params["bias"] = bias.reshape(-1)
    return DlibLayer("con", version, params=layer_params, attrs=attrs)


def _parse_affine(reader: _Reader, version: str) -> DlibLayer:
    params = reader.read_tensor("the affine parameters")
    gamma_shape = reader.alias_shape("the gamma shape")
    beta_shape = reader.alias_shape("the beta shape")
    mode = reader.read_int("the affine mode")
    disabled = reader.read_bool("the affine disabled flag") if version == "affine_2" else False
    if disabled:
        raise reader.error("disabled affine layers are not supported")
    gamma, beta = _split(reader, params, gamma_shape, beta_shape, "affine")
    return DlibLayer(
        "affine",
        version,
        params={"gamma": gamma.reshape(-1), "beta": beta.reshape(-1)},
        attrs={"conv_mode": mode == 0},
    )


def _parse_batch_norm(reader: _Reader, version: str) -> DlibLayer:
    """A batch norm layer saved from training, read as the affine layer dlib turns it into.

    dlib loads ``bn_con``/``bn_fc`` into an ``affine`` layer by folding the running
    statistics: ``gamma / sqrt(var + eps)`` and ``beta - mean * that``.
    """
    params = reader.read_tensor("the batch norm parameters")
    gamma_shape = reader.alias_shape("the gamma shape")
    beta_shape = reader.alias_shape("the beta shape")
    for what in ("batch means", "batch inverse deviations"):
        reader.read_tensor(f"the {what}")
    running_means = reader.read_tensor("the running means").reshape(-1).astype(np.float64)
    running_variances = reader.read_tensor("the running variances").reshape(-1).astype(np.float64)
    reader.read_int("the number of updates")
    reader.read_int("the running statistics window")
    for what in ("learning rate", "weight decay", "bias learning rate", "bias weight decay"):
        reader.read_float(f"the {what} multiplier")
    eps = reader.read_float("the batch norm epsilon")
    gamma, beta = _split(reader, params, gamma_shape, beta_shape, "batch norm")
    if not running_means.size == running_variances.size == gamma.size:
        raise reader.error(
            f"batch norm has {gamma.size} channels but running statistics for {running_means.size}"
        )
    scale = gamma.reshape(-1).astype(np.float64) / np.sqrt(running_variances + eps)
    shift = beta.reshape(-1).astype(np.float64) - running_means * scale
    return DlibLayer(
        "affine",
        version,
        params={"gamma": scale.astype(np.float32), "beta": shift.astype(np.float32)},
        attrs={"conv_mode": version == "bn_con2"},
    )


def _parse_fc(reader: _Reader, version: str) -> DlibLayer:
    outputs = reader.read_int("the number of outputs")
    inputs = reader.read_int("the number of inputs")
    params = reader.read_tensor("the fc parameters")
    weight_shape = reader.alias_shape("the fc weight shape")
    bias_shape = reader.alias_shape("the fc bias shape")
    has_bias = reader.read_int("the fc bias mode") == 0
    for what in ("learning rate", "weight decay", "bias learning rate", "bias weight decay"):
        reader.read_float(f"the {what} multiplier")
    if version == "fc_3":
        has_bias = reader.read_bool("the use_bias flag") and has_bias
    weight, bias = _split(reader, params, weight_shape, bias_shape if has_bias else (0, 0, 0, 0), "fc")
    # dlib multiplies row vectors by a (num_inputs, num_outputs) matrix.
    matrix = weight.reshape(inputs, outputs).T.copy()
    layer_params = {"weight": matrix}
    if has_bias:
        layer_params["bias"] = bias.reshape(-1)
    return DlibLayer("fc", version, params=layer_params, attrs={"inputs": inputs, "outputs": outputs})


def _split(
    reader: _Reader, params: np.ndarray, first: tuple[int, ...], second: tuple[int, ...], what: str
) -> tuple[np.ndarray, np.ndarray]:
    flat = params.reshape(-1)
    size_a, size_b = math.prod(first), math.prod(second)
    if flat.size != size_a + size_b:
        raise reader.error(
            f"{what} layer holds {flat.size} parameters but its shapes {first} and {second} "
            f"need {size_a + size_b}"
        )
    return flat[:size_a].reshape(first), flat[size_a:].reshape(second)


class _Reader:
    """A cursor over the bytes that raises ModelError with the offset on any problem."""

    def __init__(self, data: bytes, name: str) -> None:
        self.data = memoryview(data)
        self.name = name
        self.pos = 0

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def error(self, message: str, *, at: int | None = None) -> ModelError:
        offset = self.pos if at is None else at
        return ModelError(
            f"{self.name}: not a usable dlib model file: {message} (byte offset {offset} "
            f"of {len(self.data)}); re-download or reinstall the model file"
        )

    def _take(self, count: int, what: str) -> memoryview:
        if count > self.remaining:
            raise self.error(f"file ends while reading {what} ({count} bytes needed, {self.remaining} left)")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def read_int(self, what: str) -> int:
        start = self.pos
        control = self._take(1, what)[0]
        size = control & 0x0F
        if control & 0x70 or not 1 <= size <= 8:
            raise self.error(f"byte 0x{control:02x} does not start an integer ({what})", at=start)
        value = int.from_bytes(self._take(size, what), "little")
        return -value if control & 0x80 else value

    def expect_int(self, expected: int | tuple[int, ...], what: str) -> int:
        start = self.pos
        value = self.read_int(what)
        valid = expected if isinstance(expected, tuple) else (expected,)
        if value not in valid:
            raise self.error(f"found {value} for {what}, expected {' or '.join(map(str, valid))}", at=start)
        return value

    def read_float(self, what: str) -> float:
        start = self.pos
        if self.remaining and self.data[self.pos] & 0x70:
            raise self.error(f"{what} uses dlib's old text float format, which is not supported")
        mantissa = self.read_int(what)
        exponent = self.read_int(what)
        if exponent == _EXP_INF:
            return math.inf
        if exponent == _EXP_NINF:
            return -math.inf
        if exponent == _EXP_NAN:
            return math.nan
        if not -16384 <= exponent < 16384:
            raise self.error(f"exponent {exponent} of {what} is out of range", at=start)
        return math.ldexp(float(mantissa), exponent)

    def read_bool(self, what: str) -> bool:
        start = self.pos
        byte = bytes(self._take(1, what))
        if byte not in (b"0", b"1"):
            raise self.error(f"found byte 0x{byte[0]:02x} where {what} ('0' or '1') was expected", at=start)
        return byte == b"1"

    def read_byte(self, what: str) -> int:
        """An unsigned byte, which dlib writes raw (not in its integer format)."""
        return int(self._take(1, what)[0])

    def read_string(self, what: str) -> str:
        start = self.pos
        length = self.read_int(what)
        if not 0 <= length <= 256:
            raise self.error(f"found length {length} where {what} was expected", at=start)
        raw = bytes(self._take(length, what))
        if not raw.isascii():
            raise self.error(f"{what} is not text", at=start)
        return raw.decode("ascii")

    def _shape(self, version: int, what: str) -> tuple[int, ...]:
        self.expect_int(version, f"the version of {what}")
        shape = tuple(self.read_int(what) for _ in range(4))
        if min(shape) < 0:
            raise self.error(f"negative size in {what}: {shape}")
        return shape

    def alias_shape(self, what: str) -> tuple[int, ...]:
        return self._shape(1, what)

    def read_tensor(self, what: str) -> np.ndarray:
        shape = self._shape(2, what)
        count = math.prod(shape)
        raw = self._take(4 * count, f"the {count} values of {what}")
        values = np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)
        if not np.isfinite(values).all():
            raise self.error(f"{what} holds NaN or infinite values")
        return values


def fold_affine(con: DlibLayer, affine: DlibLayer | None) -> tuple[np.ndarray, np.ndarray]:
    """A convolution's float32 weight and bias with the ``affine`` layer after it (None: no
    such layer) merged in: one layer, the same output up to float32 rounding (computed in
    float64). dlib's networks (face recognition and MMOD detection) store batch norm so."""
    weight = con.params["weight"].astype(np.float64)
    bias = con.params.get("bias", np.zeros(weight.shape[0])).astype(np.float64)
    if affine is not None:
        gamma = affine.params["gamma"].astype(np.float64)
        weight = weight * gamma[:, None, None, None]
        bias = bias * gamma + affine.params["beta"].astype(np.float64)
    return weight.astype(np.float32), bias.astype(np.float32)
