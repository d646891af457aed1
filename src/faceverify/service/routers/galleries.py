"""``/v1/galleries``: create, list and delete galleries; enrol, list, identify, verify people.

Every call is one of :class:`faceverify.gallery.Gallery`'s own methods; this module
reads the uploads, checks names, and shapes the answers.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Path, Query, Request, Response, UploadFile

from faceverify.errors import (
    ForbiddenError,
    GalleryError,
    GalleryNotEmptyError,
    ImageError,
    InvalidFieldError,
    UnknownPersonError,
)
from faceverify.gallery.base import check_name
from faceverify.gallery.catalog import check_gallery_name
from faceverify.gallery.gallery import EnrollResult
from faceverify.runtime.threshold import resolve_threshold
from faceverify.service.deps import Admin, Enroller, Gate, Reader, State, Writer, change_of, read_access
from faceverify.service.middleware import WriteGate
from faceverify.service.routers.faces import Images, Threshold
from faceverify.service.schemas import (
    ERRORS,
    AuditOut,
    EnrollOut,
    GalleryIn,
    GalleryOut,
    IdentifyOut,
    PersonOut,
    RemovedOut,
    VerifyIdOut,
)
from faceverify.service.state import ServiceState
from faceverify.service.uploads import Photo

# every route needs a key (read at least) even if its own parameters forgot to ask
router = APIRouter(
    prefix="/v1/galleries", tags=["galleries"], responses=ERRORS, dependencies=[Depends(read_access)]
)


GalleryName = Annotated[str, Path(description="the gallery's name", max_length=200)]
PersonName = Annotated[str, Path(description="the person's name", max_length=400)]
TopK = Annotated[int, Query(ge=1, le=100, description="best matches to return per face")]


def _person(name: str) -> str:
    """A person's name as the library checks it (never '.', '..' or a slash: it must
    travel as one URL path segment), or a 422 saying why."""
    try:
        return check_name(name)
    except GalleryError as exc:
        raise InvalidFieldError(str(exc), code="invalid_name") from None


def _meta(text: str | None) -> dict[str, Any] | None:
    if text is None or not text.strip():
        return None
    try:
        meta = json.loads(text)
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise InvalidFieldError('meta must be a JSON object, e.g. {"team": "blue"}', code="invalid_json")
    return meta


def _fingerprint(*parts: str, uploads: list[UploadFile]) -> str:
    """What a write request held (its fields and every upload's bytes), as one hash: the
    same Idempotency-Key with other content is refused, not replayed."""
    digest = hashlib.sha256("\x00".join(parts).encode("utf-8"))
    for upload in uploads:
        upload.file.seek(0)
        while chunk := upload.file.read(1 << 20):
            digest.update(hashlib.sha256(chunk).digest())
    return digest.hexdigest()


def _enrolled(
    state: ServiceState, gate: WriteGate, gallery: str, person: str, photos: list[Photo], **options: Any
) -> EnrollResult:
    """Embed the photos, then store them: only the store is the write, under the gate.

    Every photo must give its face: one without a face is a 422 ``no_face``, one with
    several a 422 ``several_faces`` naming them (enrolment's policy), before anything is
    written."""
    opened = state.galleries.get(gallery)
    faces, failures = opened.embed_faces([photo.image for photo in photos])
    for failure in failures:
        raise failure.as_error().renamed(photos[failure.index].label)
    with state.galleries.writing(gallery) as opened, gate.writing():
        result = opened.store_faces(person, faces, [], **options)
    state.metrics.count_faces("enroll", result.added)
    return result


def _answer(result: EnrollResult, response: Response) -> dict[str, Any]:
    if result.replayed:  # a retry with a known Idempotency-Key: nothing was written again
        response.headers["Idempotent-Replayed"] = "true"
    return result.to_dict()


def _summary(state: ServiceState, name: str) -> dict[str, Any]:
    with state.galleries.catalog.open(name) as store:  # its own connection: works for any model
        manifest = store.manifest()
        return {"name": name, "people": len(store.people()), "model": manifest["model"] if manifest else None}


@router.get("", response_model=list[GalleryOut], summary="Galleries this key may use")
def list_galleries(state: State, key: Reader) -> list[dict[str, Any]]:
    names = [n for n in state.galleries.names() if key is None or key.gallery in (None, n)]
    return [_summary(state, name) for name in names]


@router.post("", response_model=GalleryOut, status_code=201, summary="Create an empty gallery")
def create_gallery(state: State, key: Admin, gate: Gate, body: GalleryIn, request: Request) -> dict[str, Any]:
    name = check_gallery_name(body.name)
    if key is not None and not key.allows("admin", name):
        raise ForbiddenError("this API key is not valid for this gallery")
    with gate.writing():
        state.galleries.create(name, change=change_of(request, key))
    return {"name": name, "people": 0, "model": None}


@router.get("/{gallery}", response_model=GalleryOut, summary="One gallery: people count and model")
def get_gallery(state: State, _: Reader, gallery: GalleryName) -> dict[str, Any]:
    return _summary(state, check_gallery_name(gallery))


@router.delete("/{gallery}", status_code=204, summary="Delete a gallery and everyone in it")
def delete_gallery(
    state: State,
    key: Admin,
    gate: Gate,
    request: Request,
    gallery: GalleryName,
    force: Annotated[bool, Query(description="needed when people are enrolled in it")] = False,
) -> Response:
    """A gallery with people in it goes only with ``?force=true``: a person's removal URL
    that a client shortened to the gallery's own path (``.../people/..``) cannot wipe it."""
    name = check_gallery_name(gallery)
    if not force:
        people = _summary(state, name)["people"]
        if people:
            raise GalleryNotEmptyError(
                f"gallery {name!r} holds {people} people; delete it with ?force=true, "
                "or remove people with DELETE .../people?id="
            )
    with gate.writing():
        state.galleries.delete(name, change=change_of(request, key))
    return Response(status_code=204)


@router.get("/{gallery}/people", response_model=list[PersonOut], summary="Everyone enrolled")
def list_people(state: State, _: Reader, gallery: GalleryName) -> list[dict[str, Any]]:
    return [person.to_dict() for person in state.galleries.get(gallery).people()]


@router.post("/{gallery}/people", response_model=EnrollOut, status_code=201, summary="Enrol a new person")
def enroll(
    state: State,
    key: Enroller,
    gate: Gate,
    request: Request,
    response: Response,
    gallery: GalleryName,
    name: Annotated[str, Form(description="the person's name (unique in the gallery)", max_length=400)],
    images: Images,
    meta: Annotated[str | None, Form(description='metadata as a JSON object, e.g. {"team": "blue"}')] = None,
) -> dict[str, Any]:
    """A new person only: a name already enrolled is a 409, decided in the gallery's own
    transaction (so two workers enrolling the same name at once make one person). Send an
    ``Idempotency-Key`` header to make a retry safe: the same key returns the first answer."""
    person, extra = _person(name), _meta(meta)
    state.galleries.get(gallery)  # unknown gallery or model: say so before reading photos
    change = change_of(request, key, _fingerprint("enrol", gallery, person, meta or "", uploads=images))
    photos = state.photos.read_all("images", images)
    result = _enrolled(state, gate, gallery, person, photos, meta=extra, create=True, change=change)
    return _answer(result, response)


@router.post("/{gallery}/people/{name}/faces", response_model=EnrollOut, summary="Add photos of a person")
def add_faces(
    state: State,
    key: Enroller,
    gate: Gate,
    request: Request,
    response: Response,
    gallery: GalleryName,
    name: PersonName,
    images: Images,
) -> dict[str, Any]:
    """Photos of someone enrolled (404 otherwise: never a silent new enrolment)."""
    person = _person(name)
    state.galleries.get(gallery)
    change = change_of(request, key, _fingerprint("add", gallery, person, uploads=images))
    photos = state.photos.read_all("images", images)
    result = _enrolled(state, gate, gallery, person, photos, meta=None, create=False, change=change)
    return _answer(result, response)


@router.get("/{gallery}/people/{name}", response_model=PersonOut, summary="One enrolled person")
def get_person(state: State, _: Reader, gallery: GalleryName, name: PersonName) -> dict[str, Any]:
    person = _person(name)
    for info in state.galleries.get(gallery).people():
        if info.name == person:
            return info.to_dict()
    raise UnknownPersonError(f"no person named {person!r} in gallery {gallery!r}")


@router.delete(
    "/{gallery}/people/{name}", response_model=RemovedOut, summary="Remove a person and their faces"
)
def remove_person(
    state: State, key: Writer, gate: Gate, request: Request, gallery: GalleryName, name: PersonName
) -> dict[str, Any]:
    person = _person(name)
    with state.galleries.writing(gallery) as opened, gate.writing():
        faces = opened.remove(person, change=change_of(request, key))
    return {"removed": person, "faces": faces}


@router.delete(
    "/{gallery}/people",
    response_model=RemovedOut,
    summary="Remove a person by id (as listed), whatever their name holds",
)
def remove_person_by_id(
    state: State,
    key: Writer,
    gate: Gate,
    request: Request,
    gallery: GalleryName,
    person_id: Annotated[int, Query(alias="id", ge=1, description="the person's id, from the people list")],
) -> dict[str, Any]:
    with state.galleries.writing(gallery) as opened, gate.writing():
        name, faces = opened.remove_id(person_id, change=change_of(request, key))
    return {"removed": name, "faces": faces}


@router.get("/{gallery}/audit", response_model=list[AuditOut], summary="Who changed what, oldest first")
def audit(
    state: State,
    _: Admin,
    gallery: GalleryName,
    after: Annotated[int, Query(ge=0, description="entries after this seq")] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000, description="entries at most")] = 1000,
) -> list[dict[str, Any]]:
    """The gallery's audit log: person ids, never names (an erased person stays unnamed)."""
    return [entry.to_dict() for entry in state.galleries.get(gallery).audit(after=after, limit=limit)]


