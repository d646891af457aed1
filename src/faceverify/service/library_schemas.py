"""The JSON of ``/v1/libraries``: a gallery's photo library, its groups and corrections."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field

from faceverify.service.schemas import ERRORS, Box, ErrorBody

#: A group's or a face's id (the library's tables count from 1, in 64 bits).
Id = Annotated[int, Field(ge=1, le=2**63 - 1)]

#: Error answers of the library's routes, for the OpenAPI document.
LIBRARY_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    403: {
        "model": ErrorBody,
        "description": "the key may not do this, or a folder outside the library roots",
    },
    404: {"model": ErrorBody, "description": "unknown gallery, group or face"},
    409: {
        "model": ErrorBody,
        "description": "a correction that contradicts an earlier one (the message names both), "
        "or a gallery of another model",
    },
}


class GroupOut(BaseModel):
    id: int
    name: str | None = Field(description="the gallery person the group was named as; null: unnamed")
    faces: int = Field(description="how many faces the group holds")
    anchored: bool = Field(description="shaped by a correction: it keeps its id and never merges by itself")
    sample: list[int] = Field(description="a few of its face ids, best quality first (for thumbnails)")


class LibraryFaceOut(BaseModel):
    id: int
    photo: str = Field(description="the photo's path on the server")
    box: Box = Field(description="in the photo's pixels")
    quality: float = Field(description="0 to 1; faces below the library's minimum are not grouped")
    group: int | None = Field(description="its group; null: alone, or too poor to group")
    pinned: bool = Field(description="placed by a correction: no grouping run moves it")


class ExportFace(BaseModel):
    id: int
    box: Box
    quality: float
    group: int | None
    person: str | None = Field(description="its group's name, if named")


class ExportPhoto(BaseModel):
    path: str
    width: int
    height: int
    status: str = Field(description="ok, no_face or failed")
    reason: str = Field(description="why a photo holds no faces (empty when ok)")
    faces: list[ExportFace]


class ExportOut(BaseModel):
    photos: list[ExportPhoto]
    groups: list[GroupOut]


class ScanIn(BaseModel):
    folder: str = Field(
        description="an absolute folder path on the server, inside one of the roots the operator "
        "configured (library_roots)",
        max_length=4096,
    )


class FailedPhoto(BaseModel):
    path: str
    reason: str


class ScanOut(BaseModel):
    folder: str
    photos: int = Field(description="image files found in the folder")
    new: int
    changed: int
    unchanged: int
    removed: int = Field(description="photos gone from the folder, and their faces")
    duplicates: int
    no_face: int
    faces_added: int
    failed: list[FailedPhoto]


class GroupingIn(BaseModel):
    full: bool = Field(
        False,
        description="group every face again (corrections hold); false: place new and lone faces only",
    )


class GroupingOut(BaseModel):
    mode: str = Field(description="add or full")
    faces: int
    grouped: int
    alone: int
    poor: int = Field(description="faces too poor to group")
    groups: int
    named: int
    seconds: float
    thresholds: dict[str, Any]
    common: float = Field(description="the mean cosine of two faces of the library")


class NameIn(BaseModel):
    name: str = Field(description="the person's name; the group becomes this gallery person", max_length=400)


class NamedOut(BaseModel):
    group: GroupOut
    enrolled: int = Field(description="faces enrolled into the gallery by this naming")


class MergeIn(BaseModel):
    target: Id = Field(description="the group the others join (a named group among them keeps its name)")
    others: list[Id] = Field(description="the groups that join it", min_length=1, max_length=1000)


class SplitIn(BaseModel):
    faces: list[Id] = Field(
        description="faces of the group that leave for a new group", min_length=1, max_length=10_000
    )


class SplitOut(BaseModel):
    group: GroupOut = Field(description="the group split, with the faces that stayed")
    new: GroupOut = Field(description="the new group, kept apart from it")


class MoveIn(BaseModel):
    group: Id | None = Field(description="the group the face belongs in; null: a new group of its own")


class RejectIn(BaseModel):
    group: Id = Field(description="the group whose person the face is not")


class MovedOut(BaseModel):
    face: int
    group: GroupOut = Field(description="the group the face is in now, for good")


class RejectedOut(BaseModel):
    face: int
    group: GroupOut = Field(description="the group the face is not (and never joins again), after it left")
