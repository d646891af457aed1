"""Writes that must happen once or not at all: concurrent workers, retries, deadlines, audit."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from faceverify.service.settings import Limits, ServiceSettings
from tests.service.helpers import admin_key, error_of, person_images


def test_two_workers_enrolling_one_name_make_one_person(
    serve: Callable[[ServiceSettings], str], settings: ServiceSettings, identity_data: Path
) -> None:
    """Two apps (as two worker processes: no lock or cache in common) on one gallery folder."""
    first, second = serve(settings), serve(settings)
    headers = {"X-API-Key": admin_key(settings)}
    assert httpx.post(f"{first}/v1/galleries", json={"name": "staff"}, headers=headers).status_code == 201
    barrier = threading.Barrier(2)
    answers: list[httpx.Response] = []

    def enrol(base: str, person: str) -> None:
        files = person_images(identity_data, "gallery", person)
        barrier.wait()
        answers.append(
            httpx.post(
                f"{base}/v1/galleries/staff/people",
                data={"name": "ann"},
                files=files,
                headers=headers,
                timeout=60,
            )
        )

    threads = [threading.Thread(target=enrol, args=args) for args in ((first, "p0"), (second, "p1"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(a.status_code for a in answers) == [201, 409]
    assert error_of(next(a for a in answers if a.status_code == 409))["code"] == "person_exists"
    people = httpx.get(f"{second}/v1/galleries/staff/people", headers=headers).json()
    assert [(p["name"], p["faces"]) for p in people] == [("ann", 2)]  # one person, one photo set


def test_a_gallery_made_again_elsewhere_is_never_served_from_the_old_cache(
    settings: ServiceSettings, open_client: Callable[..., TestClient], identity_data: Path
) -> None:
    one, other = open_client(settings), open_client(settings)
    assert one.post("/v1/galleries", json={"name": "staff"}).status_code == 201
    files = person_images(identity_data, "gallery", "p0")
    assert one.post("/v1/galleries/staff/people", data={"name": "p0"}, files=files).status_code == 201
    assert other.delete("/v1/galleries/staff?force=true").status_code == 204
    assert other.post("/v1/galleries", json={"name": "staff"}).status_code == 201
    assert one.get("/v1/galleries/staff/people").json() == []  # the new gallery, not the cached one
    files = person_images(identity_data, "gallery", "p1")
    assert one.post("/v1/galleries/staff/people", data={"name": "p1"}, files=files).status_code == 201
    assert [p["name"] for p in other.get("/v1/galleries/staff/people").json()] == ["p1"]


def test_a_retry_with_the_same_idempotency_key_writes_once(client: TestClient, identity_data: Path) -> None:
    assert client.post("/v1/galleries", json={"name": "staff"}).status_code == 201
    files = person_images(identity_data, "gallery", "p0")
    key = {"Idempotency-Key": "5f0c-enrol-ann"}
    first = client.post("/v1/galleries/staff/people", data={"name": "ann"}, files=files, headers=key)
    again = client.post("/v1/galleries/staff/people", data={"name": "ann"}, files=files, headers=key)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    other = person_images(identity_data, "gallery", "p1")
    reused = client.post("/v1/galleries/staff/people", data={"name": "ann"}, files=other, headers=key)
    assert reused.status_code == 409 and error_of(reused)["code"] == "idempotency_conflict"
    plain = client.post("/v1/galleries/staff/people", data={"name": "ann"}, files=files)
    assert plain.status_code == 409 and error_of(plain)["code"] == "person_exists"
    assert [(p["name"], p["faces"]) for p in client.get("/v1/galleries/staff/people").json()] == [("ann", 2)]


@pytest.mark.parametrize("slow", ["embedding", "write"])
def test_a_timed_out_write_says_whether_it_was_committed(
    settings: ServiceSettings,
    open_client: Callable[..., TestClient],
    identity_data: Path,
    monkeypatch: pytest.MonkeyPatch,
    slow: str,
) -> None:
    from faceverify.gallery.gallery import Gallery
    from faceverify.service.uploads import PhotoReader

    client = open_client(settings, limits=Limits(timeout_s=0.5))
    assert client.post("/v1/galleries", json={"name": "staff"}).status_code == 201
    if slow == "embedding":  # still reading the photos when time runs out: nothing may be written
        read_all = PhotoReader.read_all
        monkeypatch.setattr(
            PhotoReader, "read_all", lambda self, *a: (time.sleep(1.0), read_all(self, *a))[1]
        )
    else:  # inside the write when time runs out: it is waited for, and reported
        store_faces = Gallery.store_faces
        monkeypatch.setattr(
            Gallery, "store_faces", lambda self, *a, **k: (time.sleep(1.0), store_faces(self, *a, **k))[1]
        )
    files = person_images(identity_data, "gallery", "p0")
    answer = client.post("/v1/galleries/staff/people", data={"name": "ann"}, files=files)
    time.sleep(1.5)  # the route's thread has finished, whatever it did
    monkeypatch.undo()
    people = [p["name"] for p in client.get("/v1/galleries/staff/people").json()]
    error = error_of(answer)
    assert answer.status_code == 504
    if slow == "embedding":
        assert (error["code"], people) == ("timeout", []) and "nothing was written" in error["message"]
    else:
        assert (error["code"], people) == ("timeout_after_write", ["ann"])
        assert "its write was committed" in error["message"]


def test_the_audit_log_over_http_tells_who_did_what(
    settings: ServiceSettings, open_client: Callable[..., TestClient], identity_data: Path
) -> None:
    from faceverify.service.keys import KeyStore

    client = open_client(settings, key=None)
    store = KeyStore(settings.keys_file)
    admin, admin_record = store.create("admin")
    enroller, enroller_record = store.create("enrol", gallery="staff")
    writer, writer_record = store.create("write")
    as_admin, as_enroller, as_writer = ({"X-API-Key": k} for k in (admin, enroller, writer))
    assert client.post("/v1/galleries", json={"name": "staff"}, headers=as_admin).status_code == 201
    files = person_images(identity_data, "gallery", "p0")
    made = client.post("/v1/galleries/staff/people", data={"name": "Ann"}, files=files, headers=as_enroller)
    more = person_images(identity_data, "probes", "p0")
    assert (
        client.post("/v1/galleries/staff/people/Ann/faces", files=more, headers=as_enroller).status_code
        == 200
    )
    person_id = client.get("/v1/galleries/staff/people", headers=as_admin).json()[0]["id"]
    assert made.status_code == 201
    assert client.delete(f"/v1/galleries/staff/people?id={person_id}", headers=as_writer).status_code == 200
    assert client.get("/v1/galleries/staff/audit", headers=as_writer).status_code == 403  # admin only
    log = client.get("/v1/galleries/staff/audit", headers=as_admin).json()
    assert [(e["action"], e["actor"], e["person_id"], e["faces"]) for e in log] == [
        ("create", f"key:{admin_record.id}", None, 0),
        ("enrol", f"key:{enroller_record.id}", person_id, 2),
        ("add", f"key:{enroller_record.id}", person_id, 2),
        ("erase", f"key:{writer_record.id}", person_id, 4),
    ]
    assert "Ann" not in str(log)
    assert client.delete("/v1/galleries/staff?force=true", headers=as_admin).status_code == 204
    kept = client.app.state.service.galleries.catalog.deleted_audit("staff")  # type: ignore[attr-defined]
    assert [e["action"] for e in kept][-1] == "delete" and kept[-1]["actor"] == f"key:{admin_record.id}"


def test_a_writer_stuck_behind_another_gets_503_not_a_hung_request(
    settings: ServiceSettings, open_client: Callable[..., TestClient], identity_data: Path
) -> None:
    client = open_client(replace(settings, limits=Limits(timeout_s=2.0)))
    assert client.post("/v1/galleries", json={"name": "staff"}).status_code == 201
    galleries = client.app.state.service.galleries  # type: ignore[attr-defined]
    galleries.lock_timeout_s = 0.2
    with galleries.writing("staff"):  # another request's write, taking its time
        files = person_images(identity_data, "gallery", "p0")
        answer = client.post("/v1/galleries/staff/people", data={"name": "ann"}, files=files)
    assert answer.status_code == 503 and "retry-after" in answer.headers
    assert client.get("/v1/galleries/staff/people").json() == []
