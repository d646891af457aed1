"""Evaluation on labelled data: pairs files (``pairs``), scoring them (``scoring``),
verification metrics (``metrics``) gathered into a report's blocks of figures (all pairs,
usable pairs, each group: ``figures``), identification through the gallery's own search
(``identification``), reports (``report``), and the runs that evaluate a model or
calibrate its threshold from files (``run``), and int8 quantisation behind an accuracy
gate measured on held-out images and pairs (``quantize``). Choosing and storing a threshold is
:mod:`faceverify.compare.calibration`'s job; ``run`` only feeds it scored pairs.

May import: ``errors``, ``checks``, ``paths``, ``decode``, ``runtime.base`` (the
embedder interface; ``quantize`` also the ONNX runtime it quantises for), ``embed``,
``compare`` and ``gallery`` (its index code).
"""
