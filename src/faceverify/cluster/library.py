"""A photo library: every face of a folder tree, grouped by person, with corrections that stick.

:class:`Library` sits on a :class:`~faceverify.gallery.Gallery` and keeps its tables in the
gallery's database (:mod:`faceverify.cluster.tables`). ``scan`` reads new and changed photos
(:mod:`faceverify.cluster.scan`), ``group`` groups the faces by person
(:mod:`faceverify.cluster.method`), and the corrections (:mod:`faceverify.cluster.corrections`)
name, merge, split, move and reject. A named group is a person of the gallery: its
confirmed faces are enrolled, so ``identify`` finds them.

What a run may change: faces the user placed (``pinned``) never move; groups the user shaped
(``anchored``) keep their id and never merge by themselves; a face marked "not this person"
never joins that group; faces of one photo are never grouped together. A run adding faces
(the default) places the new and lone faces among the existing groups; ``full=True`` groups
everything again under the same rules, keeping group ids where groups overlap.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceverify.cluster.corrections import Corrections
from faceverify.cluster.method import Constraints, Thresholds, group_faces
from faceverify.cluster.neighbours import DEFAULT_K, nearest, neighbours_of
from faceverify.cluster.scan import ScanReport, scan_folder
from faceverify.cluster.tables import PLACED, Sql, read_meta, write_meta
from faceverify.errors import GalleryError, UnknownFaceError, UnknownGroupError
from faceverify.paths import timestamp

if TYPE_CHECKING:
    import os

    from faceverify.faces.detect import Face
    from faceverify.gallery.base import Change
    from faceverify.gallery.gallery import Gallery
    from faceverify.photos import FaceOptions
    from faceverify.runtime.base import Embedder

#: Pairs sampled to estimate how alike two unrelated faces of the library are.
COMMON_SAMPLE = 20_000


@dataclass
class GroupingReport:
    """What a grouping run did."""

    mode: str  # "add" or "full"
    faces: int = 0
    grouped: int = 0
    alone: int = 0
    poor: int = 0
    groups: int = 0
    named: int = 0
    seconds: float = 0.0
    thresholds: dict[str, Any] = field(default_factory=dict)
    #: the average cosine between two faces of the library (of different people, mostly):
    #: the zero of the model's scale (``docs/clustering.md``)
    common: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "faces": self.faces,
            "grouped": self.grouped,
            "alone": self.alone,
            "poor": self.poor,
            "groups": self.groups,
            "named": self.named,
            "seconds": round(self.seconds, 3),
            "thresholds": self.thresholds,
            "common": round(self.common, 4),
        }

    def summary(self) -> str:
        return (
            f"{self.faces} faces: {self.grouped} in {self.groups} groups ({self.named} named), "
            f"{self.alone} alone, {self.poor} too poor to group ({self.mode} run, {self.seconds:.1f} s)"
        )


@dataclass(frozen=True)
class GroupInfo:
    """A group of faces: its id, the person's name once named, how many faces."""

    id: int
    name: str | None
    faces: int
    anchored: bool
    sample: tuple[int, ...] = ()  # a few face ids, best quality first

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "faces": self.faces,
            "anchored": self.anchored,
            "sample": list(self.sample),
        }


@dataclass(frozen=True)
class LibraryFace:
    """One face of the library and where it is."""

    id: int
    photo: str
    box: dict[str, float]
    quality: float
    group: int | None
    pinned: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "photo": self.photo,
            "box": self.box,
            "quality": round(self.quality, 4),
            "group": self.group,
            "pinned": self.pinned,
        }


