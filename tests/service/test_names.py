"""One enrolled name must never reach another resource: the '..' case over real HTTP."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import httpx
import hypothesis
import numpy as np
from hypothesis import strategies as st

from faceverify.gallery.base import StoredFace
from faceverify.gallery.catalog import open_catalog
from faceverify.service.settings import ServiceSettings
from tests.service.helpers import admin_key, error_of, person_images


def _plant(settings: ServiceSettings, gallery: str, name: str, source: str) -> None:
    """A person stored under ``name`` as an older faceverify could have stored it."""
    catalog = open_catalog(settings.db)
    with catalog.open(gallery) as store:
        _, _, vector = store.faces_of(source)[0]
        store.add(name, [StoredFace(np.asarray(vector), "f" * 64, "planted.png")], None)
    catalog.close()


def test_a_dot_dot_name_cannot_wipe_a_gallery_over_real_http(
    serve: Callable[[ServiceSettings], str], settings: ServiceSettings, identity_data: Path
) -> None:
    base = serve(settings)
    # a browser, curl -L or requests: dot segments folded, redirects followed with the same method
    client = httpx.Client(base_url=base, headers={"X-API-Key": admin_key(settings)}, follow_redirects=True)
    assert client.post("/v1/galleries", json={"name": "loadtest"}).status_code == 201
    for person in ("p0", "p1", "p2"):
        files = person_images(identity_data, "gallery", person)
        assert (
            client.post("/v1/galleries/loadtest/people", data={"name": person}, files=files).status_code
            == 201
        )

    for name in ("..", ".", " .. ", "a/b", "a\\b"):
        files = person_images(identity_data, "gallery", "p3")
        refused = client.post("/v1/galleries/loadtest/people", data={"name": name}, files=files)
        assert refused.status_code == 422 and error_of(refused)["code"] == "invalid_name", name

    _plant(settings, "loadtest", "..", "p0")  # a gallery from before names were checked
    # what clients make of DELETE .../people/..: the gallery's own path, with or without a slash
    shortened = client.delete("/v1/galleries/loadtest/people/..")
    assert shortened.url.path == "/v1/galleries/loadtest"
    assert shortened.status_code == 409 and error_of(shortened)["code"] == "gallery_not_empty"
    slashed = client.delete("/v1/galleries/loadtest/")  # no redirect to the gallery: a plain 404
    assert slashed.status_code == 404 and not slashed.history
    people = client.get("/v1/galleries/loadtest/people").json()
    assert sorted(p["name"] for p in people) == ["..", "p0", "p1", "p2"]

    # the page's way: by id, so no name travels as a path segment
    planted = next(p for p in people if p["name"] == "..")
    removed = client.delete(f"/v1/galleries/loadtest/people?id={planted['id']}")
    assert removed.json() == {"removed": "..", "faces": 1}
    assert [p["name"] for p in client.get("/v1/galleries/loadtest/people").json()] == ["p0", "p1", "p2"]
    missing = client.delete(f"/v1/galleries/loadtest/people?id={planted['id']}")
    assert missing.status_code == 404 and error_of(missing)["code"] == "unknown_person"
    assert client.delete("/v1/galleries/loadtest/people?id=x").status_code == 422
    client.close()


def test_names_round_trip_through_the_api(
    serve: Callable[[ServiceSettings], str], settings: ServiceSettings, identity_data: Path
) -> None:
    """Random names: refused with a 422 naming why, or enrolled, found and removed by that name
    (never another person; a refused enrolment stores nothing)."""
    base = serve(settings)
    client = httpx.Client(base_url=base, headers={"X-API-Key": admin_key(settings)}, follow_redirects=True)
    assert client.post("/v1/galleries", json={"name": "fuzz"}).status_code == 201
    files = person_images(identity_data, "gallery", "p0")
    assert client.post("/v1/galleries/fuzz/people", data={"name": "anchor"}, files=files).status_code == 201
    photos = person_images(identity_data, "gallery", "p1")

    @hypothesis.settings(max_examples=25, deadline=None, database=None, derandomize=True)
    @hypothesis.given(st.text(st.characters(codec="utf-8"), max_size=12))
    def enrol_find_remove(name: str) -> None:
        answer = client.post("/v1/galleries/fuzz/people", data={"name": name}, files=photos)
        if answer.status_code != 201:
            assert answer.status_code == 422, (name, answer.text)
            assert error_of(answer)["code"] in ("invalid_name", "invalid_request"), (name, answer.text)
        else:
            stored = answer.json()["name"]
            path = f"/v1/galleries/fuzz/people/{quote(stored, safe='')}"
            assert client.get(path).json()["name"] == stored
            assert client.delete(path).json() == {"removed": stored, "faces": 2}
        assert [p["name"] for p in client.get("/v1/galleries/fuzz/people").json()] == ["anchor"]

    enrol_find_remove()
    client.close()
