"""Faces in ordinary photos: detection, landmarks and aligned chips.

``detect`` finds faces (boxes, scores, five landmarks) through pluggable backends;
``align`` cuts chips of a model's template from the landmarks; ``dlib_files`` locates
dlib's model files. This package may import ``faceverify.errors`` and
``faceverify.models`` (never training, CLI or service code); dlib is imported lazily,
only when a dlib backend is first used.
"""
