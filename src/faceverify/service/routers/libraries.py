"""``/v1/libraries/{gallery}``: the photo library kept in a gallery, grouped by person.

Every call is one of :class:`faceverify.cluster.Library`'s own methods on the gallery the
service keeps open (so its faces are embedded by the service's model, through the batcher);
this module checks keys, folders and ids, and shapes the answers.

Scopes follow the galleries' (``read`` < ``enrol`` < ``write``): reading the library
needs ``read``; what only adds (naming a group enrols its faces, merging into a named group
enrols the newcomers, a grouping run) needs ``enrol``; what may take enrolled faces away
from a gallery person (split, move, "not this person", a scan that finds photos gone or
changed) needs ``write``. Writes to one gallery are serialised as the galleries' are.

Scanning reads the server's files, so a folder is scanned only inside the roots the
operator configured (``library_roots``), checked after ``..`` and links are resolved.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path as FilePath
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from faceverify.errors import ForbiddenError, InvalidFieldError
from faceverify.gallery.base import Change
from faceverify.service.deps import Enroller, Gate, Reader, State, Writer, actor, read_access
from faceverify.service.library_schemas import (
    LIBRARY_ERRORS,
    ExportOut,
    GroupingIn,
    GroupingOut,
    GroupOut,
    LibraryFaceOut,
    MergeIn,
    MovedOut,
    MoveIn,
    NamedOut,
    NameIn,
    RejectedOut,
    RejectIn,
    ScanIn,
    ScanOut,
    SplitIn,
    SplitOut,
)
from faceverify.service.routers.galleries import GalleryName
from faceverify.service.routers.galleries import _person as person_name

if TYPE_CHECKING:
    from faceverify.cluster.library import Library
    from faceverify.gallery.gallery import Gallery
    from faceverify.service.keys import ApiKey
    from faceverify.service.middleware import WriteGate
    from faceverify.service.state import ServiceState

router = APIRouter(
    prefix="/v1/libraries", tags=["libraries"], responses=LIBRARY_ERRORS, dependencies=[Depends(read_access)]
)

GroupId = Annotated[int, Path(ge=1, le=2**63 - 1, description="a group's id, from the groups list")]
FaceId = Annotated[int, Path(ge=1, le=2**63 - 1, description="a face's id, from a faces list")]


def _library(gallery: Gallery, key: ApiKey | None = None, *, writing: bool = False) -> Library:
    """The library in ``gallery``; its corrections are audited as the request's key. Read
    routes open it read-only: a read key never makes its tables or binds the gallery.

    No request key (Idempotency-Key) travels with it: a correction is several writes, and a
    replayed enrolment would not replay the library's own."""
    from faceverify.cluster.library import Library

    return Library(gallery, change=Change(actor=actor(key)), create=writing)


@contextlib.contextmanager
def _writing(state: ServiceState, gate: WriteGate, gallery: str, key: ApiKey | None) -> Iterator[Library]:
    """The library, with the gallery's other writers in this process kept out meanwhile."""
    with state.galleries.writing(gallery) as opened, gate.writing():
        yield _library(opened, key, writing=True)


def _groups(library: Library, *ids: int) -> list[GroupOut]:
    """These groups as they are now, in the order asked."""
    return [GroupOut(**library.group_info(group).to_dict()) for group in ids]


def _scan_folder(roots: tuple[str, ...], folder: str) -> FilePath:
    """``folder`` resolved (``..`` and links followed), if it lies inside one of ``roots``."""
    if not roots:
        raise ForbiddenError(
            "this service scans no folders: the operator has configured no library roots; set the "
            'service setting library_roots (e.g. "library_roots": ["/srv/photos"]) to the folders '
            "whose photos clients may scan",
            code="scan_not_allowed",
        )
    given = FilePath(folder)
    if not given.is_absolute():
        raise InvalidFieldError(
            f"folder {folder!r} is not an absolute path; give the server folder to scan, inside "
            "one of the library roots",
            code="invalid_folder",
        )
    try:
        resolved = given.resolve()
        bases = [FilePath(root).expanduser().resolve() for root in roots]
    except (OSError, RuntimeError, ValueError) as exc:  # a link loop, a NUL byte
        raise InvalidFieldError(
            f"folder {folder!r} cannot be resolved: {exc}", code="invalid_folder"
        ) from None
    if not any(resolved.is_relative_to(base) for base in bases):
        raise ForbiddenError(
            f"folder {folder!r} (with '..' and links resolved) is outside the library roots this "
            "service may scan",
            code="outside_library_roots",
        )
    return resolved


# ---- reading ---------------------------------------------------------------------------


@router.get("/{gallery}/groups", summary="Groups of faces, largest first")
def list_groups(
    state: State,
    _: Reader,
    gallery: GalleryName,
    sample: Annotated[int, Query(ge=0, le=64, description="face ids per group, best quality first")] = 8,
) -> list[GroupOut]:
    library = _library(state.galleries.get(gallery))
    return [GroupOut(**info.to_dict()) for info in library.groups(sample=sample)]


