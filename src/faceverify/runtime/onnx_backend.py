"""The ONNX Runtime runtime: a network's graph run at the CPU's fp32 limit, without PyTorch.

On CPUs ONNX Runtime runs the graph of a network faster than PyTorch eager (fused
kernels, no dispatcher overhead at batch 1; docs/benchmarks.md has the figures). Graphs
come from three places: dlib's network is written from dlib's own file
(:mod:`faceverify.runtime.dlib_graph`), other networks are exported from PyTorch
(:mod:`faceverify.runtime.onnx_export`, the torch extra), and users bring their own
(:mod:`faceverify.runtime.foreign_onnx`). Nothing here imports PyTorch.

Graphs made by faceverify are cached on disk with their hash beside them: a cached graph
whose bytes no longer match the hash is rebuilt, not trusted. The embedder reports the
hash of the weights a graph was made from (:meth:`Embedder.weights_sha256`), so
galleries and calibrations made with one runtime are accepted by the other.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from faceverify.errors import FaceVerifyError, InputError, MissingDependencyError, ModelError
from faceverify.paths import file_sha256
from faceverify.runtime.base import Embedder
from faceverify.runtime.threshold import DEFAULT, Threshold, ThresholdSource

log = logging.getLogger(__name__)

#: Bumped when the way graphs are made changes, so old cached graphs are not reused.
EXPORT_FORMAT = 1
METADATA_KEY = "faceverify"
INSTALL_HINT = "reinstall faceverify (ONNX Runtime is part of its base install): pip install faceverify"


def import_onnxruntime() -> Any:
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
        self._session = open_session(self.graph_file, self.threads)
        self._input = self._session.get_inputs()[0].name

    @property
    def device(self) -> str:
        return "cpu"

    def weights_sha256(self, *, refresh: bool = False) -> str:
        """The hash of the PyTorch weights this graph was exported from (see the module)."""
        return self._weights_sha256

    def embed(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        try:
            (out,) = self._session.run(None, {self._input: x})
        except Exception as exc:  # onnxruntime raises its own exception types
            detail = str(exc).strip().splitlines()[0][:200]
            raise InputError(f"the model cannot process input of shape {tuple(x.shape)}: {detail}") from exc
        return np.asarray(out, dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "runtime": "onnxruntime", "precision": self.precision}


#: Threads set by :func:`set_threads` (the service's ``--threads``); None: per machine.
_threads: int | None = None


def set_threads(count: int) -> None:
    """Use ``count`` threads for every network built from now on, in ONNX Runtime and in
    PyTorch (now if it is loaded, else when ``build_model`` loads it: importing it here
    would cost a second and its memory to a process that runs ONNX Runtime only)."""
    global _threads
    _threads = count
    apply_torch_threads()


def apply_torch_threads() -> None:
    """Give a loaded PyTorch the threads :func:`set_threads` asked for (if any)."""
    torch = sys.modules.get("torch")
    if _threads is not None and torch is not None:
        torch.set_num_threads(_threads)


def default_threads() -> int:
    """Intra-op threads: one per physical core this process may use (fastest for convolutions;
    a second thread on a core's sibling only contends), as PyTorch chooses its own."""
    if _threads is not None:
        return _threads
    torch = sys.modules.get("torch")
    if torch is not None:  # already loaded: agree with it
        return max(1, int(torch.get_num_threads()))
    return physical_cores()


def physical_cores() -> int:
    """The physical cores among the CPUs this process may run on (Linux: from sysfs)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not cpus:
        return max(1, os.cpu_count() or 1)
    cores = set()
    for cpu in cpus:
        siblings = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
        try:
            cores.add(siblings.read_text().strip())
        except OSError:
            cores.add(str(cpu))
    return max(1, len(cores))


def open_session(graph_file: Path, threads: int) -> Any:
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
    ort = import_onnxruntime()
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
    """The faceverify metadata of an ``.onnx`` file, or a ModelError saying it has none.

    Read without the ``onnx`` package (not in the base install): only the metadata is
    decoded, the graph is skipped (:func:`faceverify.onnx_proto.read_metadata`).
    """
    from faceverify.onnx_proto import read_metadata

    try:
        props = read_metadata(graph_file)
    except OSError as exc:
        raise ModelError(f"{graph_file} is not a readable ONNX graph: {exc}") from exc
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
    import_onnxruntime()
    facts = read_graph_facts(graph_file)
    return OnnxEmbedder(graph_file, facts, threads=threads, weights_file=Path(graph_file))


def hash_file_of(path: Path) -> Path:
    return path.with_suffix(".sha256")


def trusted_graph(path: Path) -> bool:
    """A cached graph is used only when its bytes match the hash written after export."""
    sidecar = hash_file_of(path)
    if not (path.is_file() and sidecar.is_file()):
        return False
    if file_sha256(path) == sidecar.read_text().strip():
        return True
    log.warning("cached ONNX graph %s does not match its recorded hash; rebuilding it", path)
    return False


def write_graph_hash(path: Path) -> None:
    """Record ``path``'s hash beside it, after it was written and checked: from then on
    :func:`trusted_graph` accepts it."""
    from faceverify.paths import atomic_write_text

    atomic_write_text(hash_file_of(path), file_sha256(path) + "\n")
