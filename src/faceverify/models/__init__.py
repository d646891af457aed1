"""Embedding models: the registry of curated names, weights resolution and the factory."""

from faceverify.models.embedder import EmbeddingModel
from faceverify.models.factory import DEFAULT_MODEL, build_model
from faceverify.models.registry import ModelInfo, list_models

__all__ = ["DEFAULT_MODEL", "EmbeddingModel", "ModelInfo", "build_model", "list_models"]
