"""Threads of one process sharing one embedded gallery, as a multi-threaded server would."""

from __future__ import annotations

import threading
from pathlib import Path

from faceverify.gallery.sqlite import SQLiteStore
from tests.gallery.conftest import MANIFEST, faces

WORKERS, PEOPLE_EACH = 4, 15


def test_threads_enrolling_and_identifying_at_once_lose_nothing(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "g")
    store.bind(MANIFEST)
    start = threading.Barrier(WORKERS)
    failures: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            start.wait()  # all at once, to make the threads meet inside the store
            for i in range(PEOPLE_EACH):
                name = f"w{worker}-{i}"
                face = faces(1, 1000 * worker + i, name)[0]
                store.add(name, [face], {"worker": worker})
                # each finds the person it just enrolled, while the others keep writing
                found = store.search(face.vector, 3, "best" if i % 2 else "centroid")
                assert found[0].name == name, (name, found)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    people = store.people()
    assert len(people) == WORKERS * PEOPLE_EACH
    assert all(p.faces == 1 for p in people)
    probe = faces(1, 1000 * 2 + 7, "w2-7")[0].vector
    assert store.search(probe, 1, "best")[0].name == "w2-7"
    store.close()
