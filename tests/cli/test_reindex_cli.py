"""`faceverify reindex`: rebuilds the embedded gallery's index and says what it built."""

from __future__ import annotations

import json
from pathlib import Path

from faceverify.cli.common import EXIT_OK
from faceverify.gallery.base import StoredFace
from faceverify.gallery.sqlite import SQLiteStore
from faceverify.gallery.synthetic_vectors import FaceSpace
from tests.cli.test_cli import Capture, run
from tests.gallery.conftest import DIM, MANIFEST


def test_reindex_reports_the_index_it_built(capsys: Capture, tmp_path: Path) -> None:
    vectors = FaceSpace(DIM).photos(FaceSpace(DIM).identities(300, seed=1), seed=2)
    with SQLiteStore(tmp_path / "g") as store:
        store.bind(MANIFEST)
        for i, vector in enumerate(vectors):
            store.add(f"p{i}", [StoredFace(vector, f"h{i}", "x")], None)
    code, out, err = run(capsys, "reindex", "--db", str(tmp_path / "g"), "--json")
    assert code == EXIT_OK, err
    report = json.loads(out)
    assert (report["kind"], report["faces"]) == ("exact", 300)  # small galleries search exactly
    assert report["memory_mb"] > 0
    code, out, _ = run(capsys, "reindex", "--db", str(tmp_path / "g"), "-q")
    assert out.startswith("kind exact\tfaces 300\t")
