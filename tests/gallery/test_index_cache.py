"""The index cache of the embedded gallery: each store's index follows what other stores
write to the same folder, and a rebuild runs beside the searches, not in their way."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from faceverify.errors import GalleryError
from faceverify.gallery.base import StoredFace
from faceverify.gallery.index import FaceIndex
from faceverify.gallery.sqlite import SQLiteStore
from tests.gallery.conftest import DIM, MANIFEST

VECTORS = np.random.default_rng(5).normal(size=(500, DIM)).astype(np.float32)
VECTORS /= np.linalg.norm(VECTORS, axis=1, keepdims=True)


def _enrol(store: SQLiteStore, people: range) -> None:
    for p in people:
        store.add(f"p{p}", [StoredFace(VECTORS[p], f"h{p}", "x")], None)


def _names(store: SQLiteStore, people: tuple[int, ...], match: str = "best") -> list[str]:
    return [store.search(VECTORS[p], 1, match)[0].name for p in people]


def test_a_second_store_catches_up_with_what_the_first_writes(tmp_path: Path) -> None:
    first = SQLiteStore(tmp_path / "g", index="pq", background=False)
    first.bind(MANIFEST)
    _enrol(first, range(300))
    assert _names(first, (5,)) == ["p5"]  # builds the index and saves it
    second = SQLiteStore(tmp_path / "g", index="pq", background=False)
    assert _names(second, (7, 8), "centroid") == ["p7", "p8"]
    loaded = second._cache.index
    assert loaded is not None and loaded.saved_size == 300  # read from the folder, not rebuilt

    _enrol(first, range(300, 320))
    first.remove("p7")
    # another process's writes: appended and tombstoned by the catch-up, in both match modes
    assert _names(second, (310, 319)) == ["p310", "p319"]
    assert _names(second, (311, 7), "centroid")[0] == "p311"
    assert "p7" not in [m.name for m in second.search(VECTORS[7], 5, "best")]
    assert second._cache.index is loaded and loaded.size == 319 and loaded.max_id == 320
    first.close()
    second.close()


def test_searches_and_enrolments_go_on_while_the_index_is_rebuilt(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "g", index_min_faces=300)
    store.bind(MANIFEST)
    _enrol(store, range(400))
    assert _names(store, (0,)) == ["p0"]  # the pq index, built in the foreground
    before = store._cache.index
    inside, release = threading.Event(), threading.Event()
    rebuilt: list[FaceIndex] = []
    released: list[bool] = []

    def stall(stage: str, done: int, total: int) -> None:
        if stage == "indexing" and not inside.is_set():  # built, not yet saved or swapped in
            inside.set()
            released.append(release.wait(30))  # False: the searches waited for the rebuild

    worker = threading.Thread(target=lambda: rebuilt.append(store.reindex(progress=stall)))
    worker.start()
    try:
        assert inside.wait(30)
        _enrol(store, range(400, 420))  # the rebuild reads an older snapshot and holds no lock
        assert _names(store, (3, 205, 410, 419)) == ["p3", "p205", "p410", "p419"]
        assert store._cache.index is before
    finally:
        release.set()
        worker.join(60)
    assert released == [True]
    [index] = rebuilt
    # swapped in, caught up with the enrolments made while it was built
    assert store._cache.index is index is not before and index.kind == "pq" and index.size == 420
    assert _names(store, (3, 410, 419)) == ["p3", "p410", "p419"]
    assert store.wait_for_index(timeout=1)
    store.close()


def test_index_options_are_checked_before_the_folder_is_made(tmp_path: Path) -> None:
    with pytest.raises(GalleryError, match="unknown index kind 'flat'"):
        SQLiteStore(tmp_path / "g", index="flat")
    with pytest.raises(GalleryError, match=r"probe_share 1\.5 must be above 0"):
        SQLiteStore(tmp_path / "g", probe_share=1.5)
    assert not (tmp_path / "g").exists()
