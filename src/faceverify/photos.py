"""From ordinary photos to model-ready faces: detect, align, then the model's contract.

A model whose contract names a face template (dlib's network: ``dlib150``) is fed aligned
chips: every photo is searched for faces, the chosen faces are cut out aligned to the
template, and only then does the contract (normalisation) apply. Models that take plain
crops skip all of this unless detection is asked for; they then get dlib-style chips at
their own input size.

One face per photo is the rule (the largest, and a warning when there were several);
``FaceOptions(all_faces=True)`` keeps every face, as identification of a group photo
needs. A photo without a face is an :class:`~faceverify.errors.ImageError` ("no face
found"), so a batch reports it and goes on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from faceverify.errors import ImageError

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from faceverify.faces.align import Template
    from faceverify.faces.detect import Face
    from faceverify.runtime.base import Embedder

log = logging.getLogger(__name__)

DETECTORS = ("hog", "cnn")
#: The reason an image is refused when detection finds no face in it.
NO_FACE = "no face found"


@dataclass(frozen=True)
class FaceOptions:
    """How faces are found in photos.

    Attributes:
        detect: True searches every image for faces, False takes images as they are
            (already aligned chips or crops), None (default) detects exactly when the
            model's contract names a face template (dlib's network does).
        detector: ``hog`` (fast on CPUs) or ``cnn`` (finds turned faces; slow on CPUs).
        upsample: 0 finds faces of 80 px and more, 1 (default) 40 px, 2 20 px (slower).
        min_size: ignore faces narrower than this many pixels.
        score_threshold: the detector's cut; lower finds more (and more false) faces.
        all_faces: keep every face of a photo instead of the largest.
    """

    detect: bool | None = None
    detector: str = "hog"
    upsample: int = 1
    min_size: float = 0.0
    score_threshold: float = 0.0
    all_faces: bool = False

    def applies_to(self, model: Embedder) -> bool:
        return model.preprocess.face_template is not None if self.detect is None else self.detect


@dataclass(frozen=True)
class PreparedFace:
    """One model-ready input and the face it came from (None without detection).

    Attributes:
        tensor: ``[3, H, W]`` input following the model's contract.
        face: the detected face (box, score, landmarks in the photo's pixels).
        faces_found: how many faces the photo held (0 without detection).
    """

    tensor: torch.Tensor
    face: Face | None = None
    faces_found: int = 0


def prepare_photo(
    model: Embedder, image: Image.Image, options: FaceOptions, source: str
) -> list[PreparedFace]:
    """The model-ready inputs of one decoded photo (one, or one per face).

    Raises:
        ImageError: no face was found (with detection on).
    """
    if not options.applies_to(model):
        return [PreparedFace(model.prepare(image))]
    from PIL import Image as PILImage

    from faceverify.faces import align_faces

    pixels = np.asarray(image)
    faces = find_faces(pixels, options)
    if not faces:
        raise ImageError(source, NO_FACE)
    chosen = faces if options.all_faces else faces[:1]
    if len(faces) > 1 and not options.all_faces:
        log.warning("%s: %d faces found; using the largest", source, len(faces))
    chips = align_faces(pixels, chosen, face_template(model))
    return [
        PreparedFace(model.prepare(PILImage.fromarray(chip)), face, len(faces))
        for chip, face in zip(chips, chosen)
    ]


def find_faces(pixels: np.ndarray, options: FaceOptions) -> list[Face]:
    """Every face in ``[H, W, 3]`` uint8 RGB pixels, largest first, as ``options`` say."""
    from faceverify.faces import detect_faces

    return detect_faces(
        pixels,
        detector=options.detector,
        upsample=options.upsample,
        min_size=options.min_size,
        score_threshold=options.score_threshold,
    )


def face_template(model: Embedder) -> Template | str:
    """The model's own template, or dlib-style chips at the model's input size."""
    from faceverify.faces.align import dlib_template

    named = model.preprocess.face_template
    return named if named is not None else dlib_template(size=max(model.preprocess.input_size))
