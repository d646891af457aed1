"""ONNX graphs faceverify did not write: ArcFace-family face models users bring.

Face models trained elsewhere (insightface's ArcFace ResNets, MobileFaceNets and their
kin) are published as ONNX graphs that take aligned 112×112 face chips and return one
vector per face. Such a graph says its input's layout and size, but not how pixels were
normalised or which alignment it was trained on, so those are options, with the
insightface convention as the default: 5-point ``arcface112`` chips, RGB, pixels mapped
by ``(p - 127.5) / 127.5``. With them the graph gets a preprocessing contract like any
other model, and everything faceverify offers works with it: embedding, verification,
calibration (its threshold sidecar lies beside the graph), galleries (its identity is
the graph's SHA-256), the service and evaluation.

Licences of such files vary (insightface's released models are for non-commercial
research only); faceverify ships none of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceverify.errors import ConfigError, ModelError
from faceverify.paths import file_sha256
from faceverify.runtime.onnx_backend import METADATA_KEY, OnnxEmbedder, import_onnxruntime

if TYPE_CHECKING:
    import numpy as np

    from faceverify.preprocess import PreprocessConfig

#: The insightface convention: alignment, pixel mean and std (0-255 units), channel order.
DEFAULT_TEMPLATE = "arcface112"
DEFAULT_PIXEL_MEAN = (127.5, 127.5, 127.5)
DEFAULT_PIXEL_STD = (127.5, 127.5, 127.5)
DEFAULT_CHANNEL_ORDER = "RGB"


@dataclass(frozen=True)
class ImageInput:
    """What a graph's image input takes, as the graph declares it.

    Attributes:
        name: the input's name in the graph.
        layout: ``NCHW`` or ``NHWC``.
        size: ``(height, width)`` when the graph fixes them, else None (any size).
        batch: the batch size when the graph fixes it (often 1), else None.
    """

    name: str
    layout: str
    size: tuple[int, int] | None
    batch: int | None = None


@dataclass(frozen=True)
class InputOptions:
    """How pixels become the graph's input (see the module docstring for the defaults).

    Attributes:
        face_template: the alignment the model was trained on (``arcface112``,
            ``dlib150``, or any name in :data:`faceverify.faces.align.TEMPLATES`).
        pixel_mean, pixel_std: per channel, in 0-255 pixel units, RGB order.
        channel_order: ``RGB`` or ``BGR`` (what the graph's first channel is).
    """

    face_template: str = DEFAULT_TEMPLATE
    pixel_mean: tuple[float, float, float] = DEFAULT_PIXEL_MEAN
    pixel_std: tuple[float, float, float] = DEFAULT_PIXEL_STD
    channel_order: str = DEFAULT_CHANNEL_ORDER


def input_options(
    face_template: str = DEFAULT_TEMPLATE,
    pixel_mean: float | Sequence[float] = DEFAULT_PIXEL_MEAN,
    pixel_std: float | Sequence[float] = DEFAULT_PIXEL_STD,
    channel_order: str = DEFAULT_CHANNEL_ORDER,
) -> InputOptions:
    """:class:`InputOptions` from what users type: one number or three per statistic."""
    from faceverify.checks import check_choice
    from faceverify.preprocess import CHANNEL_ORDERS

    order = check_choice("channel order", str(channel_order).upper(), CHANNEL_ORDERS)
    return InputOptions(
        face_template, _three("pixel mean", pixel_mean), _three("pixel std", pixel_std), order
    )


def _three(what: str, values: float | Sequence[float]) -> tuple[float, float, float]:
    items = [float(values)] * 3 if isinstance(values, (int, float)) else [float(v) for v in values]
    if len(items) == 1:
        items *= 3
    if len(items) != 3:
        raise ConfigError(f"{what} {values!r}: give one value or three (R, G, B), in 0-255 pixel units")
    return (items[0], items[1], items[2])


def is_foreign(graph_file: Path) -> bool:
    """Whether ``graph_file`` lacks the metadata faceverify writes into its own graphs."""
    ort = import_onnxruntime()
    try:
        session = ort.InferenceSession(str(graph_file), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(
            f"{graph_file} is not an ONNX graph ONNX Runtime can load: {_first_line(exc)}"
        ) from exc
    return METADATA_KEY not in session.get_modelmeta().custom_metadata_map


def foreign_embedder(graph_file: Path, options: InputOptions) -> OnnxEmbedder:
    """An embedder for a face model's graph that faceverify did not write.

    Raises:
        ModelError: the graph does not take a 4-D image batch, does not give one vector
            per image, or cannot take the template's chips; said before any photo is read.
    """
    ort = import_onnxruntime()
    session = ort.InferenceSession(str(graph_file), providers=["CPUExecutionProvider"])
    image = image_input(session, graph_file)
    contract = _contract(options, image, graph_file)
    dim = _embedding_dim(session, image, contract, graph_file)
    facts = {
        "model": graph_file.stem,
        "embedding_dim": dim,
        "preprocess": contract.to_dict(),
        "weights": str(graph_file),
        "layout": image.layout,
        "batch": image.batch,
    }
    sha256 = file_sha256(graph_file)
    return ForeignOnnxEmbedder(graph_file, facts, source_sha256=sha256, weights_file=graph_file)


def image_input(session: Any, graph_file: Path) -> ImageInput:
    """The graph's image input: ``[N, 3, H, W]`` or ``[N, H, W, 3]``, H and W fixed or free."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        names = ", ".join(f"{i.name} {i.shape}" for i in inputs)
        raise ModelError(
            f"{graph_file} has {len(inputs)} inputs ({names}); a face model takes one image batch"
        )
    shape = list(inputs[0].shape)
    if len(shape) == 4 and shape[1] == 3:
        layout, height, width = "NCHW", shape[2], shape[3]
    elif len(shape) == 4 and shape[3] == 3:
        layout, height, width = "NHWC", shape[1], shape[2]
    else:
        raise ModelError(
            f"{graph_file}: input {inputs[0].name!r} has shape {shape}; a face model takes "
            "[N, 3, H, W] or [N, H, W, 3] images"
        )
    fixed = isinstance(height, int) and isinstance(width, int)
    batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
    return ImageInput(inputs[0].name, layout, (height, width) if fixed else None, batch)


def _contract(options: InputOptions, image: ImageInput, graph_file: Path) -> PreprocessConfig:
    """The preprocessing contract of the options, checked against what the graph takes."""
    from faceverify.faces.align import get_template
    from faceverify.preprocess import PreprocessConfig

    template = get_template(options.face_template)
    if image.size is not None and image.size != (template.size, template.size):
        raise ModelError(
            f"{graph_file} takes {image.size[0]}x{image.size[1]} images; template "
            f"{template.name!r} cuts {template.size}x{template.size} chips: choose the template the "
            "model was trained on (arcface112 for ArcFace-family models)"
        )
    if min(options.pixel_std) <= 0:
        raise ModelError(f"pixel std {options.pixel_std!r} must be positive")
    return PreprocessConfig(
        input_size=(template.size, template.size),
        interpolation="bilinear",
        mean=_unit(options.pixel_mean),
        std=_unit(options.pixel_std),
        crop_pct=1.0,
        face_template=template.name,
        channel_order=options.channel_order,
    )


def _embedding_dim(session: Any, image: ImageInput, contract: PreprocessConfig, graph_file: Path) -> int:
    """The vector length, from one probe run: graphs often leave it symbolic."""
    import numpy as np

    outputs = session.get_outputs()
    height, width = contract.input_size
    count = image.batch or 2
    shape = (count, 3, height, width) if image.layout == "NCHW" else (count, height, width, 3)
    try:
        (out, *_) = session.run([outputs[0].name], {image.name: np.zeros(shape, np.float32)})
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(f"{graph_file} fails on a {list(shape)} batch: {_first_line(exc)}") from exc
    if out.ndim != 2 or out.shape[0] != count:
        raise ModelError(
            f"{graph_file}: output {outputs[0].name!r} is {list(out.shape)} for a batch of {count} "
            "images; a face model gives one vector per image ([N, D])"
        )
    return int(out.shape[1])


def _unit(values: tuple[float, float, float]) -> tuple[float, float, float]:
    """0-255 pixel units to the [0, 1] units of a preprocessing contract."""
    return (values[0] / 255.0, values[1] / 255.0, values[2] / 255.0)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


class ForeignOnnxEmbedder(OnnxEmbedder):
    """:class:`~faceverify.runtime.onnx_backend.OnnxEmbedder` for a graph whose layout may
    be channels-last (batches are transposed to it) and whose batch size may be fixed
    (batches are cut, and the last one padded, to it)."""

    def __init__(self, graph_file: Path, facts: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(graph_file, facts, **kwargs)
        self.layout = str(facts.get("layout", "NCHW"))
        self.fixed_batch: int | None = facts.get("batch")

    def embed(self, batch: np.ndarray) -> np.ndarray:
        import numpy as np

        x = batch.transpose(0, 2, 3, 1) if self.layout == "NHWC" else batch
        size = self.fixed_batch
        if size is None or len(x) == size:
            vectors: np.ndarray = super().embed(x)
            return vectors
        parts = []
        for start in range(0, len(x), size):
            part = x[start : start + size]
            if len(part) < size:  # repeat the last input to fill the graph's fixed batch
                part = np.concatenate([part, np.repeat(part[-1:], size - len(part), axis=0)])
            parts.append(super().embed(part)[: min(size, len(x) - start)])
        return np.concatenate(parts)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "graph": "foreign", "layout": self.layout}
