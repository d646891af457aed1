"""int8 graphs: static QDQ quantisation with ONNX Runtime's tools, behind an accuracy gate.

Weights are quantised per output channel, activations with ranges measured on the
user's own images (MinMax calibration). Part of the images is held out from calibration
and embedded by both graphs: the mean and the worst cosine between int8 and fp32
embeddings say what quantisation cost, and, given labelled pairs, so does the change in
ROC AUC. A graph whose mean cosine falls below :data:`MIN_MEAN_COSINE` is not saved
unless the caller insists.

int8 pays off on CPUs with VNNI or AMX (most Xeons since Cascade Lake, Zen 4); on AVX2
alone int8 convolutions are slower than fp32, so measure before deploying.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceverify.compare.verification import cosine_similarity
from faceverify.errors import ConfigError, ImageError
from faceverify.paths import atomic_path
from faceverify.runtime.onnx_backend import (  # the runtime the graph is made for
    METADATA_KEY,
    OnnxEmbedder,
    graph_facts,
    load_onnx_embedder,
)

if TYPE_CHECKING:
    from faceverify.runtime.base import Embedder

log = logging.getLogger(__name__)

#: Below this mean cosine between int8 and fp32 embeddings the int8 graph is refused.
MIN_MEAN_COSINE = 0.99
#: Every n-th image is held out of calibration to measure the int8 graph on.
HOLD_OUT_EVERY = 4


@dataclass(frozen=True)
class QuantizationReport:
    """What quantisation cost, measured on images the calibration did not see.

    Attributes:
        calibration_images: images whose activation ranges set the int8 scales.
        held_out_images: images embedded by both graphs to compare them.
        mean_cosine: mean cosine similarity between int8 and fp32 embeddings.
        min_cosine: the worst one.
        auc_fp32: ROC AUC of the fp32 graph on the pairs, when pairs were given.
        auc_int8: the same for the int8 graph.
        saved: whether the int8 graph was written.
        output: where it was (or would have been) written.
    """

    calibration_images: int
    held_out_images: int
    mean_cosine: float
    min_cosine: float
    auc_fp32: float | None
    auc_int8: float | None
    saved: bool
    output: str

    @property
    def passed(self) -> bool:
        return self.mean_cosine >= MIN_MEAN_COSINE

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed, "min_mean_cosine": MIN_MEAN_COSINE}


def quantize_model(
    model: Embedder,
    images: Sequence[Path],
    output: Path,
    *,
    pairs: Any = None,
    force: bool = False,
) -> QuantizationReport:
    """Write an int8 copy of ``model``'s graph to ``output`` if it keeps the embeddings.

    Args:
        model: an embedder from ``build_model``: one running in ONNX Runtime already (dlib's
            network on the base install), or a PyTorch one, whose graph is exported first.
        images: calibration images (paths); a few hundred of the kind the model will see.
            Every :data:`HOLD_OUT_EVERY`-th one is held out to measure the result.
        output: the ``.onnx`` file to write; load it with ``build_model(weights=output)``.
        pairs: labelled pairs (``faceverify.evaluate.pairs.read_pairs``) to report the
            change in ROC AUC too.
        force: save even when the mean cosine is below :data:`MIN_MEAN_COSINE`.

    Raises:
        ConfigError: too few usable images, or ``output`` not ending in ``.onnx``.
    """
    if output.suffix != ".onnx":
        raise ConfigError(f"output {output} must end in .onnx")
    from faceverify.extras import ONNX

    ONNX.require("int8 quantisation (ONNX Runtime's quantisation tools)")
    fp32 = model if isinstance(model, OnnxEmbedder) else _exported(model)
    tensors = _prepared(fp32, images)
    held_out = tensors[::HOLD_OUT_EVERY]
    calibration = [t for i, t in enumerate(tensors) if i % HOLD_OUT_EVERY]
    if len(calibration) < 2 or not held_out:
        raise ConfigError(
            f"{len(tensors)} usable calibration images are too few; give at least {HOLD_OUT_EVERY + 1} "
            "(a few hundred of the kind the model will see is best)"
        )
    with tempfile.TemporaryDirectory(prefix="faceverify-quantize-") as scratch:
        candidate = Path(scratch) / output.name  # judged first; written to ``output`` only if it passes
        _quantize_graph(fp32.graph_file, candidate, calibration, model)
        int8 = load_onnx_embedder(candidate)
        cosines = _cosines(fp32, int8, np.stack(held_out))
        auc_fp32, auc_int8 = _aucs(fp32, int8, pairs) if pairs is not None else (None, None)
        report = QuantizationReport(
            calibration_images=len(calibration),
            held_out_images=len(held_out),
            mean_cosine=float(cosines.mean()),
            min_cosine=float(cosines.min()),
            auc_fp32=auc_fp32,
            auc_int8=auc_int8,
            saved=False,
            output=str(output),
        )
        if report.passed or force:
            with atomic_path(output) as target:
                shutil.copyfile(candidate, target)
            report = QuantizationReport(**{**asdict(report), "saved": True})
        return report


def _exported(model: Embedder) -> OnnxEmbedder:
    from faceverify.extras import require_torch

    require_torch(f"quantising {model.name}, whose graph is exported from PyTorch,")
    from faceverify.runtime.onnx_export import onnx_embedder_for
    from faceverify.runtime.torch_backend import EmbeddingModel

    if not isinstance(model, EmbeddingModel):
        raise ConfigError(f"{model.name} runs in {type(model).__name__}; quantise its PyTorch or ONNX model")
    return onnx_embedder_for(model)


def _prepared(embedder: OnnxEmbedder, images: Sequence[Path]) -> list[np.ndarray]:
    from faceverify.decode import load_image

    tensors = []
    for path in images:
        try:
            tensors.append(embedder.prepare(load_image(path)))
        except ImageError as exc:
            log.warning("calibration: skipped %s", exc)
    return tensors


class _Reader:
    """ONNX Runtime's calibration data reader protocol over prepared tensors."""

    def __init__(self, name: str, tensors: list[np.ndarray], batch: int = 16) -> None:
        self._batches: Iterator[dict[str, np.ndarray]] = iter(
            {name: np.stack(tensors[i : i + batch])} for i in range(0, len(tensors), batch)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def _quantize_graph(source: Path, target: Path, calibration: list[np.ndarray], model: Embedder) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = target.with_suffix(".pre.onnx")
    try:
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        reader = _Reader(onnx.load(str(prepared)).graph.input[0].name, calibration)
        CalibrationDataReader.register(_Reader)
        quantize_static(
            str(prepared),
            str(target),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    finally:
        prepared.unlink(missing_ok=True)
        for leftover in target.parent.glob(f"{target.stem}*.data"):
            leftover.unlink(missing_ok=True)
    graph = onnx.load(str(target))
    for entry in list(graph.metadata_props):
        if entry.key == METADATA_KEY:
            graph.metadata_props.remove(entry)
    entry = graph.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(graph_facts(model, precision="int8"))
    onnx.save(graph, str(target))


def _cosines(fp32: OnnxEmbedder, int8: OnnxEmbedder, batch: np.ndarray) -> np.ndarray:
    return cosine_similarity(fp32.embed(batch), int8.embed(batch))


def _aucs(fp32: OnnxEmbedder, int8: OnnxEmbedder, pairs: Any) -> tuple[float, float]:
    from faceverify.compare.roc import roc_auc, roc_curve
    from faceverify.evaluate.scoring import score_pairs

    aucs = []
    for embedder in (fp32, int8):
        scored = score_pairs(embedder, pairs, progress=False)
        aucs.append(roc_auc(roc_curve(scored.scores, scored.labels)))
    return aucs[0], aucs[1]
