"""Rebuilding the embedded gallery's index: in the background while searches go on, on
demand, killed half-way, and while other threads enrol."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from faceverify.errors import GalleryError
from faceverify.gallery.base import StoredFace
from faceverify.gallery.index import INDEX_ARRAYS
from faceverify.gallery.sqlite import SQLiteStore
from faceverify.gallery.synthetic_vectors import FaceSpace
from tests.gallery.conftest import DIM, MANIFEST

VECTORS = FaceSpace(DIM).photos(FaceSpace(DIM).identities(2000, seed=1), seed=2)


def _enrol(store: SQLiteStore, people: range) -> None:
    for p in people:
        store.add(f"p{p}", [StoredFace(VECTORS[p], f"h{p}", "x")], None)


def _store(folder: Path, people: range, **options: object) -> SQLiteStore:
    store = SQLiteStore(folder, index_min_faces=600, **options)  # type: ignore[arg-type]
    store.bind(MANIFEST)
    _enrol(store, people)
    return store


def test_a_growing_gallery_gets_its_pq_index_in_the_background_while_searches_go_on(tmp_path: Path) -> None:
    store = _store(tmp_path / "g", range(500))
    assert store.search(VECTORS[7], 1, "best")[0].name == "p7"
    assert store._cache.index is not None and store._cache.index.kind == "exact"
    _enrol(store, range(500, 1000))
    # answered at once by the caught-up exact index while the pq index builds
    assert store.search(VECTORS[900], 1, "best")[0].name == "p900"
    assert store.wait_for_index(timeout=60)
    assert store._cache.index.kind == "pq" and store._cache.index.size == 1000
    assert (tmp_path / "g" / INDEX_ARRAYS).is_file()
    assert store.search(VECTORS[950], 1, "best")[0].name == "p950"
    store.close()


def test_without_background_the_search_that_notices_drift_rebuilds(tmp_path: Path) -> None:
    store = _store(tmp_path / "g", range(1000), background=False)
    assert store.search(VECTORS[3], 1, "best")[0].name == "p3"
    for p in range(300):  # 30% tombstones: past the rebuild share
        store.remove(f"p{p}")
    assert store.search(VECTORS[3], 1, "best")[0].name != "p3"
    assert store._cache.index is not None and store._cache.index.tombstone_share == 0.0
    assert store._cache.rebuilder is None
    store.close()


_KILLED = textwrap.dedent(
    """
    import sys, time
    from faceverify.gallery.sqlite import SQLiteStore

    def stall(stage, done, total):
        if stage == "indexing":  # the new index half-built, nothing swapped or saved yet
            print("inside", flush=True)
            time.sleep(600)

    SQLiteStore(sys.argv[1], index_min_faces=600).reindex(progress=stall)
    """
)


def test_a_kill_during_a_rebuild_leaves_the_saved_index_working(tmp_path: Path) -> None:
    store = _store(tmp_path / "g", range(1500))
    assert store.search(VECTORS[5], 1, "best")[0].name == "p5"  # builds and saves the index
    store.close()
    saved = sorted(p.name for p in (tmp_path / "g").glob("index*"))
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED, str(tmp_path / "g")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "inside", child.stderr.read() if child.stderr else ""
    child.kill()
    child.wait(timeout=30)
    assert sorted(p.name for p in (tmp_path / "g").glob("index*")) == saved
    after = SQLiteStore(tmp_path / "g", index_min_faces=600)
    assert [after.search(VECTORS[p], 1, "best")[0].name for p in (5, 700, 1499)] == ["p5", "p700", "p1499"]
    index = after._cache.index
    assert index is not None and index.kind == "pq" and index.saved_size == 1500
    after.close()


def test_enrolling_from_threads_while_the_index_is_rebuilt_loses_nobody(tmp_path: Path) -> None:
    store = _store(tmp_path / "g", range(1000))
    store.search(VECTORS[0], 1, "best")
    failures: list[BaseException] = []

    def enrol(people: range) -> None:
        try:
            _enrol(store, people)
            for p in people[::25]:  # searches meet the swap too
                assert store.search(VECTORS[p], 1, "best")[0].name == f"p{p}"
        except BaseException as exc:
            failures.append(exc)

    writers = [threading.Thread(target=enrol, args=(range(s, s + 250),)) for s in (1000, 1250, 1500, 1750)]
    for writer in writers:
        writer.start()
    rebuilt = [store.reindex().size for _ in range(3)]
    for writer in writers:
        writer.join(timeout=120)
    assert failures == []
    assert rebuilt[0] >= 1000
    assert store.search(VECTORS[0], 1, "best")[0].name == "p0"
    assert store._cache.index is not None and store._cache.index.size == 2000
    found = [store.search(VECTORS[p], 1, "best")[0].name for p in range(1000, 2000, 50)]
    assert found == [f"p{p}" for p in range(1000, 2000, 50)]
    store.close()


def test_a_bad_probe_share_is_refused_with_the_valid_range(tmp_path: Path) -> None:
    with pytest.raises(GalleryError, match=r"probe_share 0 must be above 0 and at most 1"):
        SQLiteStore(tmp_path / "g", probe_share=0)
