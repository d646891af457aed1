"""faceverify: face embeddings, verification and identification with modern CNNs.

The public API is small::

    import faceverify as fv

    model = fv.build_model()                      # ConvNeXt-Atto, GPU if present
    emb = fv.compute_embedding(model, ["a.jpg", "b.jpg"])   # float32 [2, 320]
    result = fv.verify(emb[0], emb[1], model=model)         # score, threshold, same

Importing this package is cheap: torch and timm load on first use of a function.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from faceverify.errors import (
    BatchImageError,
    ConfigError,
    DeviceError,
    FaceVerifyError,
    ImageError,
    InputError,
    ModelError,
    NoFaceError,
    SeveralFacesError,
    WeightsNotFoundError,
)

__version__ = "0.1.0"

# name -> module that defines it; resolved on first attribute access (PEP 562).
_LAZY = {
    "build_model": "faceverify.runtime.build",
    "DEFAULT_MODEL": "faceverify.models.registry",
    "EmbeddingModel": "faceverify.runtime.torch_backend",
    "DEFAULT_THRESHOLD": "faceverify.runtime.threshold",
    "Threshold": "faceverify.runtime.threshold",
    "FaceOptions": "faceverify.photos",
    "list_models": "faceverify.models.registry",
    "compute_embedding": "faceverify.embed",
    "embed_images": "faceverify.embed",
    "EmbeddingResult": "faceverify.embed",
    "cosine_similarity": "faceverify.compare.verification",
    "similarity_matrix": "faceverify.compare.verification",
    "verify": "faceverify.compare.verification",
    "Verification": "faceverify.compare.verification",
    "load_image": "faceverify.decode",
    "PreprocessConfig": "faceverify.preprocess",
    "open_gallery": "faceverify.gallery.gallery",
    "Gallery": "faceverify.gallery.gallery",
    "prepare_photos": "faceverify.data.prepare",
    "watch": "faceverify.video.watch",
    "WatchOptions": "faceverify.video.watch",
}

__all__ = [
    "BatchImageError",
    "ConfigError",
    "DeviceError",
    "FaceVerifyError",
    "ImageError",
    "InputError",
    "ModelError",
    "NoFaceError",
    "SeveralFacesError",
    "WeightsNotFoundError",
    "__version__",
    *_LAZY,
]

if TYPE_CHECKING:
    from faceverify.compare.verification import Verification, cosine_similarity, similarity_matrix, verify
    from faceverify.data.prepare import prepare_photos
    from faceverify.decode import load_image
    from faceverify.embed import EmbeddingResult, compute_embedding, embed_images
    from faceverify.gallery.gallery import Gallery, open_gallery
    from faceverify.models.registry import DEFAULT_MODEL, list_models
    from faceverify.photos import FaceOptions
    from faceverify.preprocess import PreprocessConfig
    from faceverify.runtime.build import build_model
    from faceverify.runtime.threshold import DEFAULT_THRESHOLD, Threshold
    from faceverify.runtime.torch_backend import EmbeddingModel
    from faceverify.video.watch import WatchOptions, watch


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'faceverify' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
