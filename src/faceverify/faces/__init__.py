"""Faces in ordinary photos: detection, landmarks and aligned chips.

The pipeline, in three calls::

    from faceverify.faces import detect_faces, align_faces
    faces = detect_faces(pixels)                 # boxes, scores, 5 landmarks; largest first
    chips = align_faces(pixels, faces, "dlib150")  # [N, 150, 150, 3] uint8, dlib's chips

``detect`` finds faces through pluggable backends (dlib's ``hog`` and ``cnn``, and
``mmod``: dlib's CNN on ONNX Runtime);
``align`` cuts chips of a model's template from the landmarks; ``quality`` scores how
usable each face is (size, sharpness, detector score, head turn); ``dlib_files`` locates
dlib's model files. dlib is imported only when a dlib backend is first used, and
importing this package loads nothing heavy.

May import: ``errors``, ``checks``, ``paths``, ``decode`` (faces are found in decoded
pixels, before any model's preprocessing). Never models, runtimes or anything later.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "detect_faces": "faceverify.faces.detect",
    "Face": "faceverify.faces.detect",
    "FaceDetector": "faceverify.faces.detect",
    "register_detector": "faceverify.faces.detect",
    "available_detectors": "faceverify.faces.detect",
    "align_faces": "faceverify.faces.align",
    "align_landmarks": "faceverify.faces.align",
    "Template": "faceverify.faces.align",
    "DLIB_150": "faceverify.faces.align",
    "ARCFACE_112": "faceverify.faces.align",
    "face_quality": "faceverify.faces.quality",
    "FaceQuality": "faceverify.faces.quality",
    "MIN_QUALITY": "faceverify.faces.quality",
}

__all__ = [
    "ARCFACE_112",
    "DLIB_150",
    "MIN_QUALITY",
    "Face",
    "FaceDetector",
    "FaceQuality",
    "Template",
    "align_faces",
    "align_landmarks",
    "available_detectors",
    "detect_faces",
    "face_quality",
    "register_detector",
]

if TYPE_CHECKING:
    from faceverify.faces.align import ARCFACE_112, DLIB_150, Template, align_faces, align_landmarks
    from faceverify.faces.detect import (
        Face,
        FaceDetector,
        available_detectors,
        detect_faces,
        register_detector,
    )
    from faceverify.faces.quality import MIN_QUALITY, FaceQuality, face_quality


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'faceverify.faces' has no attribute '{name}'")
