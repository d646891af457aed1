"""Embedding networks and their files: the registry of curated names (``registry``),
where weights come from and how they load (``weights``), training checkpoints read as
models (``checkpoint``), faceverify's own architectures (``face_resnet``, ``neck``) and
``load_network`` (``factory``), which turns a name and a weights source into a network.
Whatever a file says about its architecture passes ``args`` first: model files are data,
never instructions to a model factory.

May import: ``errors``, ``checks``, ``paths``, ``preprocess``. Never a runtime, and never
``faceverify.train``: training builds on models, not the other way round. Kept free of
imports here so that light modules (the registry) load without torch.
"""
