"""Comparing embeddings and deciding: cosine similarity and the verify decision
(``verification``), ROC curves and operating points (``roc``), and thresholds chosen on
labelled pairs and stored with the weights they were measured for (``calibration``).

May import: ``errors``, ``checks``, ``paths``, ``runtime.base`` (the embedder interface)
and ``embed`` (``verify`` embeds images it is given).
"""
