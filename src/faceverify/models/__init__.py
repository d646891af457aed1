"""Embedding models: the registry of curated names (``registry``), where weights come
from (``weights``), the model object (``embedder``) and ``build_model`` (``factory``).

Kept free of imports so that light modules (the registry) load without torch.
"""
