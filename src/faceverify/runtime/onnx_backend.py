"""The ONNX Runtime runtime: the same network, exported once, run at the CPU's fp32 limit.

On CPUs ONNX Runtime runs the exported graph of a network faster than PyTorch eager
(fused kernels, no dispatcher overhead at batch 1; docs/benchmarks.md has the figures). The
graph is exported from the
PyTorch embedder, checked against it on a probe batch, and cached on disk under a key made
of everything that changes its numbers: the weights, the architecture, the preprocessing
contract, the opset and the exporter's torch version. A changed key builds a new graph; a
cached graph whose bytes no longer match the hash recorded beside it is rebuilt, not
trusted. Files are written to a temporary name and renamed, so two processes never read
half a graph.

The embedder reports the PyTorch weights' hash (:meth:`Embedder.weights_sha256`), so
galleries and calibrations made with one runtime are accepted by the other.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from faceverify.errors import FaceVerifyError, InputError, MissingDependencyError, ModelError
from faceverify.paths import atomic_path, cache_dir, file_sha256
from faceverify.runtime.base import Embedder
from faceverify.runtime.threshold import DEFAULT, Threshold, ThresholdSource

if TYPE_CHECKING:
    from faceverify.runtime.torch_backend import EmbeddingModel

log = logging.getLogger(__name__)

OPSET = 18
#: Bumped when the way graphs are exported changes, so old cached graphs are not reused.
EXPORT_FORMAT = 1
#: Largest difference to PyTorch accepted on the probe batch, relative to the outputs'
#: largest magnitude (when above 1); fp32 graphs agree to ~1e-6.
EXPORT_TOLERANCE = 1e-4
METADATA_KEY = "faceverify"
INSTALL_HINT = "install the extra: pip install 'faceverify[onnx]'"


def onnxruntime_available() -> bool:
    """Whether ONNX Runtime (and the exporter's onnx packages) can be imported."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError(f"the onnxruntime backend needs ONNX Runtime; {INSTALL_HINT}") from exc
    return onnxruntime


class OnnxEmbedder(Embedder):
    """An :class:`Embedder` running an ONNX graph in an ONNX Runtime CPU session.

    Built by ``build_model(..., backend="onnxruntime")`` (or ``"auto"`` on a CPU), or from
    an ``.onnx`` file that faceverify wrote (``faceverify quantize`` output included).

    Attributes:
        graph_file: the ``.onnx`` file the session runs.
        threads: ONNX Runtime's intra-op threads.
        (and the :class:`~faceverify.runtime.base.Embedder` attributes)
    """

    def __init__(
        self,
        graph_file: Path,
        facts: dict[str, Any],
        *,
        threads: int | None = None,
        source_sha256: str = "",
        weights_file: Path | None = None,
    ) -> None:
        from faceverify.preprocess import PreprocessConfig

        self.graph_file = Path(graph_file)
        self.name = str(facts["model"])
        self.embedding_dim = int(facts["embedding_dim"])
        self.preprocess = PreprocessConfig.from_dict(facts["preprocess"])
        self.weights_source = str(facts.get("weights", self.graph_file))
        # where calibrations are stored: beside the source weights (None for random ones),
        # or beside a graph file loaded on its own
        self.weights_file = weights_file
        self.threshold = threshold_of(facts)
        self.precision = str(facts.get("precision", "fp32"))
        self._weights_sha256 = source_sha256 or str(facts.get("weights_sha256", ""))
        self.threads = threads or default_threads()
        self._session = _open_session(self.graph_file, self.threads)
        self._input = self._session.get_inputs()[0].name

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def weights_sha256(self, *, refresh: bool = False) -> str:
        """The hash of the PyTorch weights this graph was exported from (see the module)."""
        return self._weights_sha256

    def embed(self, batch: torch.Tensor) -> torch.Tensor:
        import numpy as np

        x = np.ascontiguousarray(batch.detach().to("cpu", torch.float32).numpy())
        try:
            (out,) = self._session.run(None, {self._input: x})
        except Exception as exc:  # onnxruntime raises its own exception types
            detail = str(exc).strip().splitlines()[0][:200]
            raise InputError(f"the model cannot process input of shape {tuple(x.shape)}: {detail}") from exc
        return torch.from_numpy(np.asarray(out, dtype=np.float32))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "runtime": "onnxruntime", "precision": self.precision}


def default_threads() -> int:
    """Intra-op threads: the physical cores torch chose (one thread per core is fastest)."""
    return max(1, torch.get_num_threads())


