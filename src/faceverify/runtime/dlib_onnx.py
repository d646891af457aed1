"""dlib's face network on ONNX Runtime, straight from dlib's file: no PyTorch anywhere.

``build_model("dlib_resnet_v1")`` on a CPU runs this: the graph is written once from the
``.dat`` file (:mod:`faceverify.runtime.dlib_graph`), cached beside the other graphs under
the file's hash, and run by :class:`~faceverify.runtime.onnx_backend.OnnxEmbedder`. Its
identity is the PyTorch port's (same name, contract and weights hash: the ``.dat`` file),
so galleries and calibrations made by either runtime are accepted by the other; the
vectors agree within 4e-7 on real faces (``tests/runtime/test_dlib_graph.py``, which allows 1e-4).
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from faceverify.paths import cache_dir, file_sha256
from faceverify.runtime.onnx_backend import (
    EXPORT_FORMAT,
    METADATA_KEY,
    OnnxEmbedder,
    import_onnxruntime,
    trusted_graph,
    write_graph_hash,
)
from faceverify.runtime.threshold import Threshold, ThresholdSource

log = logging.getLogger(__name__)

#: Bumped when the graph written from dlib's file changes, so cached graphs are rebuilt.
GRAPH_FORMAT = 1
_SUFFIXES = (".dat", ".dat.bz2")


def is_dlib_weights(weights: object) -> bool:
    """Whether ``weights`` is dlib's own file (or None: the packaged one)."""
    return weights is None or (isinstance(weights, (str, Path)) and str(weights).endswith(_SUFFIXES))


def dlib_onnx_embedder(weights: str | Path | None = None, *, threads: int | None = None) -> OnnxEmbedder:
    """dlib's network from ``weights`` (default: face-recognition-models' file) on ONNX Runtime.

    Raises:
        MissingDependencyError: onnxruntime, or dlib's model files, are not installed.
        ModelError: the file is not dlib's face network.
    """
    from faceverify.models.dlib_spec import packaged_weights

    import_onnxruntime()
    source = Path(weights).expanduser() if weights is not None else packaged_weights()
    sha = file_sha256(source)
    facts = _facts(source, sha)
    graph = cache_dir() / "onnx" / f"dlib_resnet_v1-{sha[:24]}-g{GRAPH_FORMAT}.onnx"
    if not trusted_graph(graph):
        from faceverify.runtime.dlib_graph import write_dlib_graph

        write_dlib_graph(source, graph, metadata={METADATA_KEY: json.dumps(facts)})
        write_graph_hash(graph)
        log.info("wrote dlib's network from %s as %s", source, graph)
    return OnnxEmbedder(graph, facts, threads=threads, source_sha256=sha, weights_file=source)


def _facts(source: Path, sha: str) -> dict[str, Any]:
    """What the graph records about itself: the PyTorch port's description of these weights."""
    from faceverify.models.dlib_spec import (
        DLIB_COSINE_THRESHOLD,
        FACE_TEMPLATE,
        MODEL_NAME,
        NUM_FEATURES,
        preprocess_config,
    )

    contract = replace(preprocess_config(), face_template=FACE_TEMPLATE)
    published = Threshold(DLIB_COSINE_THRESHOLD, ThresholdSource.PUBLISHED, "the network authors' rule")
    return {
        "model": MODEL_NAME,
        "embedding_dim": NUM_FEATURES,
        "weights_sha256": sha,
        "preprocess": contract.to_dict(),
        "weights": str(source),
        "threshold": published.to_dict(),
        "precision": "fp32",
        "format": EXPORT_FORMAT,
    }
