"""Data to learn and test with, in the course layout that ``faceverify train`` reads.

``synthetic_faces`` generates a face-like dataset; ``prepare`` turns a folder-per-person tree of
real photos into aligned crops (``prepare_photos``), dividing people with ``split``.

May import: the layers up to ``evaluate`` (``prepare`` uses decode, faces and photos to
find and align faces); never train, service or cli. Importing this package loads nothing
heavy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "prepare_photos": "faceverify.data.prepare",
    "CropOptions": "faceverify.data.prepare",
    "PrepareReport": "faceverify.data.prepare",
    "SplitOptions": "faceverify.data.split",
    "generate": "faceverify.data.synthetic_faces",
}

__all__ = ["CropOptions", "PrepareReport", "SplitOptions", "generate", "prepare_photos"]

if TYPE_CHECKING:
    from faceverify.data.prepare import CropOptions, PrepareReport, prepare_photos
    from faceverify.data.split import SplitOptions
    from faceverify.data.synthetic_faces import generate


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'faceverify.data' has no attribute '{name}'")
