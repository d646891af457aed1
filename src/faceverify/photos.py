"""From ordinary photos to model-ready faces: the one place that decides which faces count.

A model whose contract names a face template (dlib's network: ``dlib150``) is fed aligned
chips: every photo is searched for faces, the policy for several faces chooses among them,
the chosen faces are cut out aligned to the template, and only then does the contract
(normalisation) apply. Models that take plain crops skip all of this unless detection is
asked for; they then get dlib-style chips at their own input size.

What a photo with several faces means depends on the job, so each job has its default
policy (:data:`JOB_DEFAULTS`), the same in the library, the CLI (``--faces``) and the
service:

* ``largest`` for embedding and verification: the largest face, with a warning (a
  bystander in the background should not make a selfie unusable);
* ``all`` for identification, detection and clustering: every face answers for itself;
* ``refuse`` for enrolment: enrolling the wrong face poisons a gallery, so the photo is
  refused, naming the faces found (:class:`~faceverify.errors.SeveralFacesError`);
* ``skip``: the photo is left out and reported like a photo without a face, and the
  job goes on with the others (bulk enrolment of folders nobody checked; the default
  when preparing a training set).

A photo without a face is a :class:`~faceverify.errors.NoFaceError`, so a batch reports it
(``Failure.kind == FailureKind.NO_FACE``) and goes on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from faceverify.checks import check_choice
from faceverify.errors import Choice, ConfigError, NoFaceError, PoorFaceError, SeveralFacesError
from faceverify.faces.detect import DEFAULT_DETECTOR, DEFAULT_MAX_SIDE, MIN_MAX_SIDE

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from faceverify.faces.align import Template
    from faceverify.faces.detect import Face
    from faceverify.runtime.base import Embedder

log = logging.getLogger(__name__)


class SeveralFaces(Choice):
    """What to do with a photo that holds more than one face (see the module docstring)."""

    LARGEST = "largest"
    ALL = "all"
    REFUSE = "refuse"
    SKIP = "skip"


#: The policy for several faces each kind of job takes when none is given.
JOB_DEFAULTS: dict[str, SeveralFaces] = {
    "embed": SeveralFaces.LARGEST,
    "verify": SeveralFaces.LARGEST,
    "identify": SeveralFaces.ALL,
    "detect": SeveralFaces.ALL,
    "cluster": SeveralFaces.ALL,
    "enroll": SeveralFaces.REFUSE,
    "prepare": SeveralFaces.SKIP,  # a training set: the photo is left out and reported
}
POLICIES = tuple(p.value for p in SeveralFaces)


@dataclass(frozen=True)
class FaceOptions:
    """How faces are found in photos, and which of them count.

    Attributes:
        detect: True searches every image for faces, False takes images as they are
            (already aligned chips or crops), None (default) detects exactly when the
            model's contract names a face template (dlib's network does).
        detector: ``hog+mmod`` (default: HOG, then dlib's CNN where HOG finds no face),
            ``hog`` (fast on CPUs), ``mmod`` (dlib's CNN on ONNX Runtime), ``cnn`` (the
            same CNN in dlib; slow), or any detector registered with
            :func:`faceverify.faces.register_detector` or installed as a plugin.
        upsample: 0 finds faces of 80 px and more, 1 (default) 40 px, 2 20 px (slower).
        max_side: photos whose longer side is larger are reduced to it for detection
            (landmarks and chips still use every pixel). Smaller is faster on large photos
            and misses more small faces: the smallest face found grows by the reduction
            (40 px at ``upsample=1`` becomes 100 px in a 4000 px photo at 1600). None
            detects at full resolution.
        min_size: ignore faces narrower than this many pixels.
        score_threshold: the detector's cut; lower finds more (and more false) faces.
        several: ``largest``, ``all``, ``refuse`` or ``skip`` for photos with several
            faces; None (default) takes the job's own default (:data:`JOB_DEFAULTS`).
        whole_if_no_face: a photo in which no face is found is embedded whole (resized to
            the model's template) instead of being reported as without a face; its row then
            has no face (``None``), and a warning says so. Off by default: a whole photo is
            not a face, and its vector matches nobody well.
        min_quality: faces below this quality (:func:`faceverify.faces.quality.face_quality`)
            are refused (a :class:`~faceverify.errors.PoorFaceError` when none is left);
            None (default) takes the job's own: :data:`~faceverify.faces.quality.MIN_QUALITY`
            for enrolment (a blurry profile in a gallery spoils every later match), no
            gate for the others; 0 turns it off.
    """

    detect: bool | None = None
    detector: str = DEFAULT_DETECTOR
    upsample: int = 1
    max_side: int | None = DEFAULT_MAX_SIDE
    min_size: float = 0.0
    score_threshold: float = 0.0
    several: SeveralFaces | str | None = None
    whole_if_no_face: bool = False
    min_quality: float | None = None

    def __post_init__(self) -> None:
        from faceverify.faces.detect import check_detector

        check_detector(self.detector)
        if self.upsample < 0:
            raise ConfigError(f"upsample {self.upsample!r} must be 0 or more (0: faces of 80 px and up)")
        if self.max_side is not None and self.max_side < MIN_MAX_SIDE:
            raise ConfigError(
                f"max_side {self.max_side!r} is too small; use at least {MIN_MAX_SIDE} pixels, or None "
                f"for full resolution (default {DEFAULT_MAX_SIDE})"
            )
        if self.several is not None:
            policy = check_choice("several-faces policy", str(self.several), POLICIES)
            object.__setattr__(self, "several", SeveralFaces(policy))
        if self.min_quality is not None and not 0.0 <= self.min_quality <= 1.0:
            raise ConfigError(f"min_quality {self.min_quality!r} must be between 0 and 1 (0: no gate)")

    def applies_to(self, model: Embedder) -> bool:
        return model.preprocess.face_template is not None if self.detect is None else self.detect

    def for_job(self, job: str) -> FaceOptions:
        """These options with the job's policy for several faces and its quality gate,
        unless they were chosen."""
        check_choice("job", job, tuple(JOB_DEFAULTS))
        several = self.several if self.several is not None else JOB_DEFAULTS[job]
        quality = self.min_quality if self.min_quality is not None else _job_min_quality(job)
        return replace(self, several=several, min_quality=quality)

    @property
    def policy(self) -> SeveralFaces:
        """The policy in force (``largest``, embedding's default, when none was chosen)."""
        return SeveralFaces(self.several) if self.several is not None else SeveralFaces.LARGEST


@dataclass(frozen=True)
class PreparedFace:
    """One model-ready input and the face it came from (None without detection).

    Attributes:
        tensor: float32 ``[3, H, W]`` array following the model's contract.
        face: the detected face (box, score, landmarks in the photo's pixels).
        faces_found: how many faces the photo held (0 without detection).
    """

    tensor: np.ndarray
    face: Face | None = None
    faces_found: int = 0


def prepare_photo(
    model: Embedder,
    image: Image.Image,
    options: FaceOptions,
    source: str,
    *,
    found: list[Face] | None = None,
) -> list[PreparedFace]:
    """The model-ready inputs of one decoded photo (one, or one per face).

    Args:
        found: the photo's faces when they were found already (largest first); the
            detector then does not run again.

    Raises:
        NoFaceError: no face was found (with detection on).
        SeveralFacesError: several faces, and the policy is ``refuse`` or ``skip``.
    """
    if not options.applies_to(model):
        return [PreparedFace(model.prepare(image))]
    import numpy as np
    from PIL import Image as PILImage

    from faceverify.faces import align_faces

    pixels = np.asarray(image)
    faces = find_faces(pixels, options) if found is None else found
    if not faces and options.whole_if_no_face:
        log.warning("%s: no face found; embedding the whole photo", source)
        side = face_template_size(model)
        return [PreparedFace(model.prepare(image.resize((side, side), PILImage.Resampling.BILINEAR)))]
    chosen = choose_faces(faces, options.policy, source)
    if options.min_quality:
        chosen = good_enough(pixels, chosen, options.min_quality, source)
    chips = align_faces(pixels, chosen, face_template(model))
    return [
        PreparedFace(model.prepare(PILImage.fromarray(chip)), face, len(faces))
        for chip, face in zip(chips, chosen)
    ]


def choose_faces(faces: list[Face], policy: SeveralFaces, source: str) -> list[Face]:
    """The faces of a photo that count under ``policy`` (``faces`` largest first).

    Raises:
        NoFaceError: there is none.
        SeveralFacesError: several, and the policy is ``refuse`` or ``skip``.
    """
    if not faces:
        raise NoFaceError(source)
    if len(faces) == 1 or policy is SeveralFaces.ALL:
        return faces
    if policy is SeveralFaces.LARGEST:
        log.warning("%s: %d faces found; using the largest", source, len(faces))
        return faces[:1]
    raise SeveralFacesError(source, [face.box for face in faces])


def good_enough(pixels: np.ndarray, faces: list[Face], minimum: float, source: str) -> list[Face]:
    """The faces whose quality reaches ``minimum``; a :class:`PoorFaceError` naming what is
    wrong with the best of them when none does."""
    from faceverify.faces.quality import face_quality

    measured = [(face, face_quality(pixels, face)) for face in faces]
    kept = [face for face, quality in measured if quality.score >= minimum]
    if kept:
        if len(kept) < len(faces):
            log.warning(
                "%s: %d of %d faces left out, too poor to trust", source, len(faces) - len(kept), len(faces)
            )
        return kept
    best = max((quality for _, quality in measured), key=lambda q: q.score)
    raise PoorFaceError(
        source,
        f"the face is too poor to trust: quality {best.score:.2f} below {minimum:g}, "
        f"{best.weakest()}; use a sharper, larger, more frontal photo (or --min-quality 0 to take it anyway)",
    )


def _job_min_quality(job: str) -> float:
    """The quality gate a job takes when none is given: enrolment's only."""
    if job != "enroll":
        return 0.0
    from faceverify.faces.quality import MIN_QUALITY

    return MIN_QUALITY


def find_faces(pixels: np.ndarray, options: FaceOptions) -> list[Face]:
    """Every face in ``[H, W, 3]`` uint8 RGB pixels, largest first, as ``options`` say.

    The only caller of the detector besides :mod:`faceverify.faces` itself: every job
    finds faces through here, so every job finds the same faces.
    """
    from faceverify.faces import detect_faces

    return detect_faces(
        pixels,
        detector=options.detector,
        upsample=options.upsample,
        max_side=options.max_side,
        min_size=options.min_size,
        score_threshold=options.score_threshold,
    )


def face_record(face: Face | None, size: tuple[int, int]) -> dict[str, Any]:
    """A face as JSON (:meth:`Face.to_dict`); without detection the face is the whole
    ``(width, height)`` image, with no score or landmarks."""
    if face is not None:
        return face.to_dict()
    from faceverify.faces.detect import box_dict

    whole = (0.0, 0.0, float(size[0]), float(size[1]))
    return {"box": box_dict(whole), "score": None, "landmarks": None}


def face_template_size(model: Embedder) -> int:
    """The side of the model's chips, in pixels."""
    from faceverify.faces.align import get_template

    return get_template(face_template(model)).size


def face_template(model: Embedder) -> Template | str:
    """The model's own template, or dlib-style chips at the model's input size."""
    from faceverify.faces.align import dlib_template

    named = model.preprocess.face_template
    return named if named is not None else dlib_template(size=max(model.preprocess.input_size))