@router.post("/{gallery}/identify", response_model=IdentifyOut, summary="Who is each face in a photo?")
def identify(
    state: State,
    _: Reader,
    gallery: GalleryName,
    image: Annotated[UploadFile, File(description="a photo; every face in it is identified")],
    top_k: TopK = 5,
    threshold: Threshold = None,
) -> dict[str, Any]:
    opened = state.galleries.get(gallery)
    photo = state.photos.read("image", image)
    try:
        found = opened.identify_faces(photo.image, top_k=top_k, threshold=threshold)
    except ImageError as exc:  # named as the upload (a photo without faces is "no_face")
        raise exc.renamed(photo.label) from None
    faces = [{**who.to_dict(), **photo.face_dict(who.face)} for who in found]
    state.metrics.count_faces("identify", len(faces))
    return {"image": photo.to_dict(), **resolve_threshold(threshold, state.model).to_fields(), "faces": faces}


@router.post(
    "/{gallery}/verify/{name}", response_model=VerifyIdOut, summary="Is the face in a photo this person?"
)
def verify_person(
    state: State,
    _: Reader,
    gallery: GalleryName,
    name: PersonName,
    image: Annotated[UploadFile, File(description="a photo of the face (the largest face counts)")],
    threshold: Threshold = None,
) -> dict[str, Any]:
    """A photo with several faces gives its largest (``face.faces_found`` says how many),
    as for ``/v1/verify``."""
    person = _person(name)
    opened = state.galleries.get(gallery)
    photo = state.photos.read("image", image)
    try:
        outcome, probe = opened.verify_face(person, photo.image, threshold=threshold)
    except ImageError as exc:
        raise exc.renamed(photo.label) from None
    state.metrics.count_faces("verify_id", 1)
    face = {**photo.face_dict(probe.face), "faces_found": probe.faces_found}
    return {"name": person, **outcome.to_dict(), "face": face}
