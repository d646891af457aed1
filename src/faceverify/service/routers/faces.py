"""``/v1/verify``, ``/v1/embed``, ``/v1/detect``: faces in uploaded photos, no gallery."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Query, UploadFile

from faceverify.compare.verification import verify
from faceverify.embed import EmbeddingResult, embed_images
from faceverify.errors import ImageError
from faceverify.photos import NO_FACE
from faceverify.service.deps import Reader, State, read_access
from faceverify.service.schemas import ERRORS, DetectOut, EmbedOut, VerifyOut
from faceverify.service.uploads import Photo, face_count_error

router = APIRouter(prefix="/v1", tags=["faces"], responses=ERRORS, dependencies=[Depends(read_access)])

Threshold = Annotated[
    float | None,
    Query(ge=-1.0, le=1.0, description="cosine threshold; default: the model's (calibrated, else 0.5)"),
]
Images = Annotated[list[UploadFile], File(description="image files (JPEG, PNG, WebP...)")]


def _refuse_failures(result: EmbeddingResult, photos: list[Photo]) -> None:
    """The first photo the library could not use, as a 422 naming it ("no_face" if faceless)."""
    for failure in result.failures:
        raise ImageError(photos[failure.index].label, failure.reason)


@router.post("/verify", response_model=VerifyOut, summary="Are the faces of two photos the same person?")
def verify_pair(
    state: State,
    _: Reader,
    a: Annotated[UploadFile, File(description="a photo with one face")],
    b: Annotated[UploadFile, File(description="another photo with one face")],
    threshold: Threshold = None,
) -> dict[str, Any]:
    photos = [state.photos.read("a", a), state.photos.read("b", b)]
    result = embed_images(state.model, [p.image for p in photos], faces=state.photos.faces)
    _refuse_failures(result, photos)
    for photo, found in zip(photos, result.faces_found):
        if found > 1:
            raise face_count_error(photo.label, found)
    outcome = verify(result.embeddings[0], result.embeddings[1], threshold, model=state.model)
    state.metrics.count_faces("verify", 2)
    a_face, b_face = (photo.face_dict(face) for photo, face in zip(photos, result.faces))
    return {**outcome.to_dict(), "a": a_face, "b": b_face, "model": state.model.name}


@router.post("/embed", response_model=EmbedOut, summary="Embeddings of every face in one or more photos")
def embed(
    state: State,
    _: Reader,
    images: Images,
    normalize: Annotated[bool, Query(description="L2-normalise the embeddings")] = True,
) -> dict[str, Any]:
    photos = state.photos.read_all("images", images)
    every_face = replace(state.photos.faces, all_faces=True)
    result = embed_images(state.model, [p.image for p in photos], normalize=normalize, faces=every_face)
    found: list[list[dict[str, Any]]] = [[] for _ in photos]  # a photo without a face lists none
    for row, (index, face) in enumerate(zip(result.indices, result.faces)):
        embedding = result.embeddings[row].tolist()
        found[index].append({**photos[index].face_dict(face), "embedding": embedding})
    failed = [f for f in result.failures if f.reason != NO_FACE]
    if failed:
        raise ImageError(photos[failed[0].index].label, failed[0].reason)
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
