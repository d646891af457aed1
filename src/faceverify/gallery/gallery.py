"""The gallery users work with: enrol images, identify faces, verify claimed identities.

:class:`Gallery` puts a model in front of a :class:`GalleryStore`: it decodes and embeds
images, records which model (name, weights hash, preprocessing) the gallery belongs to,
and refuses another model with a clear error rather than returning wrong matches.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceverify.errors import ConfigError, FailureKind, GalleryError, UnknownPersonError
from faceverify.gallery.base import (
    LIBRARY_ACTOR,
    AuditEntry,
    Change,
    Duplicate,
    GalleryStore,
    Match,
    PersonInfo,
    StoredFace,
    check_match,
    check_name,
    check_vectors,
    embedded_faces,
    nothing_enrolled,
    same_model,
)
from faceverify.paths import data_dir, open_private
from faceverify.photos import FaceOptions, SeveralFaces

if TYPE_CHECKING:
    from faceverify.compare.verification import Verification
    from faceverify.embed import Failure
    from faceverify.faces.detect import Face as DetectedFace
    from faceverify.gallery.bulk import BulkEnrollResult, PersonOutcome
    from faceverify.runtime.base import Embedder
    from faceverify.runtime.threshold import Threshold

EXPORT_FORMAT = "faceverify-gallery/1"


def default_location() -> Path:
    """Where a gallery lives when no ``--db`` is given."""
    return data_dir() / "gallery"


def open_store(db: str | Path | None = None) -> GalleryStore:
    """The store behind ``db``: a folder path (embedded) or a ``postgresql://`` URL."""
    location = str(db) if db is not None else str(default_location())
    if location.startswith(("postgresql://", "postgres://")):
        from faceverify.gallery.postgres import PostgresStore

        return PostgresStore(location)
    from faceverify.gallery.sqlite import SQLiteStore

    return SQLiteStore(location)


def open_gallery(
    db: str | Path | None = None,
    model: Embedder | None = None,
    *,
    match: str = "best",
    faces: FaceOptions | None = None,
) -> Gallery:
    """Open (or create) a gallery.

    Args:
        db: a folder for the embedded gallery (default ``~/.local/share/faceverify/gallery``)
            or a ``postgresql://`` URL (needs ``pip install 'faceverify[postgres]'``).
        model: the embedding model; None builds the default one. A gallery keeps the
            model it was first used with and refuses others.
        match: ``best`` (best single face per person) or ``centroid`` (mean of their faces).
        faces: how faces are found in photos (default: as the model needs, see
            :class:`~faceverify.photos.FaceOptions`); its ``several`` policy applies to
            enrolment (default ``refuse``: a photo with several faces is refused);
            identification and verification take the largest face, or every face with
            :meth:`Gallery.identify_faces`.
    """
    if model is None:
        from faceverify.runtime.build import build_model

        model = build_model()
    return Gallery(open_store(db), model, match=match, faces=faces)


def model_manifest(model: Embedder) -> dict[str, Any]:
    """What a gallery records about its model; all of it must match to use the gallery."""
    if not model.weights_sha256():  # any runtime reports the hash of the weights it runs
        raise GalleryError("a gallery needs a model with saved weights; random weights change every run")
    return {**model.identity().to_dict(), "preprocess": model.preprocess.to_dict()}


@dataclass
class EnrollResult:
    """What enrolment stored for one person and which images it left out, and why."""

    name: str
    added: int
    skipped: list[str] = field(default_factory=list)
    #: True when a request key had been seen: nothing was written, the first answer is back
    replayed: bool = False
    #: the images the store refused as enrolled already (also among ``skipped``)
    duplicates: list[Duplicate] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "added": self.added, "skipped": self.skipped}


@dataclass
class Identification:
    """The best gallery matches of a face, and who it is judged to be.

    Attributes:
        matches: up to ``top_k`` people, best first, with cosine similarities.
        threshold: the decision threshold used, and where it came from.
        face: the face answered for (None when the image was taken whole).
        name: the best match when its score reaches the threshold, else None (unknown).
    """

    matches: list[Match]
    threshold: Threshold
    face: DetectedFace | None = None

    @property
    def name(self) -> str | None:
        if self.matches and self.matches[0].score >= self.threshold.value:
            return self.matches[0].name
        return None

    def to_dict(self) -> dict[str, Any]:
        """``name``, ``known``, ``threshold``, ``threshold_source``, ``matches``, and the
        face's ``box``/``score``/``landmarks`` when one was detected."""
        data: dict[str, Any] = {
            "name": self.name,
            "known": self.name is not None,
            **self.threshold.to_fields(),
            "matches": [{"name": m.name, "score": m.score} for m in self.matches],
        }
        return {**data, **self.face.to_dict()} if self.face is not None else data


