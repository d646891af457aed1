"""The embedded gallery's own behaviour: its index, its files, and their failures."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from faceverify.errors import GalleryError
from faceverify.gallery.base import StoredFace
from faceverify.gallery.index import INDEX_ARRAYS
from faceverify.gallery.sqlite import SQLiteStore
from tests.gallery.conftest import DIM, MANIFEST


def _random_gallery(folder: Path, people: int, index_min_faces: int) -> tuple[SQLiteStore, np.ndarray]:
    store = SQLiteStore(folder, index_min_faces=index_min_faces)
    store.bind(MANIFEST)
    vectors = np.random.default_rng(0).normal(size=(people, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for p in range(people):
        store.add(f"p{p}", [StoredFace(vectors[p], f"h{p}", "x")], None)
    return store, vectors


def test_large_gallery_index_recall_persistence_and_tombstones(tmp_path: Path) -> None:
    store, vectors = _random_gallery(tmp_path / "g", 1500, index_min_faces=1000)
    queries = vectors[:200] + np.random.default_rng(1).normal(0, 0.05, (200, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    truth = [f"p{i}" for i in np.argmax(queries @ vectors.T, axis=1)]
    found = [store.search(q, 1, "best")[0].name for q in queries]
    recall = np.mean([a == b for a, b in zip(found, truth)])
    assert recall >= 0.97
    assert (tmp_path / "g" / INDEX_ARRAYS).is_file()
    store.remove("p0")
    store.close()
    reopened = SQLiteStore(tmp_path / "g", index_min_faces=1000)  # loads the saved index
    assert reopened.search(vectors[0], 3, "best")[0].name != "p0"
    reopened.close()


def test_a_missing_or_broken_index_is_rebuilt_from_sqlite(tmp_path: Path) -> None:
    store, vectors = _random_gallery(tmp_path / "g", 1200, index_min_faces=1000)
    store.search(vectors[3], 1, "best")
    store.close()
    for saved in (tmp_path / "g").glob("index*"):
        saved.write_bytes(b"garbage")
    rebuilt = SQLiteStore(tmp_path / "g", index_min_faces=1000)
    assert rebuilt.search(vectors[3], 1, "best")[0].name == "p3"
    rebuilt.close()


def test_corrupt_locked_and_misplaced_databases_give_clear_errors(tmp_path: Path) -> None:
    folder = tmp_path / "corrupt"
    folder.mkdir()
    (folder / "gallery.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(GalleryError, match="corrupt database or another file"):
        SQLiteStore(folder)
    (tmp_path / "file").write_text("x")
    with pytest.raises(GalleryError, match="is a file; a gallery is a folder"):
        SQLiteStore(tmp_path / "file")
    store = SQLiteStore(tmp_path / "locked", busy_timeout=0.2)
    store.bind(MANIFEST)
    holder = sqlite3.connect(tmp_path / "locked" / "gallery.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(GalleryError, match=r"stayed locked by another process for 0\.2 s"):
            store.add("x", [StoredFace(np.ones(DIM, np.float32), "h", "x")], None)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert store.add("x", [StoredFace(np.ones(DIM, np.float32), "h", "x")], None).added == 1


def test_a_refused_write_is_reported_as_refused_not_as_corruption(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "g")
    store.bind(MANIFEST)
    with sqlite3.connect(tmp_path / "g" / "gallery.db") as db:  # a rule the store does not know
        db.execute("CREATE TRIGGER frozen BEFORE INSERT ON faces BEGIN SELECT RAISE(ABORT, 'frozen'); END")
    with pytest.raises(GalleryError, match="refused a change that breaks its rules") as info:
        store.add("x", [StoredFace(np.ones(DIM, np.float32), "h", "x")], None)
    assert "corrupt" not in str(info.value)
    assert store.people() == []
    store.close()
