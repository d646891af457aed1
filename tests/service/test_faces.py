"""Whole photos through the API: dlib's detector and face network on the shared photos."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from faceverify.service.app import create_app
from faceverify.service.settings import ServiceSettings
from tests.service.helpers import admin_key, error_of, png

GROUP = "probes/obama_and_biden.jpg"


@pytest.fixture(scope="module")
def faces_client(dlib_settings: ServiceSettings) -> Iterator[TestClient]:
    with TestClient(create_app(dlib_settings), headers={"X-API-Key": admin_key(dlib_settings)}) as client:
        yield client


def _file(faces: Path, name: str, field: str = "images") -> tuple[str, tuple[str, bytes]]:
    return field, (Path(name).name, (faces / name).read_bytes())


def test_detect_boxes_every_face_with_landmarks(faces_client: TestClient, shared_faces: Path) -> None:
    body = faces_client.post(
        "/v1/detect", files=[_file(shared_faces, GROUP), ("images", ("noise.png", png(1, (200, 200))))]
    ).json()
    group, noise = body["images"]
    assert body["detector"] == "hog+mmod" and noise["faces"] == []
    assert len(group["faces"]) == 3
    widths = [f["box"]["right"] - f["box"]["left"] for f in group["faces"]]
    assert widths == sorted(widths, reverse=True)  # largest first
    for face in group["faces"]:
        box = face["box"]
        assert (
            0 <= box["left"] < box["right"] <= group["width"]
            and 0 <= box["top"] < box["bottom"] <= group["height"]
        )
        assert len(face["landmarks"]) == 5 and face["score"] is not None


def test_verify_compares_the_faces_found(faces_client: TestClient, shared_faces: Path) -> None:
    def verify(a: str, b: str) -> dict:
        files = [_file(shared_faces, a, "a"), _file(shared_faces, b, "b")]
        response = faces_client.post("/v1/verify", files=files)
        assert response.status_code == 200, response.text
        return dict(response.json())

    same = verify("gallery/obama/obama.jpg", "gallery/obama/obama2.jpg")
    assert (
        same["same"] is True
        and same["threshold"] == pytest.approx(0.91)
        and same["model"] == "dlib_resnet_v1"
    )
    assert same["a"]["box"]["right"] - same["a"]["box"]["left"] < 600  # the face, not the 910 px photo
    assert verify("gallery/obama/obama.jpg", "gallery/biden/biden.jpg")["same"] is False


def test_one_policy_for_several_faces_and_photos_without_a_face_are_refused(
    faces_client: TestClient, shared_faces: Path
) -> None:
    obama = _file(shared_faces, "gallery/obama/obama.jpg", "a")
    # verification takes the largest face of a photo with a bystander, as the library does
    several = faces_client.post("/v1/verify", files=[obama, _file(shared_faces, GROUP, "b")])
    assert several.status_code == 200, several.text
    assert several.json()["b"]["faces_found"] == 3 and several.json()["a"]["faces_found"] == 1
    largest = faces_client.post("/v1/embed", files=[_file(shared_faces, GROUP)]).json()
    every = faces_client.post("/v1/embed?faces=all", files=[_file(shared_faces, GROUP)]).json()
    assert [len(body["images"][0]["faces"]) for body in (largest, every)] == [1, 3]
    assert largest["images"][0]["faces"][0]["box"] == every["images"][0]["faces"][0]["box"]
    refused = faces_client.post("/v1/embed?faces=refuse", files=[_file(shared_faces, GROUP)])
    assert (refused.status_code, error_of(refused)["code"]) == (422, "several_faces")
    assert "images[0] ('obama_and_biden.jpg'): 3 faces found" in error_of(refused)["message"]
    none = faces_client.post("/v1/verify", files=[obama, ("b", ("noise.png", png(2, (200, 200))))])
    assert (none.status_code, error_of(none)) == (
        422,
        {"code": "no_face", "message": "b ('noise.png'): no face found"},
    )
    faces_client.post("/v1/galleries", json={"name": "refusals"})
    group = faces_client.post(
        "/v1/galleries/refusals/people", data={"name": "x"}, files=[_file(shared_faces, GROUP)]
    )
    assert (group.status_code, error_of(group)["code"]) == (422, "several_faces")  # enrolment refuses
    assert "3 faces found where one is needed, at (" in error_of(group)["message"]
    assert faces_client.get("/v1/galleries/refusals/people").json() == []
    blank = faces_client.post(
        "/v1/galleries/refusals/identify", files={"image": ("n.png", png(3, (200, 200)))}
    )
    assert (blank.status_code, error_of(blank)["code"]) == (422, "no_face")


def test_a_group_photo_is_identified_face_by_face(faces_client: TestClient, shared_faces: Path) -> None:
    assert faces_client.post("/v1/galleries", json={"name": "leaders"}).status_code == 201
    for person, photo in (("obama", "gallery/obama/obama.jpg"), ("biden", "gallery/biden/biden.jpg")):
        response = faces_client.post(
            "/v1/galleries/leaders/people", data={"name": person}, files=[_file(shared_faces, photo)]
        )
        assert response.json() == {"name": person, "added": 1, "skipped": []}
    found = faces_client.post(
        "/v1/galleries/leaders/identify", files=[_file(shared_faces, GROUP, "image")]
    ).json()
    assert sorted(str(face["name"]) for face in found["faces"]) == ["None", "biden", "obama"]
    assert all(face["box"]["right"] - face["box"]["left"] < 300 for face in found["faces"])
    claim = faces_client.post(
        "/v1/galleries/leaders/verify/biden", files=[_file(shared_faces, "gallery/biden/biden2.jpg", "image")]
    ).json()
    assert claim["same"] is True and claim["face"]["landmarks"] is not None
    assert claim["threshold_source"] == "published" and found["threshold_source"] == "published"
    bystanders = faces_client.post(
        "/v1/galleries/leaders/verify/biden", files=[_file(shared_faces, GROUP, "image")]
    ).json()  # a 1:1 check takes the largest face, as /v1/verify does
    assert bystanders["face"]["faces_found"] == 3
    embedded = faces_client.post(
        "/v1/embed?faces=all",
        files=[_file(shared_faces, GROUP), ("images", ("noise.png", png(4, (200, 200))))],
    ).json()
    assert [len(image["faces"]) for image in embedded["images"]] == [3, 0]
    assert len(embedded["images"][0]["faces"][0]["embedding"]) == 128
