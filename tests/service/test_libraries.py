"""``/v1/libraries``: a real photo library (dlib's network on the shared photos) over HTTP.

One library is built for the module (a scan and a grouping run through the API); the tests
then read it and correct it in file order, each on people the others leave alone.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from faceverify.service.app import create_app
from faceverify.service.settings import ServiceSettings
from tests.service.helpers import error_of, metric, write_keys
from tests.service.library_helpers import copy_shared_photos, face_of_photo

BASE = "/v1/libraries/family"


@dataclass
class Built:
    """The module's library: its client (an admin key), the other keys, what building said."""

    client: TestClient
    root: Path
    photos: Path
    keys: dict[str, str]
    scanned: dict[str, Any]
    grouped: dict[str, Any]

    def as_key(self, scope: str) -> dict[str, str]:
        return {"X-API-Key": self.keys[scope]}

    def faces(self, **params: Any) -> list[dict[str, Any]]:
        response = self.client.get(f"{BASE}/faces", params=params)
        assert response.status_code == 200, response.text
        return list(response.json())

    def groups(self) -> dict[int, dict[str, Any]]:
        return {group["id"]: group for group in self.client.get(f"{BASE}/groups").json()}

    def group_of(self, photo: str) -> int:
        group = face_of_photo(self.faces(), photo)["group"]
        assert group is not None
        return int(group)