class Gallery:
    """Enrolled people and their face embeddings, searchable by face.

    Use it as a context manager (``with open_gallery(db) as gallery:``) so its store is
    closed (connections, index threads) when the block ends.

    Args:
        store: where the gallery lives (see :func:`open_store`).
        model: the embedding model; the gallery records it on first enrolment and refuses
            any other afterwards.
        match: how a person's several faces are compared with a probe: ``best`` (the best
            single face; robust to varied photos, the default) or ``centroid`` (their mean
            direction; steadier when a person has many similar photos).
    """

    def __init__(
        self,
        store: GalleryStore,
        model: Embedder,
        *,
        match: str = "best",
        faces: FaceOptions | None = None,
        actor: str = LIBRARY_ACTOR,
    ) -> None:
        self.store = store
        self.actor = actor  # who the audit log names for writes that do not say
        self.model = model
        self.faces = faces or FaceOptions()
        self.match = check_match(match)
        self._manifest = model_manifest(model)
        recorded = store.manifest()
        if recorded is not None:
            same_model(recorded, self._manifest)
        self._bound = recorded is not None  # bound galleries are not written to on every enrolment

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the store (its connections and index threads)."""
        self.store.close()

    def has_person(self, name: str) -> bool:
        """Whether someone of this name is enrolled (one indexed lookup of their faces, not
        a read of every person: galleries hold millions)."""
        try:
            self.store.faces_of(check_name(name))
        except UnknownPersonError:
            return False
        return True

    def enroll(
        self,
        name: str,
        images: list[Any],
        meta: dict[str, Any] | None = None,
        *,
        create: bool | None = None,
        change: Change | None = None,
    ) -> EnrollResult:
        """Add a person with images, or images to an enrolled person, atomically.

        Unreadable images, images without a face and images already enrolled are skipped
        and reported; if none is left for a new person, nothing is stored and an error says
        why. A photo with several faces follows the gallery's policy (``refuse`` unless
        chosen otherwise: nothing is stored and the error names the faces found).

        Args:
            create: True: only a new person (``PersonExistsError`` if the name is taken,
                even by another process at the same moment); False: only someone enrolled.
            change: who enrols (for the audit log) and a request key making a retry safe.
        """
        person = check_name(name)
        faces, failures = self.embed_faces(images)
        return self.store_faces(person, faces, [str(f) for f in failures], meta, create=create, change=change)

    def embed_faces(self, images: list[Any]) -> tuple[list[StoredFace], list[Failure]]:
        """The faces to store for these images, and the images left out and why: the slow
        half of :meth:`enroll`, which writes nothing.

        Raises:
            SeveralFacesError: a photo shows several faces and the policy is ``refuse``.
        """
        from faceverify.embed import embed_images

        options = self.enrol_options()
        embedded = embed_images(self.model, images, normalize=True, faces=options, fingerprint=True)
        refused = [f for f in embedded.failures if f.kind is FailureKind.SEVERAL_FACES]
        if refused and options.policy is SeveralFaces.REFUSE:
            raise refused[0].as_error()
        # an image without a face (or skipped for its several faces) is left out like an unreadable one
        return embedded_faces(embedded), embedded.failures

    def enrol_options(self) -> FaceOptions:
        """How enrolment finds faces: the gallery's options with enrolment's policy
        (``refuse`` unless chosen); ``all`` is refused, as one photo gives one face."""
        options = self.faces.for_job("enroll")
        if options.applies_to(self.model) and options.policy is SeveralFaces.ALL:
            raise ConfigError(
                "enrolment takes one face per photo; for photos with several faces choose "
                "refuse (the default), skip or largest"
            )
        return options

    def enroll_many(
        self,
        people: str | Path | Mapping[str, Sequence[Any]],
        *,
        meta: dict[str, Any] | None = None,
        existing: str = "skip",
        batch_size: int = 32,
        progress: bool | None = None,
        on_person: Callable[[PersonOutcome], None] | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> BulkEnrollResult:
        """Enrol many people: a folder with one sub-folder per person, or ``{name: images}``.

        Images of several people are embedded together in full batches; each person is
        stored in one transaction, all their faces or none. People already in the gallery
        are skipped (``existing="skip"``, the default), so a run that was interrupted is
        resumed by running it again; ``existing="add"`` adds new images to them instead.
        Bad images are skipped and reported (unreadable, no face, already enrolled); they
        never cost a person their good images. A photo with several faces follows the
        gallery's policy: ``refuse`` (the default) fails that person alone, naming the
        photo and its faces; ``skip`` leaves the photo out; ``largest`` uses its largest.

        Args:
            people: a folder (each sub-folder is a person named after it; its images are
                found recursively) or a mapping of names to images (any input
                :func:`~faceverify.embed.embed_images` takes).
            meta: metadata stored with every person enrolled.
            existing: ``skip`` (resume-friendly) or ``add``.
            batch_size: images per forward pass; 32-64 on CPUs, 128-512 on GPUs.
            progress: a progress bar of people on stderr; None shows it on a terminal only.
            on_person: called after each person with what happened to them.
            rank, world_size: under ``torchrun``, each rank takes every ``world_size``-th
                person (by sorted name) from ``rank`` on.

        Returns:
            what happened to each person, and every image left out with the reason.
        """
        from faceverify.gallery.bulk import enroll_many

        return enroll_many(
            self,
            people,
            meta=meta,
            existing=existing,
            batch_size=batch_size,
            progress=progress,
            on_person=on_person,
            share=(rank, world_size),
        )

    def bind(self) -> None:
        """Record this gallery's model now (it is recorded on first enrolment otherwise)."""
        if not self._bound:
            self.store.bind(self._manifest)
            self._bound = True

    def store_faces(
        self,
        person: str,
        faces: list[StoredFace],
        skipped: list[str],
        meta: dict[str, Any] | None,
        *,
        create: bool | None = None,
        change: Change | None = None,
    ) -> EnrollResult:
        """Store embedded faces of one person in one transaction (binding the model first)."""
        if not faces:
            raise nothing_enrolled(person, skipped)
        self.bind()
        result = self.store.add(person, faces, meta, create=create, change=change or Change(self.actor))
        refused = [str(d) for d in result.skipped]
        if result.replayed:
            return EnrollResult(person, result.added, refused, replayed=True, duplicates=result.skipped)
        return EnrollResult(person, result.added, skipped + refused, duplicates=result.skipped)

    def identify(self, image: Any, *, top_k: int = 5, threshold: float | None = None) -> Identification:
        """Who is this? The ``top_k`` best matches, and a name only above the threshold.

        One answer, for the largest face of a photo with several (with a warning);
        :meth:`identify_faces` answers for every face.
        """
        from faceverify.runtime.threshold import resolve_threshold

        if top_k < 1:
            raise GalleryError(f"top_k {top_k!r} must be at least 1")
        query = self._probe(image).vector
        return Identification(
            self.store.search(query, top_k, self.match), resolve_threshold(threshold, self.model)
        )

    def identify_faces(
        self, image: Any, *, top_k: int = 5, threshold: float | None = None, several: str | None = None
    ) -> list[Identification]:
        """Who is each face of a photo? One answer per face found (largest first), each
        with its box; faces below the threshold are unknown. A model that takes plain
        crops, with detection off, answers once for the whole image.

        Args:
            several: ``all`` (default) answers for every face; ``largest`` for the largest
                only; ``refuse``/``skip`` raise SeveralFacesError for a group photo. (The
                gallery's own policy for several faces is enrolment's.)

        Raises:
            ImageError: the image cannot be read (NoFaceError: it holds no face).
        """
        from faceverify.embed import embed_images
        from faceverify.runtime.threshold import resolve_threshold

        if top_k < 1:
            raise GalleryError(f"top_k {top_k!r} must be at least 1")
        options = replace(self.faces, several=several).for_job("identify")
        result = embed_images(self.model, [image], normalize=True, faces=options)
        if result.failures:
            raise result.failures[0].as_error()
        chosen = resolve_threshold(threshold, self.model)
        return [
            Identification(self.store.search(vector, top_k, self.match), chosen, face)
            for vector, face in zip(result.embeddings, result.faces)
        ]

    def verify_id(self, name: str, image: Any, *, threshold: float | None = None) -> Verification:
        """Is this really ``name``? 1:1 against that person's enrolled faces (the largest
        face of a photo with several, with a warning)."""
        return self.verify_face(name, image, threshold=threshold)[0]

    def verify_face(
        self, name: str, image: Any, *, threshold: float | None = None
    ) -> tuple[Verification, Probe]:
        """:meth:`verify_id`, and the face of ``image`` it judged (box, faces found)."""
        from faceverify.compare.verification import verify

        vectors = np.stack([v for _, _, v in self.store.faces_of(check_name(name))])
        probe = self._probe(image)
        if self.match == "centroid":
            reference = vectors.mean(axis=0)
        else:
            reference = vectors[int(np.argmax(vectors @ probe.vector))]
        return verify(probe.vector, reference, threshold, model=self.model), probe

    def remove(self, name: str, *, change: Change | None = None) -> int:
        """Erase a person and all their faces: never returned again, and no copy of their
        vectors, codes, photo hashes or name is left in the gallery's files."""
        return self.store.remove(check_name(name), change=change or Change(self.actor))

    def remove_id(self, person_id: int, *, change: Change | None = None) -> tuple[str, int]:
        """Erase the person with this id (``people()`` lists ids); returns their name and how
        many faces went. The way to remove someone whose stored name is no longer valid."""
        return self.store.remove_id(person_id, change=change or Change(self.actor))

    def people(self) -> list[PersonInfo]:
        return self.store.people()

    def audit(self, *, after: int = 0, limit: int = 1000) -> list[AuditEntry]:
        """Who changed what, oldest first, after entry ``after`` (person ids, never names)."""
        return self.store.audit(after=after, limit=limit)

    def _probe(self, image: Any) -> Probe:
        """The face of identify and verify_id: the largest, as verification takes."""
        from faceverify.embed import embed_images

        options = replace(self.faces, several=SeveralFaces.LARGEST)  # the gallery's own policy is enrolment's
        result = embed_images(self.model, [image], normalize=True, faces=options)
        if result.failures:
            raise result.failures[0].as_error()
        if len(result.indices) != 1:
            raise GalleryError(f"{len(result.indices)} images given where one photo is needed")
        return Probe(result.embeddings[0], result.faces[0], result.faces_found[0])


