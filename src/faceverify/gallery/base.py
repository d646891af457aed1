"""The gallery store interface shared by every backend, and the rules they all follow.

A store keeps people (a unique name, metadata) and their faces (a unit-length embedding,
the SHA-256 of the image it came from, where it came from). It knows nothing of models:
:class:`faceverify.gallery.Gallery` embeds images and checks that every vector comes from
the model recorded in the store's manifest.
"""

from __future__ import annotations

import json
import re
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from faceverify.checks import check_choice
from faceverify.errors import (
    GalleryError,
    IdempotencyError,
    ModelMismatchError,
    NothingEnrolledError,
    PersonExistsError,
    UnknownPersonError,
)

if TYPE_CHECKING:
    from faceverify.embed import EmbeddingResult

MAX_NAME_LENGTH = 200
MATCH_MODES = ("best", "centroid")


@dataclass(frozen=True)
class StoredFace:
    """One face to store: its embedding and the identity of the image it came from."""

    vector: np.ndarray
    image_sha256: str
    source: str


@dataclass(frozen=True)
class PersonInfo:
    """An enrolled person. ``id`` is the store's own number for them: it never changes and is
    never reused, so removal by id is exact whatever the name holds."""

    id: int
    name: str
    faces: int
    meta: dict[str, Any]
    created: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "faces": self.faces,
            "meta": self.meta,
            "created": self.created,
        }


@dataclass(frozen=True)
class Match:
    """A gallery person and how well they match a probe (cosine similarity)."""

    name: str
    score: float


_ALREADY_AS = re.compile(r"(already enrolled) as .*$", re.DOTALL)


@dataclass(frozen=True)
class Duplicate:
    """A face a store did not add: its image is enrolled already (``reason`` says for whom)."""

    source: str
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


def duplicate(source: str, owner: str | None, name: str) -> Duplicate:
    """The report of an image enrolled already, as ``owner`` (None: unknown)."""
    whose = "" if owner is None or owner == name else f" as {owner!r}"
    return Duplicate(source, f"this image is already enrolled{whose}")


@dataclass
class AddResult:
    """What an enrolment stored, and which faces it left out.

    ``replayed`` is True when the request key had been seen: nothing was written this
    time and the first answer is returned again.
    """

    added: int = 0
    skipped: list[Duplicate] = field(default_factory=list)
    person_id: int = 0
    replayed: bool = False

    def to_json(self) -> str:
        """The answer as kept under a request key: without other people's names (an image
        already enrolled "as 'X'"), which must not outlive X's erasure in this row."""
        skipped = [
            {"source": d.source, "reason": _ALREADY_AS.sub(r"\1 (for another person)", d.reason)}
            for d in self.skipped
        ]
        return json.dumps({"added": self.added, "skipped": skipped, "person_id": self.person_id})

    @classmethod
    def from_json(cls, text: str) -> AddResult:
        data = json.loads(text)
        # answers kept before reports were typed hold "source: reason" lines
        skipped = [
            Duplicate(**d) if isinstance(d, dict) else Duplicate("", str(d)) for d in data.pop("skipped")
        ]
        return cls(**data, skipped=skipped, replayed=True)


#: Who writes: ``cli:<os user>``, ``key:<key id>``, ``no-key`` (a service without keys),
#: or ``library`` (Python code that did not say).
LIBRARY_ACTOR = "library"
#: What the audit log records (never a name, a vector or a photo's hash).
#: ``remove``: some faces of a person were taken away (a photo library moved them elsewhere).
AUDIT_ACTIONS = ("create", "enrol", "add", "remove", "erase", "delete")


@dataclass(frozen=True)
class Change:
    """Who makes a write and, for a request that may be retried, its key.

    Attributes:
        actor: recorded in the gallery's audit log (see :data:`LIBRARY_ACTOR`).
        request_key: a client's idempotency key: the same key again returns the first
            answer and writes nothing (kept in the store, so it holds across processes).
        fingerprint: what the request held (e.g. a hash of the name and images); the same
            key with another fingerprint is an :class:`~faceverify.errors.IdempotencyError`.
    """

    actor: str = LIBRARY_ACTOR
    request_key: str | None = None
    fingerprint: str = ""


@dataclass(frozen=True)
class AuditEntry:
    """One line of a gallery's audit log: who did what to which person id, and when.

    An erasure is an ``erase`` entry with the person's id: their name was never written
    here, so nothing in the log identifies them once they are gone.
    """

    seq: int
    time: str
    actor: str
    action: str
    person_id: int | None = None
    faces: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "time": self.time,
            "actor": self.actor,
            "action": self.action,
            "person_id": self.person_id,
            "faces": self.faces,
        }


