"""Runtimes: what computes embeddings from model-ready input, behind one interface.

``base`` holds :class:`~faceverify.runtime.base.Embedder`, the interface that ``embed``,
``compare``, ``gallery`` and ``evaluate`` use; ``torch_backend`` runs a network eagerly
in PyTorch (``EmbeddingModel``); ``onnx_backend`` runs its exported graph in ONNX Runtime;
``build`` holds ``build_model``, which loads a network from :mod:`faceverify.models` and
puts it in a runtime on a device; ``threshold`` decides which threshold a model decides
with, and ``identity`` what makes two models' vectors interchangeable.

May import: ``errors``, ``checks``, ``paths``, ``device``, ``decode``, ``preprocess``,
``models``; and, in ``build`` only, ``compare.calibration``, to give a model the threshold
stored for it (that module stands on ``paths`` and ``compare.roc`` alone).
"""

#: The runtimes ``build_model(backend=...)`` and ``--backend`` accept (here, not in ``build``,
#: so that the CLI's parser names them without importing torch).
BACKENDS = ("torch", "onnxruntime", "auto")
