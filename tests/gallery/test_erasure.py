"""Erasure is real: a removed person leaves no copy in any file the embedded gallery writes."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from faceverify.gallery.base import Change, StoredFace
from faceverify.gallery.catalog import FolderCatalog
from faceverify.gallery.sqlite import SQLiteStore

DIM = 64
MANIFEST = {"model": "test", "embedding_dim": DIM, "preprocess_fingerprint": "f", "weights_sha256": "w"}
PEOPLE, FACES_EACH = 2_000, 5  # 10k faces: the pq index, saved beside the database
VICTIM = "Zoë Erased-Person 17"


def _faces(person: int, count: int = FACES_EACH, start: int = 0) -> list[StoredFace]:
    rng = np.random.default_rng(person)
    centre = rng.normal(size=DIM)
    faces = []
    for k in range(start, start + count):
        vector = centre + 0.3 * np.random.default_rng((person, k)).normal(size=DIM)
        faces.append(
            StoredFace(
                (vector / np.linalg.norm(vector)).astype(np.float32), f"{person:08d}{k:056x}", f"{k}.jpg"
            )
        )
    return faces


def _fill(folder: Path) -> SQLiteStore:
    store = SQLiteStore(folder, index="pq", background=False)
    store.bind(MANIFEST)
    for person in range(PEOPLE):
        store.add(VICTIM if person == 17 else f"p{person}", _faces(person), {"badge": f"B-{person:05d}"})
    return store


def _traces(person: int) -> list[bytes]:
    """What must not survive anywhere: each vector (whole, and its first 32 bytes), each
    photo hash, the name and the metadata."""
    found = []
    for face in _faces(person):
        raw = face.vector.astype("<f4").tobytes()
        found += [raw, raw[:32], face.image_sha256.encode()]
    return [*found, VICTIM.encode("utf-8"), f"B-{person:05d}".encode()]


def _files_holding(folder: Path, traces: list[bytes]) -> list[str]:
    hits = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        hits += [f"{path.name}: {trace[:12]!r}" for trace in traces if trace in data]
    return hits


def test_a_removed_person_leaves_no_copy_in_any_file(tmp_path: Path) -> None:
    folder = tmp_path / "gallery"
    store = _fill(folder)
    other = SQLiteStore(folder, index="pq", background=False)  # another process, its index loaded
    probe = _faces(17, 1, start=99)[0].vector
    assert store.search(probe, 1, "best")[0].name == VICTIM
    assert other.search(probe, 1, "best")[0].name == VICTIM
    assert list(folder.glob("index-*.npy")) and _files_holding(folder, _traces(17))  # the test can fail

    assert store.remove(VICTIM, change=Change(actor="cli:alice")) == FACES_EACH
    assert store.search(probe, 1, "best")[0].name != VICTIM
    assert _files_holding(folder, _traces(17)) == []

    # the other process catches up, grows the gallery past its re-save point and saves its
    # own copy of the index: the erased faces were zeroed in its memory too
    for person in range(PEOPLE, PEOPLE + 250):
        store.add(f"p{person}", _faces(person), None)
    assert other.search(probe, 1, "best")[0].name != VICTIM
    assert _files_holding(folder, _traces(17)) == []
    erasures = [(e.action, e.actor, e.faces) for e in store.audit(after=PEOPLE)][:2]
    assert erasures == [("erase", "cli:alice", FACES_EACH), ("enrol", "library", FACES_EACH)]
    other.close()
    store.close()


def test_gallery_files_are_private(tmp_path: Path) -> None:
    store = _fill_small(tmp_path / "gallery")
    store.search(_faces(0, 1)[0].vector, 1, "best")
    store.close()
    assert stat.S_IMODE(os.stat(tmp_path / "gallery").st_mode) == 0o700
    for path in (tmp_path / "gallery").iterdir():
        if path.is_file() and not path.name.endswith(".lock"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def _fill_small(folder: Path) -> SQLiteStore:
    store = SQLiteStore(folder, index="pq", background=False)
    store.bind(MANIFEST)
    for person in range(40):
        store.add(VICTIM if person == 17 else f"p{person}", _faces(person), {"badge": f"B-{person:05d}"})
    return store


KILLED_AFTER_COMMIT = """
import os, sys
import numpy as np
import faceverify.gallery.sqlite as sqlite
from faceverify.gallery.sqlite import SQLiteStore
sqlite.scrub_saved = lambda *args: os._exit(9)  # killed right after the removal committed
store = SQLiteStore(sys.argv[1], index="pq", background=False)
store.remove(sys.argv[2])
"""


def test_a_removal_killed_half_way_is_finished_at_the_next_open(tmp_path: Path) -> None:
    folder = tmp_path / "gallery"
    store = _fill_small(folder)
    store.search(_faces(17, 1)[0].vector, 1, "best")  # the index is saved, with the victim
    store.close()
    script = textwrap.dedent(KILLED_AFTER_COMMIT)
    killed = subprocess.run([sys.executable, "-c", script, str(folder), VICTIM], check=False)
    assert killed.returncode == 9
    reopened = SQLiteStore(folder, index="pq", background=False)
    assert VICTIM not in [p.name for p in reopened.people()]
    assert _files_holding(folder, _traces(17)) == []  # the next open finished the erasure
    reopened.close()


def test_a_crash_while_deleting_a_gallery_is_swept_at_the_next_open(tmp_path: Path) -> None:
    catalog = FolderCatalog(tmp_path)
    catalog.create("staff")
    (tmp_path / "staff").rename(tmp_path / ".deleting-staff-0badc0de")  # killed after the rename
    catalog.create("staff")
    catalog.delete("staff")  # a later delete of the same name is not blocked
    FolderCatalog(tmp_path)
    assert not list(tmp_path.glob(".deleting-*")) and catalog.names() == []


def test_the_audit_log_tells_a_scripted_session_without_names(tmp_path: Path) -> None:
    catalog = FolderCatalog(tmp_path)
    catalog.create("staff", change=Change(actor="cli:root"))
    with catalog.open("staff") as store:
        first_uuid = store.uuid
        store.bind(MANIFEST)
        enrolled = store.add(VICTIM, _faces(17, 2), None, change=Change(actor="key:aa11"))
        store.add(VICTIM, _faces(17, 1, start=5), None, create=False, change=Change(actor="key:aa11"))
        store.add("bob", _faces(18, 1), None)
        store.remove_id(enrolled.person_id, change=Change(actor="key:bb22"))
        entries = [(e.action, e.actor, e.person_id, e.faces) for e in store.audit()]
    assert entries == [
        ("create", "cli:root", None, 0),
        ("enrol", "key:aa11", enrolled.person_id, 2),
        ("add", "key:aa11", enrolled.person_id, 1),
        ("enrol", "library", enrolled.person_id + 1, 1),
        ("erase", "key:bb22", enrolled.person_id, 3),
    ]
    catalog.delete("staff", change=Change(actor="cli:root"))
    kept = catalog.deleted_audit("staff")
    assert [e["action"] for e in kept] == ["create", "enrol", "add", "enrol", "erase", "delete"]
    assert {e["uuid"] for e in kept} == {first_uuid} and kept[-1]["actor"] == "cli:root"
    archive = next((tmp_path / ".audit").glob("staff.*.jsonl"))
    assert VICTIM not in archive.read_text() and stat.S_IMODE(archive.stat().st_mode) == 0o600
    catalog.create("staff")
    assert catalog.uuid("staff") not in (None, first_uuid)  # a new gallery, never the old cache
    os.utime(archive, (0, 0))  # older than the kept days: gone at the next open
    assert FolderCatalog(tmp_path, audit_days=30).deleted_audit("staff") == []


@pytest.mark.parametrize("create", [True, False])
def test_create_only_and_existing_only_enrolments(tmp_path: Path, create: bool) -> None:
    from faceverify.errors import PersonExistsError, UnknownPersonError

    store = _fill_small(tmp_path / "g")
    error = PersonExistsError if create else UnknownPersonError
    name = "p3" if create else "nobody"
    with pytest.raises(error):
        store.add(name, _faces(900, 1), None, create=create)
    assert [p.faces for p in store.people() if p.name == "p3"] == [FACES_EACH]
    assert "nobody" not in [p.name for p in store.people()]
    store.close()


def test_a_request_key_makes_a_retry_safe(tmp_path: Path) -> None:
    from faceverify.errors import IdempotencyError

    store = _fill_small(tmp_path / "g")
    change = Change(actor="key:aa11", request_key="req-1", fingerprint="same")
    first = store.add("new", _faces(500, 2), None, create=True, change=change)
    again = store.add("new", _faces(500, 2), None, create=True, change=change)
    assert (again.added, again.person_id, again.replayed) == (first.added, first.person_id, True)
    assert [p.faces for p in store.people() if p.name == "new"] == [2]
    with pytest.raises(IdempotencyError, match="used before for a different request"):
        store.add("new", _faces(501, 1), None, change=Change(request_key="req-1", fingerprint="other"))
    store.remove("new")  # the key's stored answer goes with the person
    replay = store.add("new", _faces(500, 2), None, create=True, change=change)
    assert not replay.replayed and replay.added == 2
    store.close()


def test_an_index_saved_from_an_older_snapshot_drops_what_was_erased(tmp_path: Path) -> None:
    """A background rebuild or another process may save an index built before a removal,
    after the removal scrubbed the files: the save itself drops the erased faces."""
    from faceverify.gallery.index import FaceIndex

    folder = tmp_path / "gallery"
    store = _fill_small(folder)
    with store._snapshot():  # what a rebuild started before the removal reads
        stale = FaceIndex.build(DIM, "pq", *store._cache.source.faces())
    store.remove(VICTIM)
    assert _files_holding(folder, _traces(17)) == []
    store._cache.save(stale)  # the rebuild's save lands after the scrub
    assert _files_holding(folder, _traces(17)) == []
    assert store.search(_faces(17, 1)[0].vector, 1, "best")[0].name != VICTIM
    store.close()


def test_a_store_of_a_deleted_gallery_never_writes_into_its_successor(tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "gallery"
    old = _fill_small(folder)
    old.search(_faces(3, 1)[0].vector, 1, "best")
    shutil.rmtree(folder)  # deleted, and made again under the same name
    new = SQLiteStore(folder, index="pq", background=False)
    new.bind(MANIFEST)
    for person in range(100, 130):
        new.add(f"n{person}", _faces(person), None)
    assert new.uuid != old.uuid
    old._cache.save(old._cache.index)  # type: ignore[arg-type]  # e.g. a re-save after growth in another worker
    assert _files_holding(folder, _traces(17)) == []
    assert new.search(_faces(105, 1)[0].vector, 1, "best")[0].name == "n105"
    old.remove_id(1)  # scrubbing by its own face ids must not touch the new gallery's index
    assert new.search(_faces(100, 1)[0].vector, 1, "best")[0].name == "n100"
    old.close()
    new.close()


def test_an_erasure_a_reader_held_up_is_finished_later(tmp_path: Path) -> None:
    import sqlite3

    folder = tmp_path / "gallery"
    store = _fill_small(folder)
    store.search(_faces(17, 1)[0].vector, 1, "best")
    reader = sqlite3.connect(folder / "gallery.db")
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM faces").fetchone()  # an old snapshot: the WAL cannot empty
    store.remove(VICTIM)
    pending = store._db.execute("SELECT COUNT(*) FROM erasures WHERE done = 0").fetchone()[0]
    assert pending == FACES_EACH and (folder / "gallery.db-wal").stat().st_size > 0
    reader.execute("COMMIT")
    reader.close()
    store.close()  # tries once more
    reopened = SQLiteStore(folder, index="pq", background=False)
    assert reopened._db.execute("SELECT COUNT(*) FROM erasures WHERE done = 0").fetchone()[0] == 0
    assert _files_holding(folder, _traces(17)) == []
    reopened.close()


def test_a_kept_request_answer_never_names_another_person(tmp_path: Path) -> None:
    store = _fill_small(tmp_path / "g")
    victim_face = _faces(17, 1)[0]  # already enrolled as the victim
    change = Change(request_key="req-9", fingerprint="f")
    first = store.add("newcomer", [victim_face, *_faces(700, 1)], None, change=change)
    assert any(VICTIM in str(d) for d in first.skipped)  # the live answer may say whose
    store.remove(VICTIM)
    assert _files_holding(tmp_path / "g", [VICTIM.encode("utf-8")]) == []
    replay = store.add("newcomer", [victim_face, *_faces(700, 1)], None, change=change)
    assert replay.replayed and not any(VICTIM in str(d) for d in replay.skipped)
    store.close()
