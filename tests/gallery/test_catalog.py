"""Named galleries side by side: folders of embedded galleries, or PostgreSQL schemas."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from faceverify.errors import GalleryError, GalleryExistsError, UnknownGalleryError
from faceverify.gallery.catalog import GalleryCatalog, check_gallery_name, open_catalog
from tests.gallery.conftest import MANIFEST, faces


@pytest.fixture(params=["sqlite", "postgres"])
def catalog(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GalleryCatalog]:
    location = tmp_path / "galleries" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    opened = open_catalog(location)
    yield opened
    for name in opened.names():
        opened.delete(name)
    opened.close()


def test_galleries_are_created_listed_kept_apart_and_deleted(catalog: GalleryCatalog) -> None:
    catalog.create("staff")
    catalog.create("visitors-2026")
    assert catalog.names() == ["staff", "visitors-2026"]
    for name, seed in (("staff", 1), ("visitors-2026", 2)):
        with catalog.open(name) as store:
            store.bind(MANIFEST)
            store.add(f"someone-{name}", faces(2, seed, name), None)
    with catalog.open("staff") as store:
        assert [p.name for p in store.people()] == ["someone-staff"]
        query = faces(1, 1, "staff")[0].vector
        assert store.search(query / np.linalg.norm(query), 1, "best")[0].name == "someone-staff"
    with pytest.raises(GalleryExistsError, match="already exists"):
        catalog.create("staff")
    catalog.delete("visitors-2026")
    assert catalog.names() == ["staff"] and not catalog.exists("visitors-2026")
    with pytest.raises(UnknownGalleryError, match="no gallery named 'visitors-2026'"):
        catalog.open("visitors-2026")
    with pytest.raises(UnknownGalleryError):
        catalog.delete("visitors-2026")
    catalog.ping()


@pytest.mark.parametrize("name", ["", "..", "../etc", "a/b", "Staff", "-x", "x" * 49, "a b", "a\x00", "é"])
def test_names_that_could_leave_the_catalogue_are_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(GalleryError, match="not valid"):
        check_gallery_name(name)
    catalog = open_catalog(tmp_path / "galleries")
    with pytest.raises(GalleryError, match="not valid"):
        catalog.create(name)
    assert list((tmp_path / "galleries").iterdir()) == []


def test_a_cli_gallery_folder_moved_in_is_listed(tmp_path: Path) -> None:
    from faceverify.gallery.sqlite import SQLiteStore

    with SQLiteStore(tmp_path / "galleries" / "old") as store:
        store.bind(MANIFEST)
    (tmp_path / "galleries" / "Not A Gallery").mkdir()
    assert open_catalog(tmp_path / "galleries").names() == ["old"]
