"""Embedding networks and their files: the registry of curated names (``registry``),
where weights come from and how they load (``weights``; an architecture publishing its own
registers them in ``custom_weights``), training checkpoints read as models
(``checkpoint``), faceverify's own architectures (``face_resnet``, ``dlib_resnet``,
``neck``) and ``load_network`` (``factory``), which turns a name and a weights source into
a network. ``spec`` holds :class:`~faceverify.models.spec.ModelSpec`, the typed
description of a model to build that the CLI, the service and Python callers share.
Whatever a file says about its architecture passes ``args`` first: model files are data,
never instructions to a model factory.

May import: ``errors``, ``checks``, ``paths``, ``preprocess``. Never a runtime, and never
``faceverify.train``: training builds on models, not the other way round. Kept free of
imports here so that light modules (the registry) load without torch.
"""