def _open_session(graph_file: Path, threads: int) -> Any:
    """A CPU session; FACEVERIFY_ORT_SPINNING=1 lets its threads spin while a call runs.

    Spinning is off by default: idle worker threads would otherwise spin and slow the
    decoding threads, request threads and other processes that share these cores. On
    cores the session has to itself, spinning during a call (stopped when it returns)
    ran batch 1 10-22% faster and batch 8 up to 10%; beside one busy process on a
    2-core machine it ran 1.1-2x slower (docs/benchmarks.md, "ONNX Runtime overhead").

    Raises:
        ConfigError: FACEVERIFY_ORT_SPINNING is set to something other than 0 or 1.
    """
    import os

    from faceverify.errors import ConfigError

    spinning = os.environ.get("FACEVERIFY_ORT_SPINNING", "").strip() or "0"
    if spinning not in ("0", "1"):
        raise ConfigError(f"FACEVERIFY_ORT_SPINNING must be 0 (the default) or 1, not {spinning!r:.50}")
    ort = _import_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
    if spinning == "1":  # spin only while a call runs: nothing spins between calls
        options.add_session_config_entry("session.force_spinning_stop", "1")
    options.log_severity_level = 3
    return ort.InferenceSession(str(graph_file), sess_options=options, providers=["CPUExecutionProvider"])


def graph_facts(model: Embedder, *, precision: str = "fp32") -> dict[str, Any]:
    """What an exported graph records about itself (ONNX metadata), to rebuild its embedder."""
    return {
        **model.describe(),
        "threshold": model.threshold.to_dict(),
        "weights_sha256": model.weights_sha256(),
        "precision": precision,
        "format": EXPORT_FORMAT,
    }


def read_graph_facts(graph_file: Path) -> dict[str, Any]:
    """The faceverify metadata of an ``.onnx`` file, or a ModelError saying it has none."""
    import onnx

    try:
        graph = onnx.load(str(graph_file), load_external_data=False)
    except Exception as exc:
        raise ModelError(f"{graph_file} is not a readable ONNX graph: {exc}") from exc
    props = {p.key: p.value for p in graph.metadata_props}
    if METADATA_KEY not in props:
        raise ModelError(
            f"{graph_file} was not written by faceverify (no '{METADATA_KEY}' metadata); export "
            "it with build_model(..., backend='onnxruntime') or 'faceverify quantize'"
        )
    try:
        facts = json.loads(props[METADATA_KEY])
    except ValueError as exc:
        raise ModelError(f"{graph_file}: its '{METADATA_KEY}' metadata is not JSON ({exc})") from exc
    return _checked_facts(facts, graph_file)


#: The precisions faceverify writes graphs in (``faceverify quantize`` writes int8).
PRECISIONS = ("fp32", "int8")


def _checked_facts(facts: object, graph_file: Path) -> dict[str, Any]:
    """The graph's metadata, if every value an embedder is rebuilt from is plain and valid.

    A graph is a file anyone can hand over: its model name must be a registered
    architecture and its contract a valid one, as for checkpoints and model folders.
    """
    from faceverify.models.args import check_architecture, check_contract

    if not isinstance(facts, dict):
        raise ModelError(
            f"{graph_file}: its '{METADATA_KEY}' metadata must be a JSON object, not {facts!r:.100}"
        )
    check_architecture(facts.get("model"), source=graph_file)
    check_contract(facts.get("preprocess"), source=graph_file)
    dim = facts.get("embedding_dim")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ModelError(f"{graph_file}: 'embedding_dim' must be a positive integer, not {dim!r:.100}")
    try:
        threshold_of(facts)
    except (FaceVerifyError, TypeError, ValueError, KeyError):
        sources = ", ".join(source.value for source in ThresholdSource)
        raise ModelError(
            f"{graph_file}: 'threshold' must be a number in [-1, 1], null, or "
            f'{{"value": ..., "source": one of {sources}}}; not {facts["threshold"]!r:.100}'
        ) from None
    precision = facts.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise ModelError(
            f"{graph_file}: 'precision' {precision!r:.100} is unknown; valid: {', '.join(PRECISIONS)}"
        )
    for key in ("weights", "weights_sha256"):
        if not isinstance(facts.get(key, ""), str):
            raise ModelError(f"{graph_file}: {key!r} must be a string, not {facts[key]!r:.100}")
    return facts


def threshold_of(facts: dict[str, Any]) -> Threshold:
    """The threshold a graph records: ``{"value", "source"}``; a bare number (a graph
    written before sources were recorded) counts as given; none is the default."""
    recorded = facts.get("threshold")
    if recorded is None:
        return DEFAULT
    if isinstance(recorded, dict):
        return Threshold.from_dict(recorded)
    if isinstance(recorded, bool) or not isinstance(recorded, (int, float)):
        raise TypeError(recorded)
    return Threshold(float(recorded), ThresholdSource.GIVEN, "recorded in the graph file")


def load_onnx_embedder(graph_file: Path, *, threads: int | None = None) -> OnnxEmbedder:
    """An embedder for an ``.onnx`` file faceverify wrote (an exported or quantised graph)."""
    _import_onnxruntime()
    facts = read_graph_facts(graph_file)
    return OnnxEmbedder(graph_file, facts, threads=threads, weights_file=Path(graph_file))