@pytest.fixture(scope="module")
def built(dlib_settings: ServiceSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    root = tmp_path_factory.mktemp("library-root")
    photos = copy_shared_photos(root)
    settings = replace(dlib_settings, library_roots=(str(root),))
    admin, read, enrol, write, other = write_keys(
        settings, ("admin", None), ("read", None), ("enrol", None), ("write", None), ("write", "other")
    )
    keys = {"admin": admin, "read": read, "enrol": enrol, "write": write, "other": other}
    with TestClient(create_app(settings), headers={"X-API-Key": admin}) as client:
        assert client.post("/v1/galleries", json={"name": "family"}).status_code == 201
        scanned = client.post(f"{BASE}/scan", json={"folder": str(photos)}, headers={"X-API-Key": write})
        assert scanned.status_code == 200, scanned.text
        grouped = client.post(f"{BASE}/group", json={}, headers={"X-API-Key": enrol})
        assert grouped.status_code == 200, grouped.text
        yield Built(client, root, photos, keys, scanned.json(), grouped.json())


# ---- building and reading ------------------------------------------------------------------


def test_a_scan_and_a_grouping_run_build_the_library(built: Built) -> None:
    scanned = built.scanned
    assert (scanned["photos"], scanned["new"], scanned["faces_added"]) == (17, 17, 21)
    assert scanned["failed"] == [] and scanned["folder"] == str(built.photos)
    assert built.grouped["mode"] == "full"  # the first run groups everything
    assert (built.grouped["faces"], built.grouped["groups"], built.grouped["alone"]) == (21, 5, 1)
    # the faces were embedded by the service's model, through its batcher
    text = built.client.get("/metrics").text
    assert metric(text, "faceverify_faces_processed_total", endpoint="library_scan") == 21
    assert metric(text, "faceverify_batch_images_sum") == 21
    # a second scan reads nothing again
    again = built.client.post(f"{BASE}/scan", json={"folder": str(built.photos)})
    assert again.status_code == 200 and (again.json()["unchanged"], again.json()["new"]) == (17, 0)


def test_groups_come_largest_first_with_samples_of_their_own_faces(built: Built) -> None:
    groups = built.client.get(f"{BASE}/groups", headers=built.as_key("read")).json()
    assert [g["faces"] for g in groups] == [7, 4, 4, 3, 2]
    assert all(g["name"] is None and not g["anchored"] for g in groups)
    for group in groups:
        faces = built.client.get(f"{BASE}/groups/{group['id']}/faces").json()
        assert len(faces) == group["faces"] and {f["group"] for f in faces} == {group["id"]}
        assert group["sample"] == [f["id"] for f in faces][:8]  # best quality first
        # a group is one person: every gallery photo in it is of the same person
        people = {Path(f["photo"]).parent.name for f in faces if "/gallery/" in f["photo"]}
        assert len(people) == 1, people
    obama = built.group_of("gallery/obama/obama.jpg")
    assert groups[0]["id"] == obama
    assert len(built.client.get(f"{BASE}/groups", params={"sample": 2}).json()[0]["sample"]) == 2


def test_faces_all_or_ungrouped_and_their_thumbnails(built: Built) -> None:
    faces = built.faces()
    assert len(faces) == 21 and len({f["photo"] for f in faces}) == 17
    (alone,) = built.faces(ungrouped=True)
    assert alone["group"] is None and alone["photo"].endswith("probes/obama_and_biden.jpg")
    assert set(alone["box"]) == {"left", "top", "right", "bottom"} and 0 <= alone["quality"] <= 1

    response = built.client.get(f"{BASE}/faces/{alone['id']}/image", headers=built.as_key("read"))
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert response.headers["cache-control"] == "no-store"  # faces are never cached
    assert Image.open(io.BytesIO(response.content)).size == (112, 112)
    small = built.client.get(f"{BASE}/faces/{alone['id']}/image", params={"size": 48})
    assert Image.open(io.BytesIO(small.content)).size == (48, 48)
    assert built.client.get(f"{BASE}/faces/{alone['id']}/image", params={"size": 4096}).status_code == 422


def test_the_export_lists_every_photo_with_its_faces(built: Built) -> None:
    exported = built.client.get(f"{BASE}/export", headers=built.as_key("read")).json()
    assert len(exported["photos"]) == 17 and len(exported["groups"]) == 5
    two = next(p for p in exported["photos"] if p["path"].endswith("probes/obama_and_biden.jpg"))
    assert two["status"] == "ok" and two["width"] > 0 and len(two["faces"]) == 3
    assert sum(len(p["faces"]) for p in exported["photos"]) == 21


# ---- keys and scopes -----------------------------------------------------------------------


def test_reading_needs_a_key_and_correcting_needs_its_scope(built: Built) -> None:
    client, group = built.client, built.group_of("gallery/rose_leslie/img1.jpg")
    face = face_of_photo(built.faces(), "gallery/rose_leslie/img1.jpg")["id"]
    assert client.get(f"{BASE}/groups", headers={"X-API-Key": ""}).status_code == 401
    refused = [
        ("read", f"{BASE}/groups/{group}/name", {"name": "rose"}),
        ("read", f"{BASE}/group", {"full": True}),
        ("read", f"{BASE}/merge", {"target": group, "others": [group]}),
        ("enrol", f"{BASE}/faces/{face}/reject", {"group": group}),  # it may take faces away
        ("enrol", f"{BASE}/faces/{face}/move", {"group": None}),
        ("enrol", f"{BASE}/groups/{group}/split", {"faces": [face]}),
        ("enrol", f"{BASE}/scan", {"folder": str(built.photos)}),
        ("other", f"{BASE}/groups/{group}/name", {"name": "rose"}),  # a key for another gallery
    ]
    for scope, path, body in refused:
        response = client.post(path, json=body, headers=built.as_key(scope))
        assert response.status_code == 403, (scope, path, response.text)
        assert error_of(response)["code"] == "forbidden"
    assert client.get(f"{BASE}/groups", headers=built.as_key("other")).status_code == 403
    assert built.groups()[group]["anchored"] is False  # nothing was changed


# ---- corrections ---------------------------------------------------------------------------


def test_naming_a_group_enrols_its_faces_and_a_name_stays_with_its_group(built: Built) -> None:
    client, alex = built.client, built.group_of("gallery/alex_lacamoire/img1.jpg")
    named = client.post(f"{BASE}/groups/{alex}/name", json={"name": "alex"}, headers=built.as_key("enrol"))
    assert named.status_code == 200, named.text
    assert named.json() == {
        "group": {**named.json()["group"], "id": alex, "name": "alex", "faces": 2, "anchored": True},
        "enrolled": 2,
    }
    people = client.get("/v1/galleries/family/people").json()
    assert [(p["name"], p["faces"]) for p in people] == [("alex", 2)]
    probe = built.photos / "probes" / "alex_lacamoire1.jpg"
    found = client.post("/v1/galleries/family/identify", files={"image": (probe.name, probe.read_bytes())})
    assert [face["name"] for face in found.json()["faces"]] == ["alex"]

    rose = built.group_of("gallery/rose_leslie/img1.jpg")
    taken = client.post(f"{BASE}/groups/{rose}/name", json={"name": "alex"})
    assert taken.status_code == 409
    message = error_of(taken)["message"]
    assert "'alex'" in message and f"group {alex}" in message and f"group {rose}" in message
    bad = client.post(f"{BASE}/groups/{rose}/name", json={"name": "a/b"})
    assert bad.status_code == 422 and error_of(bad)["code"] == "invalid_name"


def test_split_then_merge_back_is_refused_and_an_over_split_merges(built: Built) -> None:
    client, kit = built.client, built.group_of("gallery/kit_harington/john1.jpeg")
    face = face_of_photo(built.faces(), "probes/johnsnow_test1.jpg")
    split = client.post(
        f"{BASE}/groups/{kit}/split", json={"faces": [face["id"]]}, headers=built.as_key("write")
    )
    assert split.status_code == 200, split.text
    kept, new = split.json()["group"], split.json()["new"]
    assert (kept["id"], kept["faces"], new["faces"], new["sample"]) == (kit, 3, 1, [face["id"]])
    back = client.post(f"{BASE}/merge", json={"target": kit, "others": [new["id"]]})
    assert back.status_code == 409
    message = error_of(back)["message"]
    assert f"groups {kit} and {new['id']}" in message and "split" in message

    # an over-split: one photo of obama moved out to a group of its own, merged back
    obama = built.group_of("gallery/obama/obama.jpg")
    moved_face = face_of_photo(built.faces(), "gallery/obama/obama2.jpg")["id"]
    moved = client.post(
        f"{BASE}/faces/{moved_face}/move", json={"group": None}, headers=built.as_key("write")
    )
    assert moved.status_code == 200, moved.text
    alone = moved.json()["group"]
    assert alone["id"] != obama and (alone["faces"], alone["anchored"]) == (1, True)
    assert built.groups()[obama]["faces"] == 6
    merged = client.post(
        f"{BASE}/merge", json={"target": obama, "others": [alone["id"]]}, headers=built.as_key("enrol")
    )
    assert merged.status_code == 200, merged.text
    assert (merged.json()["id"], merged.json()["faces"], merged.json()["anchored"]) == (obama, 7, True)
    assert alone["id"] not in built.groups()


def test_not_this_person_holds_against_later_corrections(built: Built) -> None:
    client, biden = built.client, built.group_of("gallery/biden/biden.jpg")
    face = face_of_photo(built.faces(), "gallery/biden/biden2.jpg")["id"]
    rejected = client.post(
        f"{BASE}/faces/{face}/reject", json={"group": biden}, headers=built.as_key("write")
    )
    assert rejected.status_code == 200, rejected.text
    assert rejected.json() == {"face": face, "group": {**rejected.json()["group"], "id": biden, "faces": 3}}
    assert face in {f["id"] for f in built.faces(ungrouped=True)}

    back = client.post(f"{BASE}/faces/{face}/move", json={"group": biden})
    assert back.status_code == 409
    message = error_of(back)["message"]
    assert f"face {face}" in message and f"group {biden}" in message
    elsewhere = client.post(f"{BASE}/faces/{face}/move", json={"group": None}).json()["group"]["id"]
    merge = client.post(f"{BASE}/merge", json={"target": biden, "others": [elsewhere]})
    assert merge.status_code == 409 and error_of(merge)["code"] == "correction_refused"
    message = error_of(merge)["message"]
    assert f"face {face}" in message and f"group {biden}" in message and f"group {elsewhere}" in message


def test_unknown_groups_faces_and_galleries_are_404(built: Built) -> None:
    client, rose = built.client, built.group_of("gallery/rose_leslie/img1.jpg")
    face = face_of_photo(built.faces(), "gallery/rose_leslie/img1.jpg")["id"]
    missing = 10**6
    for method, path, body, code in [
        ("GET", f"{BASE}/groups/{missing}/faces", None, "unknown_group"),
        ("GET", f"{BASE}/faces/{missing}/image", None, "unknown_face"),
        ("POST", f"{BASE}/groups/{missing}/name", {"name": "nobody"}, "unknown_group"),
        ("POST", f"{BASE}/merge", {"target": rose, "others": [missing]}, "unknown_group"),
        ("POST", f"{BASE}/groups/{missing}/split", {"faces": [face]}, "unknown_group"),
        ("POST", f"{BASE}/groups/{rose}/split", {"faces": [missing]}, "unknown_face"),
        ("POST", f"{BASE}/faces/{missing}/move", {"group": rose}, "unknown_face"),
        ("POST", f"{BASE}/faces/{face}/move", {"group": missing}, "unknown_group"),
        ("POST", f"{BASE}/faces/{missing}/reject", {"group": rose}, "unknown_face"),
        ("POST", f"{BASE}/faces/{face}/reject", {"group": missing}, "unknown_group"),
        ("GET", "/v1/libraries/nowhere/groups", None, "unknown_gallery"),
    ]:
        response = client.request(method, path, json=body)
        assert response.status_code == 404, (path, response.text)
        assert error_of(response)["code"] == code, path
        assert str(missing) in error_of(response)["message"] or code == "unknown_gallery"
    assert client.get(f"{BASE}/groups/0/faces").status_code == 422  # ids count from 1
    assert built.groups()[rose]["faces"] == 3  # nothing moved


def test_reading_a_gallery_without_a_library_writes_nothing(built: Built) -> None:
    client = built.client
    assert client.post("/v1/galleries", json={"name": "plain"}).status_code == 201
    read = built.as_key("read")
    assert client.get("/v1/libraries/plain/groups", headers=read).json() == []
    assert client.get("/v1/libraries/plain/faces", headers=read).json() == []
    assert client.get("/v1/libraries/plain/export", headers=read).json()["photos"] == []
    response = client.get("/v1/libraries/plain/faces/1/image", headers=read)
    assert (response.status_code, error_of(response)["code"]) == (404, "unknown_face")
    import sqlite3

    database = Path(client.app.state.service.settings.db) / "plain" / "gallery.db"
    with sqlite3.connect(database) as db:  # neither library tables nor a model binding
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        bound = db.execute("SELECT 1 FROM meta WHERE key = 'manifest'").fetchone()
    assert not any(t.startswith("library_") for t in tables) and bound is None


def test_a_grouping_run_keeps_every_correction(built: Built) -> None:
    before = built.groups()
    run = built.client.post(f"{BASE}/group", json={"full": True})
    assert run.status_code == 200 and run.json()["mode"] == "full" and run.json()["named"] == 1
    after = built.groups()
    for gid, group in before.items():
        if group["anchored"]:
            assert gid in after and after[gid]["name"] == group["name"], gid
    biden = built.group_of("gallery/biden/biden.jpg")
    rejected = face_of_photo(built.faces(), "gallery/biden/biden2.jpg")
    assert rejected["group"] != biden and rejected["pinned"]


# ---- scanning is confined --------------------------------------------------------------


def test_scanning_stays_inside_the_configured_roots(built: Built, tmp_path: Path) -> None:
    client = built.client
    outside = tmp_path / "outside"
    copy_shared_photos(outside)
    link = built.root / "link"
    link.symlink_to(outside, target_is_directory=True)
    for folder in (
        str(built.root / ".." / outside.relative_to(built.root.parent)),  # out with ".."
        str(link),  # out through a link
        str(link / "photos" / "gallery"),
        "/etc",
    ):
        response = client.post(f"{BASE}/scan", json={"folder": folder})
        assert response.status_code == 403, (folder, response.text)
        assert error_of(response)["code"] == "outside_library_roots"
    assert len(built.faces()) == 21  # nothing read
    relative = client.post(f"{BASE}/scan", json={"folder": "photos"})
    assert relative.status_code == 422 and error_of(relative)["code"] == "invalid_folder"
    nul = client.post(f"{BASE}/scan", json={"folder": str(built.root) + "/\u0000x"})
    assert nul.status_code == 422
    absent = client.post(f"{BASE}/scan", json={"folder": str(built.root / "absent")})
    assert absent.status_code == 422 and "not a folder" in error_of(absent)["message"]


def test_scanning_is_off_until_the_operator_names_roots(
    settings: ServiceSettings, open_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    client = open_client(settings)  # the small model: refused before any photo is read
    assert client.post("/v1/galleries", json={"name": "family"}).status_code == 201
    response = client.post(f"{BASE}/scan", json={"folder": str(tmp_path)})
    assert response.status_code == 403
    assert error_of(response)["code"] == "scan_not_allowed"
    assert "library_roots" in error_of(response)["message"]


def test_library_roots_travel_to_worker_processes(tmp_path: Path) -> None:
    settings = ServiceSettings(db=str(tmp_path), library_roots=("/srv/photos", "/mnt/family"))
    assert ServiceSettings.from_json(settings.to_json()).library_roots == ("/srv/photos", "/mnt/family")
