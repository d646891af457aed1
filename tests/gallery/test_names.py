"""People's names: any text a person would type, never one that a URL or a path reinterprets."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faceverify.errors import GalleryError, UnknownPersonError
from faceverify.gallery.base import StoredFace, check_name
from faceverify.gallery.sqlite import SQLiteStore


@pytest.mark.parametrize(
    "name",
    [
        "Zoë Ångström",
        "  李小龍 ",
        "O'Brien-Smith, Jr.",
        "José (2)",
        "...",
        ".hidden",
        "a.b",
        "100%",
        "Ana?#&",
    ],
)
def test_names_people_type_are_kept(name: str) -> None:
    assert check_name(name) == name.strip()


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "empty"),
        ("   ", "empty or only spaces"),
        (".", "path step"),
        ("..", "path step"),
        (" .. ", "path step"),
        ("../staff", "'/'"),
        ("a/b", "'/'"),
        ("a\\b", repr("\\")),
        ("line\nbreak", "U+000A"),
        ("tab\there", "U+0009"),
        ("nul\x00", "U+0000"),
        ("bell\x07", "U+0007"),
        ("para\u2029graph", "U+2029"),
        ("evil\u202egnp.exe", "U+202E"),  # right-to-left override: shows as another name
        ("x" * 201, "too long"),
    ],
)
def test_names_a_url_or_path_would_reinterpret_are_refused(name: str, why: str) -> None:
    with pytest.raises(GalleryError, match=re.escape(why)):
        check_name(name)


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(st.text(max_size=40))
def test_every_accepted_name_is_one_url_path_segment(name: str) -> None:
    """Whatever is accepted survives a client's path normalisation as one segment."""
    try:
        cleaned = check_name(name)
    except GalleryError:
        return
    base = "http://127.0.0.1/v1/galleries/staff/people/"
    url = httpx.URL(base + quote(cleaned, safe=""))
    assert url.path.startswith("/v1/galleries/staff/people/") and url.path.count("/") == 5
    assert cleaned.strip() == cleaned and cleaned not in (".", "..")


def _face(seed: int, dim: int = 8) -> StoredFace:
    vector = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return StoredFace(vector / np.linalg.norm(vector), f"{seed:064x}", f"photo{seed}.jpg")


def test_a_person_is_removed_by_id_whatever_the_stored_name(tmp_path: Path) -> None:
    """A gallery made before names were checked still opens; its '..' goes by id."""
    with SQLiteStore(tmp_path / "g") as store:
        store.bind({"model": "m", "embedding_dim": 8})
        for seed, name in enumerate(["ann", "..", "bob"]):
            store.add(name, [_face(seed)], None)  # the store itself takes names as given
        people = {person.name: person for person in store.people()}
        assert sorted(people) == ["..", "ann", "bob"] and len({p.id for p in people.values()}) == 3
        assert people[".."].to_dict()["id"] == people[".."].id
        assert store.remove_id(people[".."].id) == ("..", 1)
        assert sorted(p.name for p in store.people()) == ["ann", "bob"]
        with pytest.raises(UnknownPersonError, match=f"no person with id {people['..'].id}"):
            store.remove_id(people[".."].id)
        new = store.add("cy", [_face(9)], None)
        assert new.added == 1 and max(p.id for p in store.people()) > people["bob"].id  # ids never reused
