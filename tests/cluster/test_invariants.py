"""The library's promises under the cases a review found breaking them: a full run and the
ids of groups the user shaped, corrections made while a run is under way, marks carried by
merges, named groups kept in step with the gallery, and scans that meet odd folders."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from faceverify.cluster import Library, open_library
from faceverify.cluster.tables import vector_bytes
from tests.cluster.conftest import dev_people


def _arc(
    *degrees: float, jitter: dict[int, tuple[int, float]] | None = None, dim: int = 128
) -> list[np.ndarray]:
    """Unit vectors at these angles on one great circle (``jitter``: index -> (axis, amount) off it)."""
    rotation, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((dim, dim)))
    out = []
    for i, angle in enumerate(degrees):
        v = np.zeros(dim)
        v[0], v[1] = np.cos(np.radians(angle)), np.sin(np.radians(angle))
        if jitter and i in jitter:
            v[jitter[i][0]] = jitter[i][1]
        v = rotation @ v
        out.append((v / np.linalg.norm(v)).astype(np.float32))
    return out


def _inject(library: Library, faces: list[tuple[str, np.ndarray]]) -> list[int]:
    """Faces with chosen vectors, as a scan would store them (photo rows by name)."""
    ids = []
    with library.store.sql_write() as db:
        for photo, vector in faces:
            path = f"/synthetic/{photo}"
            row = library.sql.rows(db, "SELECT id FROM {photos} WHERE path = ?", (path,))
            if not row:
                row = library.sql.rows(
                    db,
                    "INSERT INTO {photos} (path, sha256, size, mtime, status, scanned) "
                    "VALUES (?, ?, 1, 1, 'ok', 'now') RETURNING id",
                    (path, hashlib.sha256(photo.encode()).hexdigest()),
                )
            key = hashlib.sha256(vector.tobytes()).hexdigest()
            made = library.sql.rows(
                db,
                "INSERT INTO {faces} (photo_id, key, box, landmarks, score, quality, vector) "
                "VALUES (?, ?, '{{}}', '{{}}', 1, 1.0, ?) RETURNING id",
                (int(row[0][0]), key, vector_bytes(vector)),
            )
            ids.append(int(made[0][0]))
    return ids


@pytest.fixture
def library(tmp_path: Path, dlib_model: Any) -> Any:
    lib = open_library(tmp_path / "db", dlib_model)
    yield lib
    lib.gallery.close()


def test_a_full_run_never_gives_a_shaped_groups_id_to_faces_that_were_not_its_own(library: Library) -> None:
    # a1, a2 one person; b1 between them and R; R shares photo p1 with a1 (two look-alikes)
    vectors = _arc(30.4, 48.6, 0.0, 0.0, 16.3, jitter={3: (2, 0.12)})
    rejected, other, a1, a2 = _inject(
        library,
        [("p1.jpg", vectors[0]), ("p2.jpg", vectors[1]), ("p1.jpg", vectors[2]), ("p3.jpg", vectors[3])],
    )
    library.group(full=True)
    ann = library.face(a1).group
    assert ann is not None
    library.name(ann, "Ann")
    library.reject(rejected, ann)
    (b1,) = _inject(library, [("p4.jpg", vectors[4])])
    library.group()
    library.group(full=True)
    assert library.face(rejected).group != ann  # "not Ann", ever
    assert library.face(rejected).group != library.face(a1).group  # one photo, one person
    assert library.face(a1).group == library.face(a2).group == ann
    del other, b1


def test_a_correction_made_during_a_run_is_not_overwritten(
    library: Library, dlib_model: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vectors = _arc(0.0, 3.0, 6.0, 60.0, 63.0)
    faces = _inject(library, [(f"p{i}.jpg", v) for i, v in enumerate(vectors) if i != 2])
    library.group(full=True)
    faces.insert(2, *_inject(library, [("p2.jpg", vectors[2])]))  # new: the next run places it
    other = open_library(tmp_path / "db", dlib_model)  # another process's handle
    real = Library._labels

    def correcting(self: Library, *args: Any) -> Any:
        found = real(self, *args)
        other.move(faces[2], None)  # the user moves a face while the run works
        return found

    monkeypatch.setattr(Library, "_labels", correcting)
    library.group()
    moved = library.face(faces[2])
    assert moved.pinned and moved.group not in (library.face(faces[0]).group, None)
    other.gallery.close()


def test_merges_carry_every_mark_and_never_undo_a_split(library: Library) -> None:
    vectors = _arc(0.0, 2.0, 40.0, 42.0, 80.0, 82.0, 120.0, 122.0)
    faces = _inject(library, [(f"p{i}.jpg", v) for i, v in enumerate(vectors)])
    library.group(full=True)
    a, b, c, d = (library.face(faces[i]).group for i in (0, 2, 4, 6))
    assert len({a, b, c, d}) == 4
    marked = faces[6]  # a face of d, marked "not" a and "not" b
    library.reject(marked, a)
    library.reject(marked, b)
    library.move(marked, d)
    kept = library.merge(a, [b])  # both marks now point at the survivor: one mark, no crash
    with pytest.raises(Exception, match="marked not the person"):
        library.merge(kept, [d])
    split = library.split(c, [faces[5]])
    library.merge(kept, [split])  # the split-off group joins a third one...
    with pytest.raises(Exception, match="split apart"):
        library.merge(kept, [c])  # ...and the split still holds


def test_every_confirmed_face_of_a_named_group_is_enrolled(library: Library) -> None:
    vectors = _arc(0.0, 2.0, 4.0, 6.0, 50.0)
    faces = _inject(library, [(f"p{i}.jpg", v) for i, v in enumerate(vectors[:3])])
    library.group(full=True)
    group = library.face(faces[0]).group
    assert group is not None
    library.name(group, "Tom")
    more = _inject(library, [("p3.jpg", vectors[3]), ("p4.jpg", vectors[4])])
    library.group()
    assert library.face(more[0]).group == group and not library.face(more[0]).pinned
    library.reject(more[1], group)  # a mark confirms the rest of the group: enrolled too
    people = {p.name: p.faces for p in library.gallery.people()}
    assert people["Tom"] == 4


def _photos(folder: Path, people: int, per: int) -> Path:
    for person in dev_people(people):
        for photo in sorted(person.glob("*.jpg"))[:per]:
            (folder / person.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(photo, folder / person.name / photo.name)
    return folder


def test_a_duplicate_takes_over_when_its_original_goes(library: Library, tmp_path: Path) -> None:
    photos = _photos(tmp_path / "photos", 1, 2)
    original = sorted(photos.rglob("*.jpg"))[0]
    copy = original.with_name("zz copy.jpg")
    shutil.copy(original, copy)
    assert library.scan(photos).duplicates == 1
    original.unlink()
    library.scan(photos)
    shown = {Path(p["path"]).name: p for p in library.export()["photos"]}
    assert shown["zz copy.jpg"]["status"] == "ok" and len(shown["zz copy.jpg"]["faces"]) == 1


def test_odd_folders_are_reported_and_lose_nothing(
    library: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    photos = _photos(tmp_path / "photos", 2, 2)
    odd = os.fsencode(photos) + b"/caf\xe9.jpg"
    shutil.copy(next(photos.rglob("*.jpg")), odd.decode(errors="surrogateescape"))
    first = library.scan(photos)
    assert first.new == 4 and [r for _, r in first.failed] == ["its name is not valid UTF-8; rename it"]
    hidden = sorted(p for p in photos.iterdir() if p.is_dir())[0]
    real = os.scandir

    def refusing(path: Any = ".") -> Any:
        if os.fspath(path) == str(hidden):
            raise PermissionError(13, "Permission denied", str(hidden))
        return real(path)

    monkeypatch.setattr(os, "scandir", refusing)
    again = library.scan(photos)  # a folder that cannot be listed for a moment
    assert again.removed == 0 and any("cannot list this folder" in r for _, r in again.failed)
    assert len(library.faces()) == 4
