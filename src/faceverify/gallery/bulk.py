"""Bulk enrolment: thousands of people from a folder tree, resumable, one transaction each.

The people to enrol are taken in sorted order, those already in the gallery are left out,
and the rest go through the model in chunks of several people, so every forward pass is a
full batch whatever the number of photos per person. Each person is then stored in one
transaction: a run killed at any point leaves whole people or none of a person, and
running it again enrols exactly the people still missing.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceverify.checks import check_choice
from faceverify.errors import ConfigError, FailureKind, GalleryError, NothingEnrolledError
from faceverify.gallery.base import embedded_faces
from faceverify.photos import SeveralFaces

if TYPE_CHECKING:
    from faceverify.embed import EmbeddingResult
    from faceverify.gallery.gallery import Gallery

log = logging.getLogger(__name__)

EXISTING = ("skip", "add")
#: A chunk holds this many batches of images: big enough to keep batches full across
#: people, small enough that a kill loses little embedding work.
CHUNK_BATCHES = 4


@dataclass(frozen=True)
class SkippedImage:
    """An image left out, whose it was, and why."""

    person: str
    source: str
    kind: FailureKind
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"person": self.person, "image": self.source, "kind": self.kind.value, "reason": self.reason}


@dataclass(frozen=True)
class PersonOutcome:
    """What happened to one person: ``enrolled``, ``already_enrolled`` or ``failed``."""

    name: str
    status: str
    added: int = 0
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "status": self.status, "added": self.added}
        if self.reason:
            data["reason"] = self.reason
        return data


@dataclass
class BulkEnrollResult:
    """The outcome of a bulk enrolment: every person, and every image left out."""

    people: list[PersonOutcome] = field(default_factory=list)
    skipped: list[SkippedImage] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(p.status == status for p in self.people)

    @property
    def faces_added(self) -> int:
        return sum(p.added for p in self.people)

    def skipped_by_kind(self) -> dict[str, int]:
        kinds = Counter(s.kind for s in self.skipped)
        return {kind.value: kinds[kind] for kind in FailureKind}

    def to_dict(self) -> dict[str, Any]:
        return {
            "enrolled": self.count("enrolled"),
            "already_enrolled": self.count("already_enrolled"),
            "failed": self.count("failed"),
            "faces_added": self.faces_added,
            "images_skipped": self.skipped_by_kind(),
            "people": [p.to_dict() for p in self.people],
            "skipped": [s.to_dict() for s in self.skipped],
        }

    def summary(self) -> str:
        """One line for people: what was enrolled, skipped and why."""
        kinds = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in self.skipped_by_kind().items() if n)
        return (
            f"enrolled {self.count('enrolled')} people ({self.faces_added} faces); "
            f"{self.count('already_enrolled')} already enrolled; {self.count('failed')} failed; "
            f"{len(self.skipped)} images skipped" + (f" ({kinds})" if kinds else "")
        )

    @classmethod
    def combine(cls, parts: Sequence[BulkEnrollResult]) -> BulkEnrollResult:
        """One result from the results of several ranks, people in name order."""
        people = sorted((p for part in parts for p in part.people), key=lambda p: p.name)
        skipped = sorted((s for part in parts for s in part.skipped), key=lambda s: (s.person, s.source))
        return cls(people, skipped)


def people_in_folder(folder: str | Path) -> tuple[dict[str, list[Path]], list[Path]]:
    """``{sub-folder name: its images (recursive, sorted)}``, and images lying outside them.

    Raises:
        ConfigError: the folder is missing or holds no sub-folder.
    """
    from faceverify.decode import IMAGE_SUFFIXES, iter_image_paths

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ConfigError(
            f"--from-folder '{root}' is not a folder; give a folder with one sub-folder per person"
        )
    # hidden folders (.git, .thumbnails...) are nobody's
    folders = [p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    people = {p.name: list(iter_image_paths([p])) for p in folders}
    if not people:
        raise ConfigError(
            f"'{root}' has no sub-folders; put each person's images in a folder named after them"
        )
    strays = [p for p in sorted(root.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return people, strays


def enroll_many(
    gallery: Gallery,
    people: str | Path | Mapping[str, Sequence[Any]],
    *,
    meta: dict[str, Any] | None,
    existing: str,
    batch_size: int,
    progress: bool | None,
    on_person: Callable[[PersonOutcome], None] | None,
    share: tuple[int, int],
) -> BulkEnrollResult:
    """What :meth:`Gallery.enroll_many` does (see there)."""
    from tqdm.auto import tqdm

    check_choice("existing", existing, EXISTING, error=ConfigError)
    refuse = gallery.enrol_options().policy is SeveralFaces.REFUSE
    if not 0 <= share[0] < share[1]:
        raise ConfigError(f"rank {share[0]} of world_size {share[1]}: need 0 <= rank < world_size")
    result = BulkEnrollResult()
    faces = 0
    enrolled = {p.name for p in gallery.store.people()}
    todo = _plan(people, enrolled if existing == "skip" else set(), share, result)
    notify = on_person or (lambda outcome: None)
    for outcome in result.people:
        notify(outcome)
    show = progress if progress is not None else bool(todo) and sys.stderr.isatty()
    with tqdm(total=len(todo), unit="person", desc="enrolling", disable=not show, file=sys.stderr) as bar:
        for chunk in _chunks(todo, CHUNK_BATCHES * batch_size):
            embedded = _embed(gallery, chunk, batch_size)
            for person, rows, skipped in _split(chunk, embedded):
                known = person in enrolled  # with existing="add": what they have already is no news
                if known:
                    rows = _new_to(gallery, person, rows, embedded)
                several = [s for s in skipped if s.kind is FailureKind.SEVERAL_FACES]
                if refuse and several:  # enrolment's default: their photos need checking first
                    result.skipped += skipped
                    outcome = PersonOutcome(
                        person, "failed", reason=f"{several[0].source}: {several[0].reason}"
                    )
                else:
                    outcome = _store(gallery, (person, known), rows, skipped, embedded, meta, result)
                result.people.append(outcome)
                notify(outcome)
                faces += outcome.added
                bar.update()
                bar.set_postfix(faces=faces, skipped=len(result.skipped), refresh=False)
    result.people.sort(key=lambda p: p.name)
    return result


#: A person to enrol: their checked name and their images.
_Todo = tuple[str, list[Any]]


def _plan(
    people: str | Path | Mapping[str, Sequence[Any]],
    enrolled: set[str],
    share: tuple[int, int],
    result: BulkEnrollResult,
) -> list[_Todo]:
    """This rank's people, minus those already enrolled (recorded in ``result``)."""
    from faceverify.gallery.base import check_name

    rank, world_size = share
    if isinstance(people, Mapping):
        given: dict[str, list[Any]] = {str(k): list(v) for k, v in people.items()}
    else:
        found, strays = people_in_folder(people)
        given = {name: list(images) for name, images in found.items()}
        if rank == 0:  # reported once, not by every rank
            result.skipped += [
                SkippedImage("", str(p), FailureKind.NO_PERSON, "not in a person's folder") for p in strays
            ]
    todo: dict[str, list[Any]] = {}
    for raw in sorted(given)[rank::world_size]:
        try:
            name = check_name(raw)
        except GalleryError as exc:
            result.people.append(PersonOutcome(raw, "failed", reason=str(exc)))
            continue
        if name in enrolled:
            result.people.append(PersonOutcome(name, "already_enrolled"))
        elif not given[raw]:
            result.people.append(PersonOutcome(name, "failed", reason="no images"))
        else:  # two folders whose names normalise alike are one person
            todo.setdefault(name, []).extend(given[raw])
    return list(todo.items())


