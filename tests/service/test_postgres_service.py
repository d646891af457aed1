"""The service with its galleries in PostgreSQL: real uvicorn, real sockets, many requests
at once through each gallery store's connection pool, and two apps (as two workers would)
sharing one database."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from faceverify.gallery.catalog import PostgresCatalog
from faceverify.service.settings import ServiceSettings
from tests.service.helpers import admin_key, person_images

GALLERY = "pg-crowd"
PEOPLE = [f"p{i}" for i in range(8)]  # identity_data's gallery people, two photos each


@pytest.fixture
def pg_settings(settings: ServiceSettings, pg_url: str) -> Iterator[ServiceSettings]:
    """The test settings with galleries in the test database; the gallery goes afterwards."""
    _delete_gallery(pg_url)
    yield replace(settings, db=pg_url)
    _delete_gallery(pg_url)


def _delete_gallery(url: str) -> None:
    catalog = PostgresCatalog(url)
    try:
        if catalog.exists(GALLERY):
            catalog.delete(GALLERY)
    finally:
        catalog.close()


def _client(base: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=60)


def _enrol(client: httpx.Client, identity_data: Path, person: str, split: str = "gallery") -> httpx.Response:
    files = person_images(identity_data, split, person)
    return client.post(f"/v1/galleries/{GALLERY}/people", data={"name": person}, files=files)


def test_concurrent_readers_and_writers_all_succeed_and_lose_nothing(
    pg_settings: ServiceSettings, serve: Callable[[ServiceSettings], str], identity_data: Path
) -> None:
    key = admin_key(pg_settings)
    base = serve(pg_settings)
    with _client(base, key) as client:
        assert client.post("/v1/galleries", json={"name": GALLERY}).status_code == 201
        assert _enrol(client, identity_data, PEOPLE[0]).status_code == 201  # binds the model
    probe = (identity_data / "probes" / "p0" / "0.png").read_bytes()
    writing_done = threading.Event()

    def writer(person: str) -> list[tuple[str, int, Any]]:
        with _client(base, key) as client:
            answer = _enrol(client, identity_data, person)
            return [(f"enrol {person}", answer.status_code, answer.json())]

    def reader(_: int) -> list[tuple[str, int, Any]]:
        answers: list[tuple[str, int, Any]] = []
        with _client(base, key) as client:
            while not writing_done.is_set() or len(answers) < 8:  # 4 rounds at least
                found = client.post(f"/v1/galleries/{GALLERY}/identify", files={"image": ("p.png", probe)})
                listed = client.get(f"/v1/galleries/{GALLERY}/people")
                answers += [
                    ("identify", found.status_code, found.json()),
                    ("list", listed.status_code, listed.json()),
                ]
        return answers

    with ThreadPoolExecutor(12) as pool:
        readers = [pool.submit(reader, i) for i in range(4)]
        writers = [pool.submit(writer, person) for person in PEOPLE[1:]]
        answers = [a for w in writers for a in w.result()]
        writing_done.set()
        answers += [a for r in readers for a in r.result()]

    assert [a for a in answers if not 200 <= a[1] < 300] == []
    assert len([a for a in answers if a[0] == "identify"]) >= 16
    for what, _, body in answers:
        if what == "identify":  # p0 was there before any reader started
            assert body["faces"][0]["matches"][0]["name"] == "p0"
        elif what == "list":  # a snapshot: whole people only, never half an enrolment
            assert {p["faces"] for p in body} == {2} and "p0" in {p["name"] for p in body}
    with _client(base, key) as client:
        people = client.get(f"/v1/galleries/{GALLERY}/people").json()
    assert [(p["name"], p["faces"]) for p in people] == [(p, 2) for p in PEOPLE]


def test_two_apps_enrolling_one_new_name_at_once_give_one_201_and_one_409(
    pg_settings: ServiceSettings, serve: Callable[[ServiceSettings], str], identity_data: Path
) -> None:
    """Two apps share nothing but the database (as two uvicorn workers): the gallery's
    transaction decides, so one enrols and the other is told the person exists."""
    key = admin_key(pg_settings)
    bases = [serve(pg_settings), serve(pg_settings)]
    with _client(bases[0], key) as client:
        assert client.post("/v1/galleries", json={"name": GALLERY}).status_code == 201
        assert _enrol(client, identity_data, "p0").status_code == 201
    barrier = threading.Barrier(2)

    def enrol(base: str) -> httpx.Response:
        with _client(base, key) as client:
            client.get(f"/v1/galleries/{GALLERY}/people")  # both apps have the gallery open
            barrier.wait()
            return _enrol(client, identity_data, "p8", "probes")

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(enrol, bases))
    assert sorted(a.status_code for a in answers) == [201, 409], [a.text for a in answers]
    with _client(bases[1], key) as client:
        people = client.get(f"/v1/galleries/{GALLERY}/people").json()
        assert [(p["name"], p["faces"]) for p in people] == [("p0", 2), ("p8", 2)]
        retry = {"Idempotency-Key": "enrol-p9-once"}
        files = person_images(identity_data, "probes", "p9")
        first, again = (
            client.post(f"/v1/galleries/{GALLERY}/people", data={"name": "p9"}, files=files, headers=retry)
            for _ in range(2)
        )
        assert (first.status_code, again.status_code) == (201, 201) and first.json() == again.json()
        assert again.headers.get("Idempotent-Replayed") == "true"
