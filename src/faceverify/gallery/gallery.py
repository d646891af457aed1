"""The gallery users work with: enrol images, identify faces, verify claimed identities.

:class:`Gallery` puts a model in front of a :class:`GalleryStore`: it decodes and embeds
images, records which model (name, weights hash, preprocessing) the gallery belongs to,
and refuses another model with a clear error rather than returning wrong matches.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceverify.errors import GalleryError
from faceverify.gallery.base import (
    LIBRARY_ACTOR,
    Change,
    Face,
    GalleryStore,
    Match,
    PersonInfo,
    check_match,
    check_name,
    check_vectors,
    nothing_enrolled,
    same_model,
)
from faceverify.paths import data_dir, open_private

if TYPE_CHECKING:
    from faceverify.compare.verification import Verification
    from faceverify.embed import EmbeddingResult
    from faceverify.faces.detect import Face as DetectedFace
    from faceverify.gallery.bulk import BulkEnrollResult, PersonOutcome
    from faceverify.photos import FaceOptions
    from faceverify.runtime.base import Embedder

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
            :class:`~faceverify.photos.FaceOptions`).
    """
    if model is None:
        from faceverify.runtime.build import build_model

        model = build_model()
    return Gallery(open_store(db), model, match=match, faces=faces)


def model_manifest(model: Embedder) -> dict[str, Any]:
    """What a gallery records about its model; all of it must match to use the gallery."""
    if not model.weights_sha256():  # any runtime reports the hash of the weights it runs
        raise GalleryError("a gallery needs a model with saved weights; random weights change every run")
    return {
        "model": model.name,
        "embedding_dim": model.embedding_dim,
        "preprocess_fingerprint": model.preprocess.fingerprint(),
        "weights_sha256": model.weights_sha256(),
        "preprocess": model.preprocess.to_dict(),
    }


@dataclass
class EnrollResult:
    """What enrolment stored for one person and which images it left out, and why."""

    name: str
    added: int
    skipped: list[str] = field(default_factory=list)
    #: True when a request key had been seen: nothing was written, the first answer is back
    replayed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "added": self.added, "skipped": self.skipped}


@dataclass
class Identification:
    """The best gallery matches of a face, and who it is judged to be.

    Attributes:
        matches: up to ``top_k`` people, best first, with cosine similarities.
        threshold: the decision threshold used.
        name: the best match when its score reaches the threshold, else None (unknown).
    """

    matches: list[Match]
    threshold: float
    face: DetectedFace | None = None

    @property
    def name(self) -> str | None:
        if self.matches and self.matches[0].score >= self.threshold:
            return self.matches[0].name
        return None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "known": self.name is not None,
            "threshold": self.threshold,
            "matches": [{"name": m.name, "score": m.score} for m in self.matches],
        }
        if self.face is not None:
            data["box"] = [round(v, 1) for v in self.face.box]
            data["detection_score"] = self.face.score
        return data


