"""Both real backends: SQLite in a temporary folder, PostgreSQL + pgvector via pgserver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from faceverify.gallery.base import GalleryStore, StoredFace

DIM = 16
MANIFEST = {"model": "test", "embedding_dim": DIM, "preprocess_fingerprint": "f", "weights_sha256": "w"}
BACKENDS = ["sqlite", "postgres"]


def open_backend(kind: str, location: Path | str) -> GalleryStore:
    if kind == "postgres":
        from faceverify.gallery.postgres import PostgresStore

        return PostgresStore(str(location))
    from faceverify.gallery.sqlite import SQLiteStore

    return SQLiteStore(location)


@pytest.fixture
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """Where a fresh gallery of the parametrised backend lives (emptied afterwards)."""
    if request.param == "sqlite":
        yield tmp_path / "gallery"
        return
    url = request.getfixturevalue("pg_url")
    _drop(url)
    yield url
    _drop(url)


def _drop(url: str) -> None:
    from faceverify.gallery.postgres import PostgresStore

    with PostgresStore(url) as store:
        store.drop()


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(backend: str, location: Any) -> Iterator[GalleryStore]:
    with open_backend(backend, location) as opened:
        opened.bind(MANIFEST)
        yield opened


def faces(count: int, seed: int, prefix: str) -> list[StoredFace]:
    rng = np.random.default_rng(seed)
    return [
        StoredFace(rng.normal(size=DIM).astype(np.float32), f"{prefix}-{i}", f"{prefix}/{i}.jpg")
        for i in range(count)
    ]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # every test that asks for a backend runs on both, with matching location fixtures
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize(("backend", "location"), [(b, b) for b in BACKENDS], indirect=True)
