"""Training face-embedding CNNs by identity classification.

``config`` (typed YAML configs), ``data`` (identity folders), ``setup`` (a run's network,
transforms, optimizers and precision from its config), ``heads`` (softmax, ArcFace,
CosFace, center loss), ``loop`` (one mixed-precision, DDP-ready loop; it joins torchrun's
process group through ``faceverify.distributed``), ``checkpoint`` (writing checkpoints and
RNG state; reading them is ``models.checkpoint``) and ``logbook`` (config and metrics files).

May import every step before it: ``models`` for networks, ``preprocess`` for transforms,
``runtime`` to validate through the same factory as inference, ``compare`` and
``evaluate`` for validation metrics. Training uses torch modules directly. Only the CLI
imports training.
"""