@router.get("/{gallery}/groups/{group}/faces", summary="The faces of one group, best quality first")
def group_faces(state: State, _: Reader, gallery: GalleryName, group: GroupId) -> list[LibraryFaceOut]:
    library = _library(state.galleries.get(gallery))
    faces = library.faces(group)
    return [LibraryFaceOut(**face.to_dict()) for face in faces]


@router.get("/{gallery}/faces", summary="Every face of the library, or those in no group")
def list_faces(
    state: State,
    _: Reader,
    gallery: GalleryName,
    ungrouped: Annotated[bool, Query(description="only faces in no group (alone, or too poor)")] = False,
) -> list[LibraryFaceOut]:
    library = _library(state.galleries.get(gallery))
    return [LibraryFaceOut(**face.to_dict()) for face in library.faces(ungrouped=ungrouped)]


@router.get(
    "/{gallery}/faces/{face}/image",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}, "description": "a square JPEG of the face"}},
    summary="A face's thumbnail, cut from its photo",
)
def face_image(
    state: State,
    _: Reader,
    gallery: GalleryName,
    face: FaceId,
    size: Annotated[int, Query(ge=16, le=512, description="the side in pixels")] = 112,
) -> Response:
    data = _library(state.galleries.get(gallery)).face_crop(face, size=size)
    return Response(data, media_type="image/jpeg")  # no-store, as every answer with faces


@router.get("/{gallery}/export", summary="Every photo with its faces and who they are")
def export(state: State, _: Reader, gallery: GalleryName) -> ExportOut:
    return ExportOut(**_library(state.galleries.get(gallery)).export())


# ---- building --------------------------------------------------------------------------


@router.post("/{gallery}/scan", summary="Read new and changed photos of a server folder")
def scan(state: State, key: Writer, gate: Gate, gallery: GalleryName, body: ScanIn) -> ScanOut:
    """Only inside the operator's ``library_roots``. Photos gone from the folder leave the
    library (their faces leave a named person too: hence the ``write`` scope)."""
    folder = _scan_folder(state.settings.library_roots, body.folder)
    with _writing(state, gate, gallery, key) as library:
        report = library.scan(folder, confine=True)
    state.metrics.count_faces("library_scan", report.faces_added)
    return ScanOut(**report.to_dict())


@router.post("/{gallery}/group", summary="Group the faces by person (corrections hold)")
def run_grouping(
    state: State, key: Enroller, gate: Gate, gallery: GalleryName, body: GroupingIn
) -> GroupingOut:
    with _writing(state, gate, gallery, key) as library:
        report = library.group(full=body.full)
    return GroupingOut(**report.to_dict())


# ---- corrections -----------------------------------------------------------------------


@router.post("/{gallery}/groups/{group}/name", summary="Name a group: its faces become a gallery person")
def name_group(
    state: State, key: Enroller, gate: Gate, gallery: GalleryName, group: GroupId, body: NameIn
) -> NamedOut:
    name = person_name(body.name)
    with _writing(state, gate, gallery, key) as library:
        enrolled = library.name(group, name)
        (info,) = _groups(library, group)
    return NamedOut(group=info, enrolled=enrolled)


@router.post("/{gallery}/merge", summary="Merge groups into one")
def merge(state: State, key: Enroller, gate: Gate, gallery: GalleryName, body: MergeIn) -> GroupOut:
    """A named group among them keeps its name and id (its person gains the others' faces)."""
    with _writing(state, gate, gallery, key) as library:
        survivor = library.merge(body.target, body.others)
        (info,) = _groups(library, survivor)
    return info


@router.post("/{gallery}/groups/{group}/split", summary="Split faces off a group into a new group")
def split(
    state: State, key: Writer, gate: Gate, gallery: GalleryName, group: GroupId, body: SplitIn
) -> SplitOut:
    with _writing(state, gate, gallery, key) as library:
        new = library.split(group, body.faces)
        kept, made = _groups(library, group, new)
    return SplitOut(group=kept, new=made)


@router.post("/{gallery}/faces/{face}/move", summary="Put a face in a group (or a new one) for good")
def move(state: State, key: Writer, gate: Gate, gallery: GalleryName, face: FaceId, body: MoveIn) -> MovedOut:
    with _writing(state, gate, gallery, key) as library:
        target = library.move(face, body.group)
        (info,) = _groups(library, target)
    return MovedOut(face=face, group=info)


@router.post("/{gallery}/faces/{face}/reject", summary='"Not this person": a face leaves a group for good')
def reject(
    state: State, key: Writer, gate: Gate, gallery: GalleryName, face: FaceId, body: RejectIn
) -> RejectedOut:
    with _writing(state, gate, gallery, key) as library:
        library.reject(face, body.group)
        (info,) = _groups(library, body.group)
    return RejectedOut(face=face, group=info)