def onnx_embedder_for(model: EmbeddingModel, *, threads: int | None = None) -> OnnxEmbedder:
    """The ONNX Runtime twin of a PyTorch embedder, exported (or found in the cache).

    Raises:
        MissingDependencyError: onnxruntime or onnx is not installed.
        ModelError: the network does not export, or its graph disagrees with PyTorch.
    """
    _import_onnxruntime()
    path = cached_graph_path(model)
    if not _trusted(path):
        export_graph(model, path)
    return OnnxEmbedder(
        path,
        graph_facts(model),
        threads=threads,
        source_sha256=model.weights_sha256(),
        weights_file=model.weights_file,
    )


def cached_graph_path(model: EmbeddingModel) -> Path:
    """Where the graph of this exact network, contract and opset is cached."""
    identity = model.identity()
    key = {
        **identity.to_dict(),
        "weights_sha256": identity.weights_sha256 or _state_digest(model),
        "architecture": hashlib.sha256(repr(model.backbone).encode()).hexdigest(),
        "opset": OPSET,
        "format": EXPORT_FORMAT,
        "torch": torch.__version__,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    safe_name = "".join(c if c.isalnum() or c in "._-" else "_" for c in model.name)[:60]
    return cache_dir() / "onnx" / f"{safe_name}-{digest}.onnx"


def _state_digest(model: EmbeddingModel) -> str:
    """Digest of the network's tensors, for weights that have no file (random, in memory)."""
    digest = hashlib.sha256()
    for name, tensor in model.backbone.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".sha256")


def _trusted(path: Path) -> bool:
    """A cached graph is used only when its bytes match the hash written after export."""
    sidecar = _sidecar(path)
    if not (path.is_file() and sidecar.is_file()):
        return False
    if file_sha256(path) == sidecar.read_text().strip():
        return True
    log.warning("cached ONNX graph %s does not match its recorded hash; rebuilding it", path)
    return False


def export_graph(model: EmbeddingModel, path: Path, *, precision: str = "fp32") -> Path:
    """Export ``model`` to ``path`` with a dynamic batch, check it, and write it atomically.

    Raises:
        ModelError: the network does not export, or the graph's output differs from
            PyTorch's by more than :data:`EXPORT_TOLERANCE` on a probe batch.
    """
    import onnx

    probe = _probe_batch(model)
    network = _Backbone(model.backbone).eval().cpu()
    try:
        with atomic_path(path) as temporary:
            _torch_export(network, probe, temporary)
            graph = onnx.load(str(temporary))
            entry = graph.metadata_props.add()
            entry.key, entry.value = METADATA_KEY, json.dumps(graph_facts(model, precision=precision))
            onnx.save(graph, str(temporary))
            _check_agreement(temporary, network, probe)
    except ModelError:
        raise
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{model.name} does not export to ONNX: {detail}") from exc
    from faceverify.paths import atomic_write_text

    atomic_write_text(_sidecar(path), file_sha256(path) + "\n")
    log.info("exported %s to %s", model.name, path)
    return path


class _Backbone(nn.Module):
    """The backbone alone, fed contiguous (not channels-last) input: the graph to export."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.backbone(x)
        return out


def _probe_batch(model: EmbeddingModel) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, *model.preprocess.input_size, generator=generator)


def _torch_export(network: Any, probe: torch.Tensor, target: Path) -> None:
    """torch.export-based exporter first; the TorchScript one for networks it cannot trace."""
    common: dict[str, Any] = {
        "input_names": ["input"],
        "output_names": ["embedding"],
        "opset_version": OPSET,
    }
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            batch = torch.export.Dim("batch", min=1, max=65536)
            torch.onnx.export(
                network,
                (probe,),
                str(target),
                dynamic_shapes={"x": {0: batch}},
                dynamo=True,
                external_data=False,
                verbose=False,
                **common,
            )
        except Exception as exc:
            log.info("torch.export-based ONNX export failed (%s); trying the TorchScript exporter", exc)
            axes = {"input": {0: "batch"}, "embedding": {0: "batch"}}
            torch.onnx.export(network, (probe,), str(target), dynamic_axes=axes, dynamo=False, **common)


def _check_agreement(graph_file: Path, network: Any, probe: torch.Tensor) -> None:
    session = _open_session(graph_file, default_threads())
    with torch.no_grad():
        expected = network(probe).float().numpy()
    scale = max(1.0, float(abs(expected).max()))  # fp32 rounding grows with the outputs' size
    for batch in (probe, probe[:1]):  # the batch axis really is dynamic
        (got,) = session.run(None, {session.get_inputs()[0].name: batch.numpy()})
        difference = float(abs(got - expected[: len(batch)]).max()) / scale
        if not difference <= EXPORT_TOLERANCE:
            raise ModelError(
                f"the ONNX graph disagrees with PyTorch by {difference:.2e} of the output's scale "
                f"(> {EXPORT_TOLERANCE:g}) on a probe batch; use backend='torch' for this model"
            )
