"""A photo library in a PostgreSQL gallery (pgserver), with real faces: scanning, grouping,
naming, corrections read back through new connections, erasure, reset and delete."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from faceverify.cluster import CorrectionError, Library, open_library
from faceverify.gallery.catalog import PostgresCatalog
from faceverify.gallery.gallery import Gallery
from faceverify.gallery.postgres import PostgresStore
from tests.conftest import SHARED_FACES

#: Who is in which photo of the tree (``events/`` holds two photos of two people each).
PEOPLE = {
    "kit": {
        "people/kit_harington/john1.jpeg",
        "people/kit_harington/john2.jpeg",
        "events/johnsnow_test1.jpg",
        "events/kit_with_rose.jpg",
    },
    "rose": {"people/rose_leslie/img1.jpg", "people/rose_leslie/img2.jpg", "events/kit_with_rose.jpg"},
    "obama": {"people/obama/obama.jpg", "people/obama/obama2.jpg", "events/obama_and_biden.jpg"},
    "biden": {"people/biden/biden.jpg", "people/biden/biden2.jpg", "events/obama_and_biden.jpg"},
    "alex": {"people/alex_lacamoire/img1.jpg", "events/alex_lacamoire1.jpg"},
}
#: Photos are scanned at this size: the faces stay large enough, and a scan takes seconds.
SIDE = 300


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``photos/``: the shared people and probe photos, reduced to ``SIDE`` px; ``probe/``:
    obama1.jpg, kept out of the library to identify with."""
    if not SHARED_FACES.is_dir():
        pytest.skip(f"real face photos not found at {SHARED_FACES}")
    from PIL import Image

    root = tmp_path_factory.mktemp("pg-library").resolve()
    sources = [(p, Path("people") / p.relative_to(SHARED_FACES / "gallery")) for p in _images("gallery")]
    sources += [(p, Path("events") / p.name) for p in _images("probes")]
    for source, relative in sources:
        target = root / "probe" / source.name if source.name == "obama1.jpg" else root / "photos" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(source) as image:
            small = image.convert("RGB")
            small.thumbnail((SIDE, SIDE))
            small.save(target, format="JPEG", quality=92)
    return root


def _images(folder: str) -> list[Path]:
    return sorted(p for p in (SHARED_FACES / folder).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))


def _reset(url: str) -> None:
    store = PostgresStore(url)
    try:
        store.drop()
    finally:
        store.close()


@pytest.fixture
def library(pg_url: str, tree: Path, dlib_model: Any) -> Iterator[Library]:
    """A library on an emptied PostgreSQL gallery that has scanned and grouped ``tree``."""
    _reset(pg_url)
    lib = open_library(pg_url, dlib_model)
    try:
        lib.scan(tree / "photos")
        lib.group()
        yield lib
    finally:
        lib.gallery.close()
        _reset(pg_url)


def _photo_sets(library: Library, tree: Path) -> set[frozenset[str]]:
    """Each group as the set of its faces' photos (relative to ``photos/``)."""
    found: dict[int, set[str]] = {}
    for face in library.faces():
        if face.group is not None:
            found.setdefault(face.group, set()).add(Path(face.photo).relative_to(tree / "photos").as_posix())
    return {frozenset(photos) for photos in found.values()}


def _face(library: Library, photo: str, *, group: int | None = None) -> int:
    """The face of ``photo`` (the one in ``group`` for photos of two people)."""
    faces = [f for f in library.faces() if f.photo.endswith("/" + photo)]
    if group is not None:
        faces = [f for f in faces if f.group == group]
    assert len(faces) == 1, (photo, faces)
    return faces[0].id


def _group(library: Library, photo: str) -> int:
    group = next(f.group for f in library.faces() if f.id == _face(library, photo))
    assert group is not None, photo
    return group


def _library_tables(url: str) -> dict[str, set[str]]:
    """The library tables in the database, by schema."""
    import psycopg

    with psycopg.connect(url) as db:
        rows = db.execute(
            "SELECT schemaname, tablename FROM pg_tables WHERE tablename LIKE 'faceverify\\_library\\_%'"
        ).fetchall()
    tables: dict[str, set[str]] = {}
    for schema, table in rows:
        tables.setdefault(schema, set()).add(table)
    return tables