class Gallery:
    """Enrolled people and their face embeddings, searchable by face.

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
        from faceverify.photos import FaceOptions

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

        Unreadable images and images already enrolled are skipped and reported; if none
        is left for a new person, nothing is stored and an error says why.

        Args:
            create: True: only a new person (``PersonExistsError`` if the name is taken,
                even by another process at the same moment); False: only someone enrolled.
            change: who enrols (for the audit log) and a request key making a retry safe.
        """
        person = check_name(name)
        faces, skipped = self.embed_faces(images)
        return self.store_faces(person, faces, skipped, meta, create=create, change=change)

    def embed_faces(self, images: list[Any]) -> tuple[list[Face], list[str]]:
        """The faces to store for these images, and the images left out (``"image: why"``):
        the slow half of :meth:`enroll`, which writes nothing."""
        from faceverify.embed import embed_images

        embedded = embed_images(self.model, images, normalize=True, faces=self.faces, fingerprint=True)
        # an image without a face is skipped like an unreadable one
        return embedded_faces(embedded), [str(f) for f in embedded.failures]

    def enroll_many(
        self,
        people: str | Path | Mapping[str, Sequence[Any]],
        *,
        meta: dict[str, Any] | None = None,
        existing: str = "skip",
        several_faces: str = "skip",
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
        Bad images are skipped and reported (unreadable, no face, several faces, already
        enrolled); they never cost a person their good images.

        Args:
            people: a folder (each sub-folder is a person named after it; its images are
                found recursively) or a mapping of names to images (any input
                :func:`~faceverify.embed.embed_images` takes).
            meta: metadata stored with every person enrolled.
            existing: ``skip`` (resume-friendly) or ``add``.
            several_faces: with face detection, ``skip`` photos holding more than one face
                (the safe choice when nobody checks the folders) or use the ``largest``.
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
            several_faces=several_faces,
            batch_size=batch_size,
            progress=progress,
            on_person=on_person,
            share=(rank, world_size),
        )

    def store_faces(
        self,
        person: str,
        faces: list[Face],
        skipped: list[str],
        meta: dict[str, Any] | None,
        *,
        create: bool | None = None,
        change: Change | None = None,
    ) -> EnrollResult:
        """Store embedded faces of one person in one transaction (binding the model first)."""
        if not faces:
            raise nothing_enrolled(person, skipped)
        if not self._bound:
            self.store.bind(self._manifest)
            self._bound = True
        result = self.store.add(person, faces, meta, create=create, change=change or Change(self.actor))
        if result.replayed:
            return EnrollResult(name=person, added=result.added, skipped=result.skipped, replayed=True)
        return EnrollResult(name=person, added=result.added, skipped=skipped + result.skipped)

    def identify(self, image: Any, *, top_k: int = 5, threshold: float | None = None) -> Identification:
        """Who is this? The ``top_k`` best matches, and a name only above the threshold."""
        if top_k < 1:
            raise GalleryError(f"top_k {top_k!r} must be at least 1")
        query = self._embed_one(image)
        chosen = self.model.default_threshold if threshold is None else threshold
        return Identification(self.store.search(query, top_k, self.match), chosen)

    def identify_faces(
        self, image: Any, *, top_k: int = 5, threshold: float | None = None
    ) -> list[Identification]:
        """Who is each face of a photo? One answer per face found (largest first), each
        with its box; faces below the threshold are unknown. A model that takes plain
        crops, with detection off, answers once for the whole image.

        Raises:
            ImageError: the image cannot be read, or holds no face.
        """
        from dataclasses import replace

        from faceverify.embed import embed_images

        if top_k < 1:
            raise GalleryError(f"top_k {top_k!r} must be at least 1")
        options = replace(self.faces, all_faces=True)
        result = embed_images(self.model, [image], normalize=True, faces=options)
        if result.failures:
            from faceverify.errors import ImageError

            raise ImageError(result.failures[0].source, result.failures[0].reason)
        chosen = self.model.default_threshold if threshold is None else threshold
        return [
            Identification(self.store.search(vector, top_k, self.match), chosen, face)
            for vector, face in zip(result.embeddings.numpy(), result.faces)
        ]

    def verify_id(self, name: str, image: Any, *, threshold: float | None = None) -> Verification:
        """Is this really ``name``? 1:1 against that person's enrolled faces."""
        from faceverify.compare.verification import verify

        vectors = np.stack([v for _, _, v in self.store.faces_of(check_name(name))])
        query = self._embed_one(image)
        if self.match == "centroid":
            reference = vectors.mean(axis=0)
        else:
            reference = vectors[int(np.argmax(vectors @ query))]
        return verify(query, reference, threshold, model=self.model)

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

    def _embed_one(self, image: Any) -> np.ndarray:
        from faceverify.embed import compute_embedding

        vector: np.ndarray = compute_embedding(self.model, image, normalize=True, faces=self.faces)[0].numpy()
        return vector


def embedded_faces(embedded: EmbeddingResult, rows: Iterable[int] | None = None) -> list[Face]:
    """The gallery faces of embedded rows (all of them by default); needs fingerprints."""
    vectors = embedded.embeddings.numpy()
    chosen = range(len(vectors)) if rows is None else rows
    return [Face(vectors[r], embedded.image_sha256[r], embedded.sources[r]) for r in chosen]


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
                Face(check_vectors(np.array(f["embedding"]), dim)[0], f["sha256"], f["source"])
                for f in record["faces"]
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise GalleryError(f"'{path}' line {number} is not a person record ({exc})") from exc
        result = store.add(check_name(record["name"]), faces, record.get("meta"))
        people, added = people + 1, added + result.added
    return people, added