class GalleryStore(ABC):
    """Persistent storage of people and face embeddings (one backend per subclass)."""

    location: str

    @abstractmethod
    def manifest(self) -> dict[str, Any] | None:
        """The model the gallery is bound to, or None while it is empty and unbound."""

    @abstractmethod
    def bind(self, manifest: dict[str, Any]) -> None:
        """Record the model on first enrolment (a no-op when the same one is recorded)."""

    #: A random id given at creation: a gallery deleted and made again under the same
    #: name has another one, so no cache mistakes it for the old one.
    uuid: str

    @abstractmethod
    def add(
        self,
        name: str,
        faces: Iterable[StoredFace],
        meta: dict[str, Any] | None,
        *,
        create: bool | None = None,
        change: Change | None = None,
    ) -> AddResult:
        """Add a person, or faces to one, atomically: all of them or none on failure, with
        its audit entry (``enrol`` or ``add``) in the same transaction.

        Args:
            create: True: the person must be new (:class:`PersonExistsError` otherwise,
                decided inside the transaction, so across processes too); False: they must
                be enrolled already (:class:`UnknownPersonError`); None: either.
            change: who writes, and the request key (see :class:`Change`).
        """

    @abstractmethod
    def remove(self, name: str, *, change: Change | None = None) -> int:
        """Erase a person and all their faces; returns how many faces went.

        Erasure is real: no file the store writes keeps their vectors, codes, photo hashes
        or name afterwards (see each store), and the audit log gets an ``erase`` entry.
        """

    @abstractmethod
    def remove_id(self, person_id: int, *, change: Change | None = None) -> tuple[str, int]:
        """Erase the person with this id (see :class:`PersonInfo`) as :meth:`remove`
        does; returns their name and how many faces went. Works for any stored name, even
        one that today's :func:`check_name` would refuse."""

    @abstractmethod
    def remove_faces(self, name: str, image_sha256: Sequence[str], *, change: Change | None = None) -> int:
        """Take these faces (by ``image_sha256``) away from ``name``, who stays enrolled even
        with none left; returns how many went. Erased as :meth:`remove` erases, with a
        ``remove`` audit entry."""

    #: The SQL the store speaks (``sqlite`` or ``postgres``): a photo library
    #: (:mod:`faceverify.cluster`) keeps its tables in the gallery's database.
    dialect: str = ""

    def sql_write(self) -> AbstractContextManager[Any]:
        """A connection inside one write transaction (committed at the end, rolled back on
        an error), for the tables of a photo library kept beside the gallery's."""
        raise GalleryError(
            f"gallery {self.location} keeps no SQL tables; photo libraries need SQLite or PostgreSQL"
        )

    def sql_read(self) -> AbstractContextManager[Any]:
        """A connection whose reads see one committed state."""
        raise GalleryError(
            f"gallery {self.location} keeps no SQL tables; photo libraries need SQLite or PostgreSQL"
        )

    @abstractmethod
    def record(self, action: str, change: Change | None = None) -> None:
        """Add an audit entry for an event that writes nothing else (``create``)."""

    @abstractmethod
    def audit(self, *, after: int = 0, limit: int = 1000) -> list[AuditEntry]:
        """Audit entries with ``seq`` above ``after``, oldest first, at most ``limit``."""

    @abstractmethod
    def people(self) -> list[PersonInfo]:
        """Everyone enrolled, by name."""

    @abstractmethod
    def faces_of(self, name: str) -> list[tuple[str, str, np.ndarray]]:
        """``(image_sha256, source, vector)`` of each face of ``name``."""

    @abstractmethod
    def search(self, query: np.ndarray, top_k: int, match: str) -> list[Match]:
        """The ``top_k`` people most similar to a unit-length ``query``."""

    @abstractmethod
    def close(self) -> None:
        """Release connections and files."""

    def __enter__(self) -> GalleryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ErasingStore(GalleryStore):
    """A store that erases a person by one column of its people table (``name`` or ``id``):
    :meth:`remove` and :meth:`remove_id` are that one erasure, with its "nobody" error."""

    @abstractmethod
    def _remove(self, column: str, value: object, change: Change | None) -> tuple[str, int] | None:
        """Erase whoever has ``value`` in ``column``: their name and face count, or None."""

    @property
    def _where(self) -> str:
        """The gallery as errors name it."""
        return self.location

    def remove(self, name: str, *, change: Change | None = None) -> int:
        removed = self._remove("name", name, change)
        if removed is None:
            raise unknown_person(name, self._where)
        return removed[1]

    def remove_id(self, person_id: int, *, change: Change | None = None) -> tuple[str, int]:
        removed = self._remove("id", person_id, change)
        if removed is None:
            raise unknown_person_id(person_id, self._where)
        return removed


def embedded_faces(embedded: EmbeddingResult, rows: Iterable[int] | None = None) -> list[StoredFace]:
    """The gallery faces of embedded rows (all of them by default); needs fingerprints."""
    vectors = embedded.embeddings
    chosen = range(len(vectors)) if rows is None else rows
    return [StoredFace(vectors[r], embedded.image_sha256[r], embedded.sources[r]) for r in chosen]


