"""``/v1/verify``, ``/v1/embed``, ``/v1/detect``: faces in uploaded photos, no gallery."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Query, UploadFile

from faceverify.compare.verification import verify
from faceverify.embed import EmbeddingResult, embed_images
from faceverify.errors import FailureKind
from faceverify.photos import POLICIES
from faceverify.service.deps import Reader, State, read_access
from faceverify.service.schemas import ERRORS, DetectOut, EmbedOut, VerifyOut
from faceverify.service.uploads import Photo

router = APIRouter(prefix="/v1", tags=["faces"], responses=ERRORS, dependencies=[Depends(read_access)])

Threshold = Annotated[
    float | None,
    Query(
        ge=-1.0,
        le=1.0,
        description="cosine threshold; default: the model's own (threshold_source in the answer says which)",
    ),
]
Images = Annotated[list[UploadFile], File(description="image files (JPEG, PNG, WebP...)")]
Several = Annotated[
    str | None,
    Query(
        pattern="^(" + "|".join(POLICIES) + ")$",
        description="a photo with several faces: largest (this route's default, with faces_found "
        "saying how many), all, refuse (422 several_faces) or skip",
    ),
]


def _refuse_failures(
    result: EmbeddingResult, photos: list[Photo], *, keep: tuple[FailureKind, ...] = ()
) -> None:
    """The first photo the library could not use (but for kinds in ``keep``), as a 422
    naming it (code ``no_face``/``several_faces`` for those kinds)."""
    for failure in result.failures:
        if failure.kind not in keep:
            raise failure.as_error().renamed(photos[failure.index].label)


@router.post("/verify", response_model=VerifyOut, summary="Are the faces of two photos the same person?")
def verify_pair(
    state: State,
    _: Reader,
    a: Annotated[UploadFile, File(description="a photo of the face (the largest face counts)")],
    b: Annotated[UploadFile, File(description="another photo")],
    threshold: Threshold = None,
) -> dict[str, Any]:
    """A photo with several faces gives its largest (``faces_found`` says how many there
    were), as the library and the CLI do."""
    photos = [state.photos.read("a", a), state.photos.read("b", b)]
    options = state.photos.faces.for_job("verify")
    result = embed_images(state.model, [p.image for p in photos], faces=options)
    _refuse_failures(result, photos)
    outcome = verify(result.embeddings[0], result.embeddings[1], threshold, model=state.model)
    state.metrics.count_faces("verify", 2)
    a_face, b_face = (
        {**photo.face_dict(face), "faces_found": found}
        for photo, face, found in zip(photos, result.faces, result.faces_found)
    )
    return {**outcome.to_dict(), "a": a_face, "b": b_face, "model": state.model.name}


@router.post("/embed", response_model=EmbedOut, summary="Embeddings of every face in one or more photos")
def embed(
    state: State,
    _: Reader,
    images: Images,
    normalize: Annotated[bool, Query(description="L2-normalise the embeddings")] = True,
    faces: Several = None,
) -> dict[str, Any]:
    """A photo without a face lists no face; with several, its largest (``faces=all`` for
    every one; ``skip`` lists none for it)."""
    photos = state.photos.read_all("images", images)
    chosen = state.photos.faces if faces is None else replace(state.photos.faces, several=faces)
    options = chosen.for_job("embed")
    result = embed_images(state.model, [p.image for p in photos], normalize=normalize, faces=options)
    found: list[list[dict[str, Any]]] = [[] for _ in photos]
    for row, (index, face) in enumerate(zip(result.indices, result.faces)):
        embedding = result.embeddings[row].tolist()
        found[index].append({**photos[index].face_dict(face), "embedding": embedding})
    quiet = (FailureKind.NO_FACE,) + ((FailureKind.SEVERAL_FACES,) if options.several == "skip" else ())
    _refuse_failures(result, photos, keep=quiet)
    state.metrics.count_faces("embed", len(result.indices))
    return {
        "model": state.model.name,
        "dim": state.model.embedding_dim,
        "normalized": normalize,
        "images": [{**photo.to_dict(), "faces": faces} for photo, faces in zip(photos, found)],
    }


@router.post("/detect", response_model=DetectOut, summary="Faces in photos: boxes, landmarks, scores")
def detect(state: State, _: Reader, images: Images) -> dict[str, Any]:
    photos = state.photos.read_all("images", images)
    faces = [state.photos.detect(photo) for photo in photos]
    state.metrics.count_faces("detect", sum(len(found) for found in faces))
    return {
        "detector": state.photos.faces.detector,
        "images": [
            {**photo.to_dict(), "faces": [photo.face_dict(face) for face in found]}
            for photo, found in zip(photos, faces)
        ],
    }