class Library(Corrections):
    """Group the faces of a photo library by person.

    Args:
        gallery: the gallery whose database keeps the library and whose people the named
            groups become; its model embeds the faces.
        thresholds: the grouping thresholds; default from the model's own threshold
            (:meth:`Thresholds.from_model`: calibrate the model and the grouping follows).
        min_quality: faces below this quality (:func:`faceverify.faces.quality.face_quality`)
            are kept but not grouped; default :data:`faceverify.faces.quality.MIN_QUALITY`.
        change: who makes the corrections (the gallery's audit log names them).
        create: make the library's tables (and bind the gallery to the model) on first use;
            False opens it for reading only: a gallery without a library reads as empty,
            and nothing is written (what the service's read routes do).
    """

    def __init__(
        self,
        gallery: Gallery,
        *,
        thresholds: Thresholds | None = None,
        min_quality: float | None = None,
        change: Change | None = None,
        create: bool = True,
    ) -> None:
        from faceverify.faces.quality import MIN_QUALITY
        from faceverify.gallery.base import Change
        from faceverify.runtime.threshold import resolve_threshold

        self.gallery = gallery
        self.store = gallery.store
        self.sql = Sql(self.store.dialect)
        self.change = change or Change(gallery.actor)
        self.thresholds = thresholds or Thresholds.from_model(resolve_threshold(None, gallery.model))
        self.min_quality = MIN_QUALITY if min_quality is None else float(min_quality)
        self._ready = False
        if not self._has_tables() and create:  # first use: bind the gallery and make the tables, once
            gallery.bind()
            with self.store.sql_write() as db:
                self.sql.create(db)
            self._ready = True

    def _has_tables(self) -> bool:
        """Whether the library's tables exist (looked at again until they do: a reader
        opened before the first scan sees the library once another process made it)."""
        if not self._ready:
            with self.store.sql_read() as db:
                self._ready = self.sql.exists(db)
        return self._ready

    # ---- reading photos -------------------------------------------------------------

    def scan(
        self, folder: str | os.PathLike[str], *, progress: bool | None = False, confine: bool = False
    ) -> ScanReport:
        """Bring the library up to date with ``folder``: new and changed photos are read,
        photos gone from it leave the library (see :mod:`faceverify.cluster.scan`).
        ``confine`` leaves out files that are links to photos outside ``folder`` (a
        service scanning on a client's behalf must not read elsewhere)."""
        return scan_folder(
            self.gallery,
            self.sql,
            folder,
            quality=_quality,
            unenrol=self._unenrol,
            progress=progress,
            confine=confine,
        )

    # ---- grouping ------------------------------------------------------------------

    def group(self, *, full: bool = False) -> GroupingReport:
        """Group the faces by person; new and lone faces only, unless ``full`` (or the
        thresholds changed since the last run). Corrections hold either way."""
        started = time.perf_counter()
        dim = self._dim()  # before the read: a pooled store must not need a second connection
        with self.store.sql_read() as db:
            state = _State.read(self.sql, db, dim)
            last = read_meta(self.sql, db, "thresholds")
        if last is None or Thresholds.from_dict(last) != self.thresholds:
            full = True
        report = GroupingReport(
            "full" if full else "add", faces=len(state.ids), thresholds=self.thresholds.to_dict()
        )
        good = state.pinned | (state.quality >= self.min_quality)
        report.poor = int((~good).sum())
        labels, attached, seeded = self._labels(state, good, full)
        report.common = _common_level(state.vectors[good])
        with self.store.sql_write() as db:
            _State.read_groups(self.sql, db, state)  # groups may have changed since the read
            touched = _changed_meanwhile(self.sql, db, state)
            assigned = _assign_ids(self.sql, db, state, labels, attached, seeded, touched, full)
            write_meta(self.sql, db, "thresholds", self.thresholds.to_dict())
            write_meta(self.sql, db, "common", report.common)
        sizes = Counter(g for g in assigned.tolist() if g >= 0)
        report.grouped = sum(sizes.values())
        report.alone = int(good.sum()) - report.grouped
        report.groups = len(sizes)
        report.named = len(state.named)  # a run never removes a named group
        report.seconds = time.perf_counter() - started
        return report

    def update(
        self, folder: str | os.PathLike[str], *, full: bool = False, progress: bool | None = False
    ) -> tuple[ScanReport, GroupingReport]:
        """Scan ``folder``, then group: what ``faceverify cluster`` runs."""
        scanned = self.scan(folder, progress=progress)
        return scanned, self.group(full=full)

    def _labels(
        self, state: _State, good: np.ndarray, full: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A label per face (-1: not grouped), which faces the second pass attached, and
        which faces started in their group (the seeds: they carry its id).

        A full run starts from the user's pinned faces and searches every face's
        neighbours. A run adding faces starts from the groups as they are, less the faces
        the second pass attached (they are placed again, with the new faces' evidence);
        it searches the neighbours of the new and those faces among all, and of faces left
        alone before among the new ones only (their old neighbours did not group them).
        """
        positions = np.flatnonzero(good)
        vectors = state.vectors[positions]
        constraints = Constraints(photos=state.photos[positions])
        where = {int(p): i for i, p in enumerate(positions.tolist())}
        for face, rejected in state.rejections.items():
            if face in where:
                constraints.forbidden[where[face]] = set(rejected)
        constraints.anchored = set(state.anchored)
        constraints.apart = set(state.apart)
        groups, placed, pinned = state.group[positions], state.placed[positions], state.pinned[positions]
        kept = (groups >= 0) & (placed != PLACED["attached"])
        seeded = pinned if full else pinned | kept
        for gid in np.unique(groups[seeded]).tolist():
            constraints.seeds[int(gid)] = np.flatnonzero(seeded & (groups == gid))
        if full:
            neighbours, _ = nearest(vectors, k=DEFAULT_K)
        else:
            loose = ~seeded & (placed != PLACED["alone"])
            neighbours = neighbours_of(vectors, np.flatnonzero(loose), k=DEFAULT_K)
            alone = np.flatnonzero(~seeded & (placed == PLACED["alone"]))
            if alone.size and loose.any():
                near = neighbours_of(vectors, alone, k=DEFAULT_K, among=np.flatnonzero(loose))
                neighbours[alone] = near[alone]
        grouping = group_faces(vectors, neighbours, self.thresholds, constraints)
        labels = np.full(len(state.ids), -1, dtype=np.int64)
        labels[positions] = grouping.labels
        attached = np.zeros(len(state.ids), dtype=bool)
        attached[positions] = grouping.attached
        seeds = np.zeros(len(state.ids), dtype=bool)
        seeds[positions] = seeded
        return labels, attached, seeds

    # ---- reading the library -----------------------------------------------------------

    def groups(self, *, sample: int = 8) -> list[GroupInfo]:
        """Every group that holds faces or a name, largest first (``sample``: a few face
        ids of each, best quality first)."""
        return [g for g in self._group_infos(None, sample) if g.faces or g.name is not None]

    def group_info(self, group: int, *, sample: int = 8) -> GroupInfo:
        """One group as :meth:`groups` shows it (even when empty)."""
        found = self._group_infos(int(group), sample)
        if not found:
            raise UnknownGroupError(f"no group {group} in this library; see `faceverify people list`")
        return found[0]

    def _group_infos(self, only: int | None, sample: int) -> list[GroupInfo]:
        if not self._has_tables():
            return []
        where, params = ("WHERE g.id = ? ", (only,)) if only is not None else ("", ())
        with self.store.sql_read() as db:
            rows = self.sql.rows(
                db,
                "SELECT g.id, p.name, COUNT(f.id), g.anchored FROM {groups} g "
                "LEFT JOIN {people} p ON p.id = g.person_id "
                f"LEFT JOIN {{faces}} f ON f.group_id = g.id {where}GROUP BY g.id, p.name, g.anchored "
                "ORDER BY COUNT(f.id) DESC, g.id",
                params,
            )
            best = self.sql.rows(
                db,
                "SELECT group_id, id FROM {faces} WHERE group_id IS NOT NULL "
                + ("AND group_id = ? " if only is not None else "")
                + "ORDER BY group_id, quality DESC, id",
                params,
            )
        samples: dict[int, list[int]] = {}
        for gid, fid in best:
            chosen = samples.setdefault(int(gid), [])
            if len(chosen) < sample:
                chosen.append(int(fid))
        return [
            GroupInfo(int(r[0]), r[1], int(r[2]), bool(r[3]), tuple(samples.get(int(r[0]), ()))) for r in rows
        ]

    def faces(self, group: int | None = None, *, ungrouped: bool = False) -> list[LibraryFace]:
        """The faces of one group, or the faces in no group (``ungrouped=True``), or all;
        best quality first."""
        if group is not None:
            self.group_info(group, sample=0)
            return self._faces("WHERE f.group_id = ?", (group,))
        return self._faces("WHERE f.group_id IS NULL" if ungrouped else "", ())

    def face(self, face_id: int) -> LibraryFace:
        """One face of the library."""
        found = self._faces("WHERE f.id = ?", (int(face_id),))
        if not found:
            raise UnknownFaceError(f"no face {face_id} in this library; see `faceverify people faces`")
        return found[0]

    def _faces(self, where: str, params: tuple[int, ...]) -> list[LibraryFace]:
        import json

        if not self._has_tables():
            return []
        with self.store.sql_read() as db:
            rows = self.sql.rows(
                db,
                "SELECT f.id, p.path, f.box, f.quality, f.group_id, f.pinned FROM {faces} f JOIN {photos} p "
                f"ON p.id = f.photo_id {where} ORDER BY f.quality DESC, f.id",
                params,
            )
        return [
            LibraryFace(int(r[0]), r[1], json.loads(r[2]), float(r[3]), _opt(r[4]), bool(r[5])) for r in rows
        ]

    def export(self) -> dict[str, Any]:
        """Every photo with its faces and who they are: ``{"photos": [{"path", "width",
        "height", "status", "reason", "faces": [{"id", "box", "quality", "group",
        "person"}]}], "groups": [...]}`` (the JSON ``faceverify cluster --export`` writes)."""
        import json

        if not self._has_tables():
            return {"photos": [], "groups": []}
        with self.store.sql_read() as db:
            photos = self.sql.rows(
                db, "SELECT id, path, width, height, status, reason, sha256 FROM {photos} ORDER BY path"
            )
            faces = self.sql.rows(
                db,
                "SELECT f.photo_id, f.id, f.box, f.quality, f.group_id, p.name FROM {faces} f "
                "LEFT JOIN {groups} g ON g.id = f.group_id LEFT JOIN {people} p ON p.id = g.person_id "
                "ORDER BY f.id",
            )
        by_photo: dict[int, list[dict[str, Any]]] = {}
        for photo_id, fid, box, quality, gid, name in faces:
            by_photo.setdefault(int(photo_id), []).append(
                {
                    "id": int(fid),
                    "box": json.loads(box),
                    "quality": round(float(quality), 4),
                    "group": _opt(gid),
                    "person": name,
                }
            )
        # a duplicate shows its twin's faces (the same bytes: the same people)
        twins = {str(r[6]): int(r[0]) for r in photos if r[4] == "ok"}
        listed = []
        for photo_id, path, width, height, status, reason, sha in photos:
            shown = twins.get(str(sha), int(photo_id)) if status == "duplicate" else int(photo_id)
            listed.append(
                {
                    "path": path,
                    "width": int(width),
                    "height": int(height),
                    "status": status,
                    "reason": reason,
                    "faces": by_photo.get(shown, []),
                }
            )
        return {"photos": listed, "groups": [g.to_dict() for g in self.groups(sample=0)]}

    def face_crop(self, face_id: int, *, size: int = 112, margin: float = 0.25) -> bytes:
        """A JPEG of one face (its box widened by ``margin``, ``size`` px square), read from
        its photo: for pages and contact sheets; nothing of it is stored."""
        import io
        import json

        from faceverify.decode import load_image

        if not self._has_tables():
            raise UnknownFaceError(f"no face {face_id} in this library; see `faceverify people faces`")
        with self.store.sql_read() as db:
            row = self.sql.rows(
                db,
                "SELECT p.path, f.box FROM {faces} f JOIN {photos} p ON p.id = f.photo_id WHERE f.id = ?",
                (face_id,),
            )
        if not row:
            raise UnknownFaceError(f"no face {face_id} in this library; see `faceverify people faces`")
        box = json.loads(row[0][1])
        image = load_image(Path(row[0][0]))
        width, height = box["right"] - box["left"], box["bottom"] - box["top"]
        side = max(width, height) * (1 + 2 * margin)
        cx, cy = (box["left"] + box["right"]) / 2, (box["top"] + box["bottom"]) / 2
        crop = image.crop((int(cx - side / 2), int(cy - side / 2), int(cx + side / 2), int(cy + side / 2)))
        crop = crop.resize((size, size))
        buffer = io.BytesIO()
        crop.save(buffer, format="JPEG", quality=85)
        return buffer.getvalue()

    def _dim(self) -> int:
        manifest = self.store.manifest()
        if manifest is None:
            raise GalleryError("the gallery is not bound to a model")
        return int(manifest["embedding_dim"])


def open_library(
    db: str | os.PathLike[str] | None = None,
    model: Embedder | None = None,
    *,
    faces: FaceOptions | None = None,
    threshold: float | None = None,
    min_quality: float | None = None,
) -> Library:
    """Open (or create) the photo library kept in the gallery ``db``.

    Args:
        db: a gallery folder or a ``postgresql://`` URL (as :func:`faceverify.open_gallery`).
        model: the embedding model; None builds the gallery's default one. dlib's network
            (``build_model("dlib_resnet_v1")``) needs no PyTorch.
        faces: how faces are found (every face of a photo counts).
        threshold: the grouping threshold in cosine; None derives it from the model's own
            threshold (right for nearly everyone: calibrate the model instead).
        min_quality: faces below this quality are left ungrouped.
    """
    from faceverify.gallery.gallery import open_gallery

    gallery = open_gallery(None if db is None else str(db), model, faces=faces)
    thresholds = None if threshold is None else Thresholds.from_group(threshold)
    return Library(gallery, thresholds=thresholds, min_quality=min_quality)


@dataclass
class _State:
    """The library's faces and corrections as one run reads them (arrays by face)."""

    ids: np.ndarray
    photos: np.ndarray
    vectors: np.ndarray
    quality: np.ndarray
    group: np.ndarray
    pinned: np.ndarray
    placed: np.ndarray
    rejections: dict[int, set[int]] = field(default_factory=dict)  # face position -> groups
    anchored: set[int] = field(default_factory=set)
    named: set[int] = field(default_factory=set)
    apart: set[frozenset[int]] = field(default_factory=set)
    all_groups: set[int] = field(default_factory=set)

    @classmethod
    def read(cls, sql: Sql, db: Any, dim: int) -> _State:
        rows = sql.rows(
            db, "SELECT id, photo_id, vector, quality, group_id, pinned, placed FROM {faces} ORDER BY id"
        )
        n = len(rows)
        state = cls(
            ids=np.fromiter((r[0] for r in rows), np.int64, n),
            photos=np.fromiter((r[1] for r in rows), np.int64, n),
            vectors=np.frombuffer(b"".join(bytes(r[2]) for r in rows), dtype="<f4")
            .reshape(n, dim)
            .astype(np.float32),
            quality=np.fromiter((r[3] for r in rows), np.float64, n),
            group=np.fromiter((-1 if r[4] is None else r[4] for r in rows), np.int64, n),
            pinned=np.fromiter((bool(r[5]) for r in rows), bool, n),
            placed=np.fromiter((r[6] for r in rows), np.int64, n),
        )
        position = {int(i): p for p, i in enumerate(state.ids.tolist())}
        for fid, gid in sql.rows(db, "SELECT face_id, group_id FROM {rejections}"):
            if int(fid) in position:
                state.rejections.setdefault(position[int(fid)], set()).add(int(gid))
        state.apart = {frozenset((int(a), int(b))) for a, b in sql.rows(db, "SELECT a, b FROM {apart}")}
        cls.read_groups(sql, db, state)
        return state

    @staticmethod
    def read_groups(sql: Sql, db: Any, state: _State) -> None:
        rows = sql.rows(db, "SELECT id, anchored, person_id FROM {groups}")
        state.all_groups = {int(r[0]) for r in rows}
        state.anchored = {int(r[0]) for r in rows if r[1]}
        state.named = {int(r[0]) for r in rows if r[2] is not None}


def _changed_meanwhile(sql: Sql, db: Any, state: _State) -> np.ndarray:
    """Faces whose group or pin changed since the run read them (a correction made by
    another process meanwhile), or that are gone: the run leaves them as they are now."""
    now = {
        int(r[0]): (-1 if r[1] is None else int(r[1]), bool(r[2]))
        for r in sql.rows(db, "SELECT id, group_id, pinned FROM {faces}")
    }
    return np.fromiter(
        (
            now.get(int(i)) != (int(g), bool(p))
            for i, g, p in zip(state.ids.tolist(), state.group.tolist(), state.pinned.tolist())
        ),
        bool,
        len(state.ids),
    )


def _assign_ids(
    sql: Sql,
    db: Any,
    state: _State,
    labels: np.ndarray,
    attached: np.ndarray,
    seeded: np.ndarray,
    touched: np.ndarray,
    full: bool,
) -> np.ndarray:
    """Turn a run's labels into stored group ids and write the changes (group and how each
    face was placed); returns the ids (-1: in no group).

    A group's id goes only to the cluster that holds its seeds (the faces it started the
    run with): the constraints of a run (rejections, kept apart, one photo) hold between a
    cluster and the groups whose seeds it holds, so a cluster may never take the id of a
    group the user shaped from a face that merely was in it. Other clusters take the id of
    an unshaped old group they overlap most, or a new one."""
    assigned = np.full(len(state.ids), -1, dtype=np.int64)
    shaped = state.anchored | state.named
    taken: set[int] = set()
    pending: list[tuple[int, np.ndarray]] = []
    for faces in _members(labels):
        seeds = Counter(g for g in state.group[faces[seeded[faces]]].tolist() if g in state.all_groups)
        fixed = [g for g in seeds if g in shaped]
        keep = fixed[0] if fixed else (seeds.most_common(1)[0][0] if seeds else None)
        if keep is not None and keep not in taken:
            taken.add(keep)
            assigned[faces] = keep
        elif len(faces) > 1:
            pending.append((len(faces), faces))
    # new groups take the ids of the unshaped old groups they overlap most
    pending.sort(key=lambda item: -item[0])
    now = timestamp()
    for _, faces in pending:
        old = Counter(
            g
            for g in state.group[faces].tolist()
            if g >= 0 and g in state.all_groups and g not in taken and g not in shaped
        )
        if old:
            gid = old.most_common(1)[0][0]
        else:
            made = sql.rows(db, "INSERT INTO {groups} (anchored, created) VALUES (0, ?) RETURNING id", (now,))
            gid = int(made[0][0])
        taken.add(gid)
        assigned[faces] = gid
    assigned[state.pinned] = state.group[state.pinned]  # seeds already: never moved
    placed = np.where(
        assigned < 0, PLACED["alone"], np.where(attached, PLACED["attached"], PLACED["grouped"])
    )
    placed[state.pinned] = PLACED["grouped"]
    changed = np.flatnonzero(((assigned != state.group) | (placed != state.placed)) & ~touched)
    sql.many(
        db,
        "UPDATE {faces} SET group_id = ?, placed = ? WHERE id = ?",
        (
            (None if assigned[p] < 0 else int(assigned[p]), int(placed[p]), int(state.ids[p]))
            for p in changed.tolist()
        ),
    )
    assigned[touched] = -1  # as the other process left them: not counted by this run
    # groups nobody is in any more go, unless named (a person of the gallery)
    sql.run(
        db,
        "DELETE FROM {groups} WHERE person_id IS NULL "
        "AND NOT EXISTS (SELECT 1 FROM {faces} f WHERE f.group_id = {groups}.id)",
    )
    return assigned


def _members(labels: np.ndarray) -> list[np.ndarray]:
    """The positions of each label's faces (labels >= 0), by one sort."""
    positions = np.flatnonzero(labels >= 0)
    if positions.size == 0:
        return []
    order = positions[np.argsort(labels[positions], kind="stable")]
    cuts = np.flatnonzero(np.diff(labels[order])) + 1
    return np.split(order, cuts)


def _common_level(vectors: np.ndarray) -> float:
    """The mean cosine of two faces of the library: ``|mean|²`` of unit vectors (exact,
    self-pairs aside), most pairs being two different people."""
    n = len(vectors)
    if n < 2:
        return 0.0
    total = vectors.sum(axis=0, dtype=np.float64)
    return float((total @ total - n) / (n * (n - 1)))


def _quality(pixels: np.ndarray, face: Face) -> float:
    from faceverify.faces.quality import face_quality

    return face_quality(pixels, face).score


def _opt(value: Any) -> int | None:
    return None if value is None else int(value)
