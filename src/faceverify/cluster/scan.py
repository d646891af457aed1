"""Reading a folder tree into a photo library: only new or changed photos are processed.

A photo is known by its path, and by the SHA-256 of its bytes: a file whose size and
modification time are unchanged is not read again; a file that changed is read, and its
faces are replaced only when its bytes did change. The same bytes under a second path are a
``duplicate`` (listed, no faces of its own). Photos that left the folder leave the library.

Each chunk of photos is written in one transaction (the photo rows and all their faces),
so a run killed at any point leaves whole photos or none, and the next run goes on from
where it stopped. A file that cannot be read, holds no face, or vanishes while the run
reads it is reported and listed with its status; the rest go on.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceverify.cluster.tables import Sql, in_chunks, marks, vector_bytes
from faceverify.errors import ConfigError, ImageError
from faceverify.paths import timestamp

if TYPE_CHECKING:
    from PIL import Image

    from faceverify.faces.detect import Face
    from faceverify.gallery.gallery import Gallery

#: Photos decoded, embedded and written per transaction.
CHUNK = 64


@dataclass
class ScanReport:
    """What a scan found. ``failed`` holds ``(path, reason)`` of photos that could not be read."""

    folder: str
    photos: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: int = 0
    duplicates: int = 0
    no_face: int = 0
    faces_added: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": self.folder,
            "photos": self.photos,
            "new": self.new,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "duplicates": self.duplicates,
            "no_face": self.no_face,
            "faces_added": self.faces_added,
            "failed": [{"path": p, "reason": r} for p, r in self.failed],
        }

    def summary(self) -> str:
        return (
            f"{self.photos} photos in {self.folder}: {self.new} new, {self.changed} changed, "
            f"{self.removed} removed, {self.unchanged} unchanged; {self.faces_added} faces added, "
            f"{self.no_face} photos without a face, {self.duplicates} duplicates, "
            f"{len(self.failed)} unreadable"
        )


@dataclass
class _Photo:
    """One photo being read: what was stored for it, and what this run found."""

    path: Path
    size: int
    mtime: float
    stored: tuple[int, str] | None  # (photo id, sha256)
    sha256: str = ""
    image: Image.Image | None = None
    faces: list[Face] = field(default_factory=list)
    qualities: list[float] = field(default_factory=list)
    status: str = "ok"
    reason: str = ""


def known_photos(sql: Sql, db: Any, root: Path) -> dict[str, tuple[int, str, int, float]]:
    """``path -> (id, sha256, size, mtime)`` of the stored photos under ``root``."""
    prefix = str(root).rstrip(os.sep) + os.sep
    rows = sql.rows(
        db,
        "SELECT path, id, sha256, size, mtime FROM {photos} WHERE substr(path, 1, ?) = ?",
        (len(prefix), prefix),
    )
    return {r[0]: (int(r[1]), str(r[2]), int(r[3]), float(r[4])) for r in rows}


def scan_folder(
    gallery: Gallery,
    sql: Sql,
    folder: str | os.PathLike[str],
    *,
    quality: Callable[[np.ndarray, Face], float],
    unenrol: Callable[[list[int]], None],
    progress: bool | None = False,
    workers: int | None = None,
    confine: bool = False,
) -> ScanReport:
    """Bring the library up to date with ``folder`` (see the module docstring); with
    ``confine``, files that resolve outside it (links) are reported and left out."""
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise ConfigError(f"{folder} is not a folder; give the folder that holds the photos")
    report = ScanReport(str(root))
    with gallery.store.sql_read() as db:
        known = known_photos(sql, db, root)
    paths, unlisted = _list_photos(root, report)
    if confine:
        outside = [p for p in paths if not p.resolve().is_relative_to(root)]
        report.failed += [(str(p), "a link to a file outside the folder scanned; left out") for p in outside]
        paths = [p for p in paths if p not in outside]
    report.photos = len(paths)
    # photos under a folder that could not be listed are not gone: they are kept as they are
    present = {str(p) for p in paths} | {k for k in known if any(Path(k).is_relative_to(u) for u in unlisted)}
    _remove_gone(gallery, sql, known, present, unenrol, report)
    todo = _todo(paths, known, report)
    listed = {str(p) for p in paths}
    for _ in range(2):  # then once more: duplicates whose original changed in this very scan
        reading = {str(p.path) for p in todo}
        orphans = [p for p in _orphans(gallery, sql, root, listed) if str(p.path) not in reading]
        report.unchanged -= len(orphans)  # counted as unchanged by their size and time
        _process(gallery, sql, todo + orphans, quality, unenrol, progress, workers, report)
        todo = []
    return report


def _list_photos(root: Path, report: ScanReport) -> tuple[list[Path], list[Path]]:
    """The image files under ``root`` (sorted; links to folders not followed), and the
    folders that could not be listed (reported: their photos must not count as removed)."""
    from faceverify.decode import IMAGE_SUFFIXES

    unlisted: list[Path] = []

    def failed(error: OSError) -> None:
        where = Path(error.filename) if error.filename else root
        unlisted.append(where)
        report.failed.append(
            (
                str(where),
                f"cannot list this folder ({error.strerror or error}); its photos are kept as they were",
            )
        )

    found: list[Path] = []
    for folder, subfolders, files in os.walk(root, onerror=failed):
        subfolders.sort()
        for name in sorted(files):
            path = Path(folder) / name
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                str(path).encode("utf-8")
            except UnicodeEncodeError:  # a name the database cannot hold: reported, not fatal
                report.failed.append(
                    (str(path).encode("utf-8", "replace").decode(), "its name is not valid UTF-8; rename it")
                )
                continue
            found.append(path)
    return found, unlisted


def _todo(
    paths: list[Path], known: dict[str, tuple[int, str, int, float]], report: ScanReport
) -> list[_Photo]:
    """The photos to read: new ones, and those whose size or time changed."""
    todo: list[_Photo] = []
    for path in paths:
        stored = known.get(str(path))
        try:
            stat = path.stat()
        except OSError as exc:
            report.failed.append((str(path), f"cannot read it ({exc.strerror or exc})"))
            continue
        if stored is not None and stored[2] == stat.st_size and stored[3] == stat.st_mtime:
            report.unchanged += 1
            continue
        todo.append(
            _Photo(path, stat.st_size, stat.st_mtime, None if stored is None else (stored[0], stored[1]))
        )
    return todo


def _orphans(gallery: Gallery, sql: Sql, root: Path, present: set[str]) -> list[_Photo]:
    """Duplicates under ``root`` whose original is gone or changed: read again (as changed
    photos: a stored hash of "" never matches), so that they hold the faces themselves."""
    prefix = str(root).rstrip(os.sep) + os.sep
    with gallery.store.sql_read() as db:
        rows = sql.rows(
            db,
            "SELECT d.id, d.path, d.size, d.mtime FROM {photos} d WHERE d.status = 'duplicate' "
            "AND substr(d.path, 1, ?) = ? AND NOT EXISTS "
            "(SELECT 1 FROM {photos} o WHERE o.sha256 = d.sha256 AND o.status <> 'duplicate')",
            (len(prefix), prefix),
        )
    return [_Photo(Path(r[1]), int(r[2]), float(r[3]), (int(r[0]), "")) for r in rows if r[1] in present]


def _process(
    gallery: Gallery,
    sql: Sql,
    todo: list[_Photo],
    quality: Callable[[np.ndarray, Face], float],
    unenrol: Callable[[list[int]], None],
    progress: bool | None,
    workers: int | None,
    report: ScanReport,
) -> None:
    """Read, embed and write ``todo`` a chunk per transaction."""
    with (
        _progress_bar(len(todo), progress) as bar,
        ThreadPoolExecutor(workers or min(4, os.cpu_count() or 1)) as pool,
    ):
        for chunk in in_chunks(todo, CHUNK):
            photos = list(pool.map(lambda p: _read(p, gallery, quality), chunk))
            _embed_and_write(gallery, sql, photos, unenrol, report)
            bar(len(photos))


def _remove_gone(
    gallery: Gallery,
    sql: Sql,
    known: dict[str, tuple[int, str, int, float]],
    present: set[str],
    unenrol: Callable[[list[int]], None],
    report: ScanReport,
) -> None:
    gone = [row[0] for path, row in known.items() if path not in present]
    for chunk in in_chunks(gone):
        unenrol(_faces_of(gallery, sql, chunk))
        with gallery.store.sql_write() as db:
            sql.run(db, f"DELETE FROM {{photos}} WHERE id IN ({marks(len(chunk))})", chunk)
    report.removed = len(gone)


def _faces_of(gallery: Gallery, sql: Sql, photo_ids: Sequence[int]) -> list[int]:
    with gallery.store.sql_read() as db:
        rows = sql.rows(
            db, f"SELECT id FROM {{faces}} WHERE photo_id IN ({marks(len(photo_ids))})", photo_ids
        )
    return [int(r[0]) for r in rows]


def _read(photo: _Photo, gallery: Gallery, quality: Callable[[np.ndarray, Face], float]) -> _Photo:
    """Hash, decode and search one photo for faces (in a worker thread)."""
    from faceverify.decode import load_image
    from faceverify.photos import find_faces

    try:
        data = photo.path.read_bytes()  # hashed and decoded from the same bytes: a file
        photo.sha256 = hashlib.sha256(data).hexdigest()  # rewritten meanwhile cannot mix
        if photo.stored is not None and photo.stored[1] == photo.sha256:
            photo.status = "unchanged"
            return photo
        photo.image = load_image(data)
        pixels = np.asarray(photo.image)
        photo.faces = find_faces(pixels, gallery.faces)
        photo.qualities = [float(quality(pixels, face)) for face in photo.faces]
        if not photo.faces:
            photo.status, photo.reason = "no_face", "no face found"
    except ImageError as exc:
        photo.status, photo.reason = "failed", exc.reason
    except OSError as exc:
        photo.status, photo.reason = "failed", f"cannot read it ({exc.strerror or exc})"
    return photo


def _embed_and_write(
    gallery: Gallery,
    sql: Sql,
    photos: list[_Photo],
    unenrol: Callable[[list[int]], None],
    report: ScanReport,
) -> None:
    from dataclasses import replace

    from faceverify.embed import embed_images
    from faceverify.photos import SeveralFaces

    with_faces = [p for p in photos if p.faces and p.image is not None]
    vectors: dict[int, np.ndarray] = {}
    if with_faces:
        # every face is kept (poor ones too, left ungrouped by the library's own gate)
        options = replace(gallery.faces, several=SeveralFaces.ALL, whole_if_no_face=False, min_quality=0.0)
        embedded = embed_images(
            gallery.model,
            [p.image for p in with_faces],
            faces=options,
            normalize=True,
            found=[p.faces for p in with_faces],
        )
        for row, face in enumerate(embedded.faces):
            vectors[id(face)] = embedded.embeddings[row]
        for failure in embedded.failures:
            photo = with_faces[failure.index]
            photo.status, photo.reason = "failed", failure.reason
    replaced = [p.stored[0] for p in photos if p.stored is not None and p.status != "unchanged"]
    if replaced:  # their enrolled faces leave the gallery first (its own transaction)
        unenrol(_faces_of(gallery, sql, replaced))
    now = timestamp()
    with gallery.store.sql_write() as db:
        for photo in photos:
            _write_photo(sql, db, photo, vectors, now, report)


def _write_photo(
    sql: Sql,
    db: Any,
    photo: _Photo,
    vectors: dict[int, np.ndarray],
    now: str,
    report: ScanReport,
) -> None:
    path = str(photo.path)
    if photo.status == "unchanged":  # touched, same bytes: remember the new time only
        sql.run(db, "UPDATE {photos} SET size = ?, mtime = ? WHERE path = ?", (photo.size, photo.mtime, path))
        report.unchanged += 1
        return
    if photo.stored is not None:
        sql.run(db, "DELETE FROM {photos} WHERE id = ?", (photo.stored[0],))
        report.changed += 1
    else:
        report.new += 1
    if photo.status == "ok" and photo.sha256:
        twin = sql.rows(
            db,
            "SELECT path FROM {photos} WHERE sha256 = ? AND status <> 'duplicate' LIMIT 1",
            (photo.sha256,),
        )
        if twin:
            photo.status, photo.reason = "duplicate", f"the same photo as {twin[0][0]}"
    width, height = photo.image.size if photo.image is not None else (0, 0)
    row = sql.rows(
        db,
        "INSERT INTO {photos} (path, sha256, size, mtime, width, height, status, reason, scanned) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (path, photo.sha256, photo.size, photo.mtime, width, height, photo.status, photo.reason, now),
    )
    if photo.status == "failed":
        report.failed.append((path, photo.reason))
    elif photo.status == "no_face":
        report.no_face += 1
    elif photo.status == "duplicate":
        report.duplicates += 1
    if photo.status != "ok":
        return
    photo_id = int(row[0][0])
    faces = [
        (
            photo_id,
            face_key(photo.sha256, face),
            json.dumps(face.to_dict()["box"]),
            _landmarks(face),
            float(face.score),
            q,
            vector_bytes(vectors[id(face)]),
        )
        for face, q in zip(photo.faces, photo.qualities)
        if id(face) in vectors
    ]
    sql.many(
        db,
        "INSERT INTO {faces} (photo_id, key, box, landmarks, score, quality, vector) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        faces,
    )
    report.faces_added += len(faces)


def face_key(photo_sha256: str, face: Face) -> str:
    """A face's identity: its photo's bytes and its box (galleries store it as the face's hash)."""
    box = ",".join(f"{v:.1f}" for v in face.box)
    return hashlib.sha256(f"{photo_sha256}:{box}".encode()).hexdigest()


def _landmarks(face: Face) -> str:
    return json.dumps({"scheme": face.landmark_scheme, "points": face.to_dict()["landmarks"]})


class _progress_bar:  # noqa: N801 - used as a context manager, like tqdm itself
    """A tqdm bar over photos (stderr), or nothing."""

    def __init__(self, total: int, show: bool | None) -> None:
        self.total, self.show = total, show
        self._bar: Any = None

    def __enter__(self) -> Callable[[int], None]:
        import sys

        from tqdm import tqdm

        disable = (not sys.stderr.isatty()) if self.show is None else not self.show
        self._bar = tqdm(total=self.total, unit="photo", desc="scanning", disable=disable or self.total == 0)
        update: Callable[[int], None] = self._bar.update
        return update

    def __exit__(self, *exc: object) -> None:
        self._bar.close()