def _chunks(todo: list[_Todo], images: int) -> Iterator[list[_Todo]]:
    """Whole people, grouped until a group holds at least ``images`` images."""
    chunk: list[_Todo] = []
    size = 0
    for person in todo:
        chunk.append(person)
        size += len(person[1])
        if size >= images:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _embed(gallery: Gallery, chunk: list[_Todo], batch_size: int) -> EmbeddingResult:
    from faceverify.embed import embed_images

    images = [image for _, person_images in chunk for image in person_images]
    faces = gallery.enrol_options()
    return embed_images(
        gallery.model, images, batch_size=batch_size, normalize=True, faces=faces, fingerprint=True
    )


def _split(
    chunk: list[_Todo], embedded: EmbeddingResult
) -> Iterator[tuple[str, list[int], list[SkippedImage]]]:
    """Each person of a chunk with the rows to store and the images left out."""
    failures = {f.index: f for f in embedded.failures}
    rows_of: dict[int, list[int]] = {}
    for row, index in enumerate(embedded.indices):
        rows_of.setdefault(index, []).append(row)
    start = 0
    for name, images in chunk:
        rows: list[int] = []
        skipped: list[SkippedImage] = []
        for index in range(start, start + len(images)):
            if index in failures:
                failure = failures[index]
                skipped.append(SkippedImage(name, failure.source, failure.kind, failure.reason))
            else:
                rows.append(rows_of[index][0])  # one face per photo: enrolment never takes "all"
        start += len(images)
        yield name, rows, skipped


def _new_to(gallery: Gallery, person: str, rows: list[int], embedded: EmbeddingResult) -> list[int]:
    """The rows whose image ``person`` does not have yet."""
    theirs = {sha for sha, _, _ in gallery.store.faces_of(person)}
    return [row for row in rows if embedded.image_sha256[row] not in theirs]


def _store(
    gallery: Gallery,
    who: tuple[str, bool],
    rows: list[int],
    skipped: list[SkippedImage],
    embedded: EmbeddingResult,
    meta: dict[str, Any] | None,
    result: BulkEnrollResult,
) -> PersonOutcome:
    """One person (``who``: their name, and whether they were enrolled before) in one
    transaction; a new person whose every image is bad fails alone."""
    person, known = who
    result.skipped += skipped
    if not rows and known:  # nothing new for them
        return PersonOutcome(person, "already_enrolled")
    if not rows:
        return PersonOutcome(
            person, "failed", reason="no usable image: " + "; ".join(s.reason for s in skipped)
        )
    faces = embedded_faces(embedded, rows)
    refused: list[object]
    try:
        stored = gallery.store_faces(person, faces, [], meta)
        refused, outcome = list(stored.duplicates), PersonOutcome(person, "enrolled", added=stored.added)
    except NothingEnrolledError as exc:  # every face was enrolled already
        refused, outcome = exc.left_out, PersonOutcome(person, "failed", reason=str(exc))
    for item in refused:  # the store refuses only images enrolled already
        source, reason = getattr(item, "source", ""), getattr(item, "reason", str(item))
        result.skipped.append(SkippedImage(person, source, FailureKind.DUPLICATE, reason))
    return outcome