def test_groups_become_gallery_people_that_identify_finds(
    library: Library, tree: Path, pg_url: str, dlib_model: Any
) -> None:
    assert _photo_sets(library, tree) == {frozenset(p) for p in PEOPLE.values()}
    obama = _group(library, "people/obama/obama.jpg")
    assert library.name(obama, "Barack Obama") == 3
    assert {p.name: p.faces for p in library.gallery.people()} == {"Barack Obama": 3}
    assert library.gallery.identify(tree / "probe" / "obama1.jpg").name == "Barack Obama"
    again = open_library(pg_url, dlib_model)  # another pool: everything was committed
    with again.gallery:
        report = again.group(full=True)
        assert report.named == 1 and report.groups == len(PEOPLE)
        assert {g.id: g.name for g in again.groups()}[obama] == "Barack Obama"
        assert _group(again, "people/obama/obama.jpg") == obama


def test_corrections_round_trip_through_postgres(
    library: Library, tree: Path, pg_url: str, dlib_model: Any
) -> None:
    kit = _group(library, "people/kit_harington/john1.jpeg")
    alex = _group(library, "people/alex_lacamoire/img1.jpg")
    biden = _group(library, "people/biden/biden.jpg")
    split_off = library.split(kit, [_face(library, "events/johnsnow_test1.jpg")])
    own = library.move(_face(library, "events/alex_lacamoire1.jpg"), None)
    paired = _face(library, "events/obama_and_biden.jpg", group=biden)
    library.reject(paired, biden)
    with pytest.raises(CorrectionError, match="split apart"):
        library.merge(kit, [split_off])
    assert library.merge(alex, [own]) == alex  # the move undone by a merge

    again = open_library(pg_url, dlib_model)
    with again.gallery:
        again.group(full=True)
        expected = {
            frozenset(PEOPLE["kit"] - {"events/johnsnow_test1.jpg"}),
            frozenset({"events/johnsnow_test1.jpg"}),
            frozenset(PEOPLE["biden"] - {"events/obama_and_biden.jpg"}),
            *(frozenset(PEOPLE[p]) for p in ("rose", "obama", "alex")),
        }
        assert _photo_sets(again, tree) == expected
        assert next(f.group for f in again.faces() if f.id == paired) is None
        assert {g.id for g in again.groups() if g.anchored} >= {kit, split_off, biden, alex}
        with pytest.raises(CorrectionError, match=f"face {paired}.*group {biden}"):
            again.move(paired, biden)


def test_erasing_a_named_person_erases_their_group_and_faces(library: Library, tree: Path) -> None:
    obama = _group(library, "people/obama/obama.jpg")
    faces = [f.id for f in library.faces(obama)]
    library.name(obama, "Barack Obama")
    assert library.gallery.remove("Barack Obama") == 3
    with library.store.sql_read() as db:
        marks = ",".join("?" * len(faces))
        left = library.sql.rows(db, f"SELECT count(*) FROM {{faces}} WHERE id IN ({marks})", faces)
        groups = library.sql.rows(db, "SELECT count(*) FROM {groups} WHERE id = ?", (obama,))
    assert left[0][0] == 0 and groups[0][0] == 0
    assert library.gallery.people() == []
    # the photos stay listed, so the next scan does not find the erased faces again
    report = library.scan(tree / "photos")
    assert (report.new, report.changed, report.faces_added) == (0, 0, 0)
    library.group(full=True)
    assert _photo_sets(library, tree) == {frozenset(PEOPLE[p]) for p in ("kit", "rose", "biden", "alex")}


def test_a_reset_and_a_delete_take_the_library_tables_with_them(
    library: Library, tree: Path, pg_url: str, dlib_model: Any
) -> None:
    library.name(_group(library, "people/obama/obama.jpg"), "Barack Obama")
    assert len(_library_tables(pg_url)["public"]) == 6
    assert isinstance(library.store, PostgresStore)
    library.store.drop()  # the reset
    assert "public" not in _library_tables(pg_url)
    empty = open_library(pg_url, dlib_model)
    with empty.gallery:
        assert empty.export()["photos"] == [] and empty.groups() == []

    catalog = PostgresCatalog(pg_url)
    try:
        catalog.create("family")
        own = Library(Gallery(catalog.open("family"), dlib_model))
        with own.gallery:
            own.scan(tree / "photos" / "people" / "obama")
            own.group()
            own.name(_group(own, "people/obama/obama.jpg"), "Barack Obama")
        schemas = set(_library_tables(pg_url)) - {"public"}
        assert len(schemas) == 1
        catalog.delete("family")
        assert "family" not in catalog.names()
        left = _library_tables(pg_url)
        assert not set(left) & schemas and len(left["public"]) == 6  # the other gallery's stay
        assert any(e["action"] == "delete" for e in catalog.deleted_audit("family"))
    finally:
        if catalog.exists("family"):
            catalog.delete("family")
        catalog.close()
