"""The JSON the API answers with (and takes), as typed models for OpenAPI and checks."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str = Field(description="machine-readable kind, e.g. invalid_image, unknown_person")
    message: str = Field(description="what was wrong, naming the bad value")


class ErrorBody(BaseModel):
    error: ErrorDetail


class Box(BaseModel):
    left: float
    top: float
    right: float
    bottom: float


class FaceOut(BaseModel):
    box: Box = Field(description="in the uploaded image's pixels")
    score: float | None = Field(description="detector confidence; null without a detector")
    landmarks: list[tuple[float, float]] | None = Field(description="five (x, y) points, or null")


class PhotoOut(BaseModel):
    image: str = Field(description="form field and file name of the upload")
    width: int
    height: int


class VerifiedFace(FaceOut):
    faces_found: int = Field(description="faces in the photo (0 without detection); the largest counts")


class VerifyOut(BaseModel):
    score: float = Field(description="cosine similarity of the two faces, in [-1, 1]")
    threshold: float
    threshold_source: str = Field(
        description="where the threshold came from: given, calibrated, checkpoint, published or default"
    )
    same: bool = Field(description="score >= threshold")
    a: VerifiedFace
    b: VerifiedFace
    model: str


class EmbeddedFace(FaceOut):
    embedding: list[float]


class EmbeddedPhoto(PhotoOut):
    faces: list[EmbeddedFace]


class EmbedOut(BaseModel):
    model: str
    dim: int
    normalized: bool
    images: list[EmbeddedPhoto]


class DetectedPhoto(PhotoOut):
    faces: list[FaceOut]


class DetectOut(BaseModel):
    detector: str = Field(description="the face detector used: hog or cnn")
    images: list[DetectedPhoto]


class GalleryIn(BaseModel):
    name: str = Field(
        description="1-48 lower-case letters, digits, '_' or '-'", examples=["staff"], max_length=200
    )


class GalleryOut(BaseModel):
    name: str
    people: int
    model: str | None = Field(description="the model the gallery is bound to; null while empty")


class PersonOut(BaseModel):
    id: int = Field(
        description="the person's number in this gallery; remove by it with DELETE .../people?id="
    )
    name: str
    faces: int
    meta: dict[str, Any]
    created: str


class EnrollOut(BaseModel):
    name: str
    added: int
    skipped: list[str] = Field(description="images left out, with the reason")


class RemovedOut(BaseModel):
    removed: str
    faces: int


class MatchOut(BaseModel):
    name: str
    score: float


class IdentifiedFace(FaceOut):
    name: str | None = Field(description="the best match at or above the threshold; null: unknown")
    known: bool
    matches: list[MatchOut]


class IdentifyOut(BaseModel):
    image: PhotoOut
    threshold: float
    threshold_source: str = Field(
        description="where the threshold came from: given, calibrated, checkpoint, published or default"
    )
    faces: list[IdentifiedFace]


class VerifyIdOut(BaseModel):
    name: str
    score: float
    threshold: float
    threshold_source: str = Field(
        description="where the threshold came from: given, calibrated, checkpoint, published or default"
    )
    same: bool
    face: VerifiedFace


class AuditOut(BaseModel):
    seq: int
    time: str
    actor: str = Field(description="key:<id>, cli:<user>, no-key or library")
    action: str = Field(description="create, enrol, add, erase or delete")
    person_id: int | None
    faces: int


class KeyIn(BaseModel):
    scope: str = Field(description="read < enrol < write < admin (each includes the ones before)")
    gallery: str | None = Field(None, description="limit the key to this gallery")
    label: str = Field("", max_length=200, description="who holds the key")
    expires: str | None = Field(None, description="a duration (12h, 30d, 8w) or a date (2027-01-31)")


class KeyOut(BaseModel):
    id: str
    scope: str
    gallery: str | None
    created: str
    label: str
    expires: str | None


class NewKeyOut(KeyOut):
    key: str = Field(description="the key itself; shown only now, store it")


class Status(BaseModel):
    status: str
    model: str | None = None


#: Error answers every API route may give, for the OpenAPI document.
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (400, "unreadable request"),
        (401, "no valid API key"),
        (403, "the key may not do this (or, without keys, a foreign Origin or Host)"),
        (404, "unknown gallery or person"),
        (409, "already exists, or a gallery of another model"),
        (413, "too many or too large uploads"),
        (415, "an image format that is not decoded (allowed: JPEG, PNG, WebP, BMP, TIFF, GIF, PPM)"),
        (422, "invalid input: not an image, no face, bad name or value"),
        (503, "overloaded: model queue or decoding memory full (see Retry-After)"),
        (504, "timed out"),
    )
}
