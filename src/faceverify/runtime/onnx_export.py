"""Exporting a PyTorch embedder to an ONNX graph for :mod:`~faceverify.runtime.onnx_backend`.

Needs the torch extra. The graph is exported from the PyTorch embedder, checked against
it on a probe batch, and cached on disk under a key made of everything that changes its
numbers: the weights, the architecture, the preprocessing contract, the opset and the
exporter's torch version. A changed key builds a new graph. Files are written to a
temporary name and renamed, so two processes never read half a graph. (dlib's network
needs none of this: its graph is written from dlib's file, without PyTorch.)
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

from faceverify.errors import ModelError
from faceverify.paths import atomic_path, cache_dir
from faceverify.runtime.onnx_backend import (
    EXPORT_FORMAT,
    METADATA_KEY,
    OnnxEmbedder,
    default_threads,
    graph_facts,
    import_onnxruntime,
    open_session,
    trusted_graph,
    write_graph_hash,
)

if TYPE_CHECKING:
    from faceverify.runtime.torch_backend import EmbeddingModel

log = logging.getLogger(__name__)

OPSET = 18
#: Largest difference to PyTorch accepted on the probe batch, relative to the outputs'
#: largest magnitude (when above 1); fp32 graphs agree to ~1e-6.
EXPORT_TOLERANCE = 1e-4


def onnx_embedder_for(model: EmbeddingModel, *, threads: int | None = None) -> OnnxEmbedder:
    """The ONNX Runtime twin of a PyTorch embedder, exported (or found in the cache).

    Raises:
        MissingDependencyError: onnxruntime or onnx is not installed.
        ModelError: the network does not export, or its graph disagrees with PyTorch.
    """
    import_onnxruntime()
    path = cached_graph_path(model)
    if not trusted_graph(path):
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
    write_graph_hash(path)
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
    session = open_session(graph_file, default_threads())
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