@dataclass(frozen=True)
class Probe:
    """The face a photo gave for a 1:1 check or a single identification.

    Attributes:
        vector: its unit embedding.
        face: the detected face (None when the image was taken whole).
        faces_found: how many faces the photo held (0 without detection).
    """

    vector: np.ndarray
    face: DetectedFace | None
    faces_found: int


def export_gallery(store: GalleryStore, path: str | Path) -> int:
    """Write every person, their metadata and embeddings to a portable JSON Lines file,
    readable by its owner only (it holds biometric data, as the gallery does)."""
    manifest = store.manifest()
    if manifest is None:
        raise GalleryError("the gallery is empty: nothing to export")
    people = store.people()
    with io.TextIOWrapper(open_private(Path(path)), encoding="utf-8") as stream:
        stream.write(
            json.dumps({"format": EXPORT_FORMAT, "manifest": manifest, "people": len(people)}) + "\n"
        )
        for person in people:
            faces = [
                {"sha256": h, "source": s, "embedding": v.tolist()} for h, s, v in store.faces_of(person.name)
            ]
            stream.write(json.dumps({**person.to_dict(), "faces": faces}, ensure_ascii=False) + "\n")
    return len(people)


def import_gallery(store: GalleryStore, path: str | Path) -> tuple[int, int]:
    """Merge an exported file in; returns (people touched, faces added).

    Faces already present are skipped. A file from another model is refused before
    anything is written.
    """
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    try:
        header = json.loads(lines[0]) if lines else {}
    except ValueError:
        header = {}
    if header.get("format") != EXPORT_FORMAT:
        raise GalleryError(f"'{path}' is not a faceverify gallery export ({EXPORT_FORMAT})")
    store.bind(header["manifest"])
    dim = int(header["manifest"]["embedding_dim"])
    people = added = 0
    for number, line in enumerate(lines[1:], start=2):
        try:
            record = json.loads(line)
            faces = [
                StoredFace(check_vectors(np.array(f["embedding"]), dim)[0], f["sha256"], f["source"])
                for f in record["faces"]
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise GalleryError(f"'{path}' line {number} is not a person record ({exc})") from exc
        result = store.add(check_name(record["name"]), faces, record.get("meta"))
        people, added = people + 1, added + result.added
    return people, added