def nothing_enrolled(name: str, left_out: Sequence[object]) -> NothingEnrolledError:
    """The error for an enrolment that would leave a new person without faces; ``left_out``
    are the reports of the images left out (strings, failures or :class:`Duplicate`)."""
    reasons = [str(item) for item in left_out]
    return NothingEnrolledError(
        f"nothing enrolled for {name!r}: {'; '.join(reasons) or 'no images given'}", list(left_out)
    )


def unknown_person(name: str, location: str) -> UnknownPersonError:
    return UnknownPersonError(f"no person named {name!r} in gallery {location}; see `faceverify list`")


def person_exists(name: str, location: str) -> PersonExistsError:
    return PersonExistsError(
        f"{name!r} is already enrolled in gallery {location}; add photos to them instead"
    )


def replayed_or_conflict(change: Change | None, stored: tuple[str, str] | None) -> AddResult | None:
    """The first answer to a request key seen before, or None for a new key.

    ``stored`` is the ``(fingerprint, answer)`` kept under the key. The same key with
    other content is refused: a client bug that must not pass as a retry.
    """
    if change is None or change.request_key is None or stored is None:
        return None
    fingerprint, answer = stored
    if fingerprint != change.fingerprint:
        raise IdempotencyError(
            f"request key {change.request_key!r} was used before for a different request; "
            "use a new key for a new request"
        )
    return AddResult.from_json(answer)


def unknown_person_id(person_id: int, location: str) -> UnknownPersonError:
    return UnknownPersonError(f"no person with id {person_id} in gallery {location}; see `faceverify list`")


#: Names a URL or a file path would reinterpret: as a path segment, ``.`` and ``..`` are
#: folded away by browsers and HTTP clients (``DELETE .../people/..`` becomes a request on the
#: gallery itself), and slashes split segments.
_PATH_WORDS = frozenset({".", ".."})
_PATH_SEPARATORS = frozenset("/\\")
#: Unicode categories refused anywhere in a name: control characters and line/paragraph
#: separators (they break logs and CSV exports).
_REFUSED_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})
#: Bidirectional overrides and isolates: they make a name display as another one.
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def check_name(name: str) -> str:
    """A person's name: trimmed and NFC-normalised; 1 to 200 characters of any script, with
    spaces and punctuation, but never ``.``, ``..``, a slash or backslash, a control
    character, a line separator or a bidirectional override (a URL, a path or a terminal
    would show or route it as something else)."""
    if not isinstance(name, str):
        raise GalleryError(f"a person's name must be text, not {type(name).__name__}")
    cleaned = unicodedata.normalize("NFC", name.strip())
    if not cleaned:
        raise GalleryError("a person's name cannot be empty or only spaces")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise GalleryError(f"name of {len(cleaned)} characters is too long; the limit is {MAX_NAME_LENGTH}")
    if cleaned in _PATH_WORDS:
        raise GalleryError(f"name {cleaned!r} is a path step ('.' or '..'), which a URL would reinterpret")
    refused = sorted({c for c in cleaned if _refused(c)})
    if refused:
        shown = ", ".join(f"U+{ord(c):04X}" if not c.isprintable() else repr(c) for c in refused)
        raise GalleryError(
            f"name {cleaned!r} contains {shown}; a name may not hold slashes, backslashes, "
            "control characters, line separators or bidirectional overrides"
        )
    return cleaned


def _refused(character: str) -> bool:
    return (
        character in _PATH_SEPARATORS
        or character in _BIDI_CONTROLS
        or unicodedata.category(character) in _REFUSED_CATEGORIES
    )


def check_match(match: str) -> str:
    return check_choice("match mode", match, MATCH_MODES, error=GalleryError)


def check_vectors(vectors: np.ndarray, dim: int) -> np.ndarray:
    """Float32 unit rows of the recorded dimension, or a clear error."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[1] != dim:
        raise ModelMismatchError(
            f"vectors of shape {tuple(np.shape(vectors))} do not fit this gallery's {dim}-dim embeddings"
        )
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if not np.isfinite(array).all() or (norms == 0).any():
        raise GalleryError("vectors must be finite and non-zero")
    unit: np.ndarray = array / norms
    return unit


def same_model(recorded: dict[str, Any], offered: dict[str, Any]) -> None:
    """Refuse vectors of another model, naming what differs (:class:`ModelIdentity`)."""
    from faceverify.runtime.identity import ModelIdentity

    gallery, model = ModelIdentity.from_dict(recorded), ModelIdentity.from_dict(offered)
    if not gallery.matches(model):
        detail = gallery.describe_differences(model, "gallery", "model")
        raise ModelMismatchError(
            f"this gallery was built with another model ({detail}); use the gallery's model "
            "(--model/--weights/--input-size as when it was created) or a new gallery"
        )


def encode_meta(meta: dict[str, Any] | None) -> str:
    try:
        return json.dumps(meta or {}, sort_keys=True, ensure_ascii=False)
    except TypeError as exc:
        raise GalleryError(f"metadata must be JSON values: {exc}") from None
