"""The API through FastAPI's TestClient: what a client sees for good and bad requests."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from faceverify.service.app import create_app
from faceverify.service.settings import Limits, ServiceSettings
from tests.service.helpers import admin_key, error_of, metric, person_images, png


def _verify(client: TestClient, a: bytes, b: bytes, **params: float) -> dict:
    response = client.post("/v1/verify", files={"a": ("a.png", a), "b": ("b.png", b)}, params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_verify_scores_and_decides(client: TestClient) -> None:
    same = _verify(client, png(1), png(1))
    assert same["same"] is True and same["score"] == pytest.approx(1.0, abs=1e-5)
    assert same["a"]["box"] == {"left": 0.0, "top": 0.0, "right": 48.0, "bottom": 48.0}
    other = _verify(client, png(1), png(2), threshold=0.9999)
    assert other["threshold"] == 0.9999 and other["same"] is (other["score"] >= 0.9999)
    assert other["model"] == "convnext_atto.d2_in1k"


def test_embed_reports_every_image(client: TestClient) -> None:
    files = [("images", (f"{i}.png", png(i))) for i in range(3)]
    body = client.post("/v1/embed", files=files).json()
    vectors = np.array([image["faces"][0]["embedding"] for image in body["images"]])
    assert vectors.shape == (3, body["dim"]) and body["dim"] == 320
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert [image["image"] for image in body["images"]] == [
        "images[0] ('0.png')",
        "images[1] ('1.png')",
        "images[2] ('2.png')",
    ]
    raw = client.post("/v1/embed", files=files[:1], params={"normalize": False}).json()
    assert np.linalg.norm(raw["images"][0]["faces"][0]["embedding"]) != pytest.approx(1.0)


def test_gallery_lifecycle(client: TestClient, identity_data: Path) -> None:
    assert client.post("/v1/galleries", json={"name": "staff"}).status_code == 201
    for person in ("p0", "p1", "p2"):
        files = person_images(identity_data, "gallery", person)
        response = client.post(
            "/v1/galleries/staff/people", data={"name": person, "meta": '{"team": "blue"}'}, files=files
        )
        assert response.status_code == 201, response.text
        assert response.json() == {"name": person, "added": 2, "skipped": []}
    assert client.get("/v1/galleries").json() == [
        {"name": "staff", "people": 3, "model": "convnext_atto.d2_in1k"}
    ]
    people = client.get("/v1/galleries/staff/people").json()
    assert [(p["name"], p["faces"], p["meta"]) for p in people] == [
        (p, 2, {"team": "blue"}) for p in ("p0", "p1", "p2")
    ]

    probe = (identity_data / "probes" / "p1" / "0.png").read_bytes()
    found = client.post(
        "/v1/galleries/staff/identify", files={"image": ("p.png", probe)}, params={"threshold": 0.6}
    )
    face = found.json()["faces"][0]
    assert (face["name"], face["known"], face["matches"][0]["name"]) == ("p1", True, "p1")
    stranger = (identity_data / "probes" / "p9" / "0.png").read_bytes()
    unknown = client.post(
        "/v1/galleries/staff/identify", files={"image": ("s.png", stranger)}, params={"threshold": 0.6}
    )
    assert unknown.json()["faces"][0]["name"] is None

    claim = client.post(
        "/v1/galleries/staff/verify/p1", files={"image": ("p.png", probe)}, params={"threshold": 0.6}
    )
    assert claim.json()["same"] is True
    wrong = client.post(
        "/v1/galleries/staff/verify/p0", files={"image": ("p.png", probe)}, params={"threshold": 0.6}
    )
    assert wrong.json()["same"] is False

    more = person_images(identity_data, "probes", "p0")
    assert client.post("/v1/galleries/staff/people/p0/faces", files=more).json()["added"] == 2
    assert client.get("/v1/galleries/staff/people/p0").json()["faces"] == 4
    assert client.delete("/v1/galleries/staff/people/p1").json() == {"removed": "p1", "faces": 2}
    again = client.post("/v1/galleries/staff/identify", files={"image": ("p.png", probe)}).json()
    assert "p1" not in [m["name"] for m in again["faces"][0]["matches"]]
    refused = client.delete("/v1/galleries/staff")  # people in it: only when forced
    assert refused.status_code == 409 and error_of(refused)["code"] == "gallery_not_empty"
    assert client.delete("/v1/galleries/staff?force=true").status_code == 204
    assert client.get("/v1/galleries").json() == []


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims a huge size in its header and holds no pixels: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def staff(
    tmp_path_factory: pytest.TempPathFactory, atto_file: Path, identity_data: Path
) -> Iterator[TestClient]:
    """One app for the requests that change nothing: a gallery 'staff' with p0 enrolled."""
    folder = tmp_path_factory.mktemp("staff")
    settings = ServiceSettings(
        db=str(folder / "galleries"),
        keys_file=str(folder / "keys.json"),
        weights=str(atto_file),
        input_size=32,
    )
    with TestClient(create_app(settings), headers={"X-API-Key": admin_key(settings)}) as client:
        client.post("/v1/galleries", json={"name": "staff"})
        files = person_images(identity_data, "gallery", "p0")
        assert client.post("/v1/galleries/staff/people", data={"name": "p0"}, files=files).status_code == 201
        yield client


BAD_REQUESTS = [
    # (what, method, path, request arguments, status, code, words in the message)
    (
        "not an image",
        "post",
        "/v1/verify",
        {"files": {"a": ("a.txt", b"hello"), "b": ("b.png", png(1))}},
        422,
        "invalid_image",
        "a ('a.txt'): not an image",
    ),
    (
        "empty file",
        "post",
        "/v1/verify",
        {"files": {"a": ("a.png", b""), "b": ("b.png", png(1))}},
        422,
        "invalid_image",
        "empty",
    ),
    (
        "bomb over our limit",
        "post",
        "/v1/detect",
        {"files": {"images": ("x.png", _png_header(8000, 8000))}},
        422,
        "invalid_image",
        "above the limit",
    ),
    (
        "bomb over Pillow's limit",
        "post",
        "/v1/detect",
        {"files": {"images": ("x.png", _png_header(30000, 30000))}},
        422,
        "invalid_image",
        "decompression",
    ),
    (
        "missing image",
        "post",
        "/v1/verify",
        {"files": {"a": ("a.png", png(1))}},
        422,
        "invalid_request",
        "b: Field required",
    ),
    (
        "too many images",
        "post",
        "/v1/embed",
        {"files": [("images", ("x.png", png(1)))] * 9},
        413,
        "too_many_images",
        "limit is 8",
    ),
    (
        "bad threshold",
        "post",
        "/v1/verify",
        {"files": {"a": ("a.png", png(1)), "b": ("b.png", png(1))}, "params": {"threshold": 2}},
        422,
        "invalid_request",
        "threshold",
    ),
    (
        "unknown gallery",
        "get",
        "/v1/galleries/nobody/people",
        {},
        404,
        "unknown_gallery",
        "no gallery named 'nobody'",
    ),
    (
        "unknown person",
        "post",
        "/v1/galleries/staff/verify/zed",
        {"files": {"image": ("x.png", png(1))}},
        404,
        "unknown_person",
        "'zed'",
    ),
    ("remove unknown person", "delete", "/v1/galleries/staff/people/zed", {}, 404, "unknown_person", "'zed'"),
    (
        "faces for unknown person",
        "post",
        "/v1/galleries/staff/people/zed/faces",
        {"files": {"images": ("x.png", png(1))}},
        404,
        "unknown_person",
        "'zed'",
    ),
    (
        "person already enrolled",
        "post",
        "/v1/galleries/staff/people",
        {"data": {"name": "p0"}, "files": {"images": ("x.png", png(5))}},
        409,
        "person_exists",
        "already enrolled",
    ),
    (
        "enrol with an empty photo",
        "post",
        "/v1/galleries/staff/people",
        {"data": {"name": "p9"}, "files": {"images": ("x.png", b"")}},
        422,
        "invalid_image",
        "empty",
    ),
    (
        "gallery exists",
        "post",
        "/v1/galleries",
        {"json": {"name": "staff"}},
        409,
        "gallery_exists",
        "already exists",
    ),
    (
        "gallery name with a path",
        "post",
        "/v1/galleries",
        {"json": {"name": "../etc"}},
        422,
        "gallery_error",
        "not valid",
    ),
    ("gallery name upper case", "get", "/v1/galleries/Staff/people", {}, 422, "gallery_error", "not valid"),
    (
        "malformed JSON",
        "post",
        "/v1/galleries",
        {"content": b'{"name": ', "headers": {"content-type": "application/json"}},
        422,
        "invalid_json",
        "not valid JSON",
    ),
    (
        "JSON of the wrong shape",
        "post",
        "/v1/galleries",
        {"json": ["staff"]},
        422,
        "invalid_request",
        "valid dictionary",
    ),
    (
        "malformed metadata",
        "post",
        "/v1/galleries/staff/people",
        {"data": {"name": "q", "meta": "{x"}, "files": {"images": ("x.png", png(5))}},
        422,
        "invalid_json",
        "meta",
    ),
    (
        "empty name",
        "post",
        "/v1/galleries/staff/people",
        {"data": {"name": "  "}, "files": {"images": ("x.png", png(5))}},
        422,
        "invalid_name",
        "cannot be empty",
    ),
    ("unknown route", "get", "/v1/nothing", {}, 404, "not_found", "Not Found"),
    ("wrong method", "put", "/v1/verify", {}, 405, "method_not_allowed", "Method Not Allowed"),
]


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code", "words"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_requests_get_a_4xx_naming_the_problem(
    staff: TestClient, method: str, path: str, kwargs: dict, status: int, code: str, words: str
) -> None:
    response = staff.request(method.upper(), path, **kwargs)
    error = error_of(response)
    assert (response.status_code, error["code"]) == (status, code), error
    assert words in error["message"]


def test_oversized_bodies_are_refused_before_reading(
    settings: ServiceSettings, open_client: Callable[..., TestClient]
) -> None:
    client = open_client(settings, limits=Limits(max_body_bytes=20_000, max_image_bytes=5_000))
    declared = client.post("/v1/detect", files={"images": ("big.png", png(1, (200, 200)))})
    assert (declared.status_code, error_of(declared)["code"]) == (413, "payload_too_large")

    def stream() -> object:  # no Content-Length: the limit applies while the body arrives
        for _ in range(30):
            yield b"x" * 1000

    streamed = client.post(
        "/v1/detect", content=stream(), headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert (streamed.status_code, error_of(streamed)["code"]) == (413, "payload_too_large")
    one_image = client.post("/v1/detect", files={"images": ("big.png", png(1, (60, 60)))})
    assert (one_image.status_code, error_of(one_image)["code"]) == (413, "image_too_large")


def test_a_gallery_of_another_model_is_refused(client: TestClient, settings: ServiceSettings) -> None:
    from faceverify.gallery.catalog import FolderCatalog

    catalog = FolderCatalog(settings.db)
    catalog.create("old")
    with catalog.open("old") as store:
        store.bind(
            {"model": "resnet50", "embedding_dim": 2048, "preprocess_fingerprint": "x", "weights_sha256": "y"}
        )
    response = client.post("/v1/galleries/old/identify", files={"image": ("x.png", png(1))})
    error = error_of(response)
    assert (response.status_code, error["code"]) == (409, "model_mismatch")
    assert "resnet50" in error["message"] and settings.db not in error["message"]
    assert client.get("/v1/galleries/old").json()["model"] == "resnet50"  # still listed, with its model


def test_messages_never_reveal_server_folders(staff: TestClient, settings: ServiceSettings) -> None:
    response = staff.delete("/v1/galleries/staff/people/zed")
    assert settings.db not in response.text and str(Path(settings.db).parent) not in response.text


def test_health_readiness_and_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "model": None}
    assert client.get("/readyz").json() == {"status": "ready", "model": "convnext_atto.d2_in1k"}
    client.post("/v1/verify", files={"a": ("a.png", png(1)), "b": ("b.png", png(2))})
    client.post("/v1/verify", files={"a": ("a.png", b"x"), "b": ("b.png", png(2))})
    text = client.get("/metrics").text
    assert (
        metric(text, "faceverify_http_requests_total", method="POST", route="/v1/verify", status="200") == 1
    )
    assert metric(text, "faceverify_faces_processed_total", endpoint="verify") == 2
    assert metric(text, "faceverify_errors_total", code="invalid_image") == 1
    assert metric(text, "faceverify_http_request_duration_seconds_count", route="/v1/verify") == 2
    assert metric(text, "faceverify_batch_images_count") >= 1


def test_page_and_docs_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "<title>faceverify</title>" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/verify", "/v1/embed", "/v1/detect", "/v1/galleries/{gallery}/identify"} <= set(paths)
