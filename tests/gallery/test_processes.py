"""Real processes against one gallery: a kill mid-enrolment, and concurrent writers."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from faceverify.gallery.base import GalleryStore
from tests.gallery.conftest import faces, open_backend

_CHILD = textwrap.dedent(
    """
    import sys, time
    from tests.gallery.conftest import faces, open_backend

    kind, location, job = sys.argv[1], sys.argv[2], sys.argv[3]
    store = open_backend(kind, location)
    if job == "stall":
        def stalling():
            for i, face in enumerate(faces(200, 42, "victim")):
                if i == 100:  # half the faces are inserted, the transaction is open
                    print("inside", flush=True)
                    time.sleep(600)
                yield face
        store.add("victim", stalling(), None)
    else:
        for i in range(20):
            store.add(f"{job}-{i}", faces(3, hash(job) % 1000 + i * 7, f"{job}-{i}"), {"writer": job})
        print("done", flush=True)
    """
)


def _child(backend: str, location: Any, job: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, backend, str(location), job],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],  # the children import tests.gallery.conftest
    )


def test_a_kill_during_enrolment_leaves_the_whole_person_or_nothing(
    store: GalleryStore, backend: str, location: Any
) -> None:
    store.add("survivor", faces(2, 1, "s"), None)
    child = _child(backend, location, "stall")
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "inside", child.stderr.read() if child.stderr else ""
    child.kill()  # SIGKILL: no cleanup, no rollback by the child
    child.wait(timeout=30)
    with open_backend(backend, location) as after:
        assert [(p.name, p.faces) for p in after.people()] == [("survivor", 2)]
        assert after.add("victim", faces(3, 42, "victim"), None).added == 3  # the lock is free again
        assert after.search(faces(1, 42, "victim")[0].vector, 1, "best")[0].name == "victim"
    if backend == "sqlite":
        import sqlite3

        with sqlite3.connect(location / "gallery.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_two_processes_enrolling_at_once_lose_nothing(
    store: GalleryStore, backend: str, location: Any
) -> None:
    writers = [_child(backend, location, job) for job in ("left", "right")]
    for writer in writers:
        out, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err
        assert out.strip() == "done"
    people = store.people()
    assert len(people) == 40
    assert all(p.faces == 3 for p in people)
    assert {p.meta["writer"] for p in people} == {"left", "right"}
