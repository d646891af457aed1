"""``/v1/verify``, ``/v1/embed``, ``/v1/detect``: faces in uploaded photos, no gallery."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Query, UploadFile

from faceverify.embed import compute_embedding
from faceverify.service.deps import Reader, State
from faceverify.service.photos import DETECTOR, Photo
from faceverify.service.schemas import ERRORS, DetectOut, EmbedOut, VerifyOut
from faceverify.verification import verify

router = APIRouter(prefix="/v1", tags=["faces"], responses=ERRORS)

Threshold = Annotated[
    float | None,
    Query(ge=-1.0, le=1.0, description="cosine threshold; default: the model's (calibrated, else 0.5)"),
]
Images = Annotated[list[UploadFile], File(description="image files (JPEG, PNG, WebP...)")]


def photo_out(photo: Photo) -> dict[str, Any]:
    return {"image": photo.label, "width": photo.width, "height": photo.height}


@router.post("/verify", response_model=VerifyOut, summary="Are the faces of two photos the same person?")
def verify_pair(
    state: State,
    _: Reader,
    a: Annotated[UploadFile, File(description="a photo with one face")],
    b: Annotated[UploadFile, File(description="another photo with one face")],
    threshold: Threshold = None,
) -> dict[str, Any]:
    faces = [state.photos.read("a", a).one_face(), state.photos.read("b", b).one_face()]
    embeddings = compute_embedding(state.model, [face.chip for face in faces])
    outcome = verify(embeddings[0], embeddings[1], threshold, model=state.model)
    state.metrics.count_faces("verify", 2)
    return {**outcome.to_dict(), "a": faces[0].to_dict(), "b": faces[1].to_dict(), "model": state.model.name}


@router.post("/embed", response_model=EmbedOut, summary="Embeddings of every face in one or more photos")
def embed(
    state: State,
    _: Reader,
    images: Images,
    normalize: Annotated[bool, Query(description="L2-normalise the embeddings")] = True,
) -> dict[str, Any]:
    photos = state.photos.read_all("images", images)
    chips = [face.chip for photo in photos for face in photo.faces]
    rows = iter(compute_embedding(state.model, chips, normalize=normalize).tolist() if chips else [])
    state.metrics.count_faces("embed", len(chips))
    return {
        "model": state.model.name,
        "dim": state.model.embedding_dim,
        "normalized": normalize,
        "images": [
            {
                **photo_out(photo),
                "faces": [{**face.to_dict(), "embedding": next(rows)} for face in photo.faces],
            }
            for photo in photos
        ],
    }


@router.post("/detect", response_model=DetectOut, summary="Faces in photos: boxes, landmarks, scores")
def detect(state: State, _: Reader, images: Images) -> dict[str, Any]:
    photos = state.photos.read_all("images", images)
    state.metrics.count_faces("detect", sum(len(photo.faces) for photo in photos))
    return {
        "detector": DETECTOR,
        "images": [
            {**photo_out(photo), "faces": [face.to_dict() for face in photo.faces]} for photo in photos
        ],
    }
