"""API keys, scopes, gallery-bound keys, exposure rules, CORS and headers."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from faceverify.errors import ConfigError
from faceverify.service.keys import KeyStore
from faceverify.service.settings import ServiceSettings, check_exposure
from tests.service.helpers import error_of, person_images, png, write_keys


def test_keys_are_stored_hashed_private_and_checked(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys.json")
    assert not store.required and store.authenticate("anything") is None
    secret, record = store.create("read", gallery="staff", label="front desk")
    assert secret.startswith(f"fvk_{record.id}_") and len(secret) > 40
    text = (tmp_path / "keys.json").read_text()
    assert secret not in text and secret.split("_")[-1] not in text
    assert stat.S_IMODE(os.stat(tmp_path / "keys.json").st_mode) == 0o600
    assert store.required
    assert store.authenticate(secret) == record
    assert store.authenticate(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    assert store.authenticate("x" * 10_000) is None and store.authenticate(None) is None
    other = KeyStore(tmp_path / "keys.json")  # another process sees the same keys
    assert other.authenticate(secret) == record
    store.revoke(record.id)
    assert other.authenticate(secret) is None and other.required  # revoking the last key never opens
    with pytest.raises(ConfigError, match="no API key with id 'nope'"):
        store.revoke("nope")
    with pytest.raises(ConfigError, match="scope 'admin' is unknown"):
        store.create("admin")


def test_without_a_keys_file_only_localhost_may_listen(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    for host in ("127.0.0.1", "localhost", "::1"):
        check_exposure(host, keys, insecure=False)
    for host in ("0.0.0.0", "192.168.1.5", "example.org", "::"):
        with pytest.raises(ConfigError, match="refusing to listen"):
            check_exposure(host, keys, insecure=False)
        check_exposure(host, keys, insecure=True)
    KeyStore(keys).create("read")
    check_exposure("0.0.0.0", keys, insecure=False)


@pytest.fixture
def keyed(settings: ServiceSettings, open_client: Callable[..., TestClient], identity_data: Path) -> dict:
    """An app with a gallery 'staff' (p0 enrolled) and 'other', and four keys."""
    admin, reader, staff_writer, staff_reader = write_keys(
        settings, ("write", None), ("read", None), ("write", "staff"), ("read", "staff")
    )
    client = open_client(settings)
    client.headers["X-API-Key"] = admin
    for name in ("staff", "other"):
        assert client.post("/v1/galleries", json={"name": name}).status_code == 201
    files = person_images(identity_data, "gallery", "p0")
    assert client.post("/v1/galleries/staff/people", data={"name": "p0"}, files=files).status_code == 201
    del client.headers["X-API-Key"]
    return {
        "client": client,
        "admin": admin,
        "reader": reader,
        "staff_writer": staff_writer,
        "staff_reader": staff_reader,
    }


def _call(keyed: dict, key: str | None, method: str, path: str, **kwargs: object) -> tuple[int, dict]:
    headers = {"X-API-Key": keyed[key]} if key else {}
    response = keyed["client"].request(method, path, headers=headers, **kwargs)
    return response.status_code, response.json() if response.content else {}


def test_requests_without_a_valid_key_get_401_and_nothing_else(keyed: dict) -> None:
    client = keyed["client"]
    for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": keyed["admin"] + "x"}):
        response = client.get("/v1/galleries/staff/people", headers=headers)
        assert response.status_code == 401 and response.headers["www-authenticate"].startswith("ApiKey")
        assert error_of(response) == {
            "code": "unauthorized",
            "message": "a valid API key is required in the X-API-Key header",
        }
    big = client.post("/v1/detect", content=b"x" * (40 << 20), headers={"content-type": "image/png"})
    assert big.status_code == 401  # refused before its body is read or measured
    assert client.get("/healthz").status_code == 200 and client.get("/").status_code == 200


def test_read_keys_cannot_change_galleries(keyed: dict) -> None:
    image = {"files": {"images": ("x.png", png(3))}}
    for method, path, kwargs in (
        ("POST", "/v1/galleries/staff/people", {"data": {"name": "q"}, **image}),
        ("POST", "/v1/galleries/staff/people/p0/faces", image),
        ("DELETE", "/v1/galleries/staff/people/p0", {}),
        ("POST", "/v1/galleries", {"json": {"name": "new"}}),
        ("DELETE", "/v1/galleries/staff", {}),
    ):
        status, body = _call(keyed, "reader", method, path, **kwargs)
        assert (status, body["error"]["message"]) == (403, "this API key may only read"), path
    status, body = _call(keyed, "reader", "GET", "/v1/galleries/staff/people")
    assert (status, [p["name"] for p in body]) == (200, ["p0"])
    status, body = _call(
        keyed, "reader", "POST", "/v1/verify", files={"a": ("a", png(1)), "b": ("b", png(1))}
    )
    assert status == 200 and body["same"]


def test_a_key_for_one_gallery_cannot_touch_another(keyed: dict) -> None:
    status, listed = _call(keyed, "staff_reader", "GET", "/v1/galleries")
    assert [g["name"] for g in listed] == ["staff"]
    for method, path in (
        ("GET", "/v1/galleries/other/people"),
        ("GET", "/v1/galleries/other"),
        ("POST", "/v1/galleries/other/identify"),
        ("DELETE", "/v1/galleries/other"),
        ("GET", "/v1/galleries/nonexistent/people"),  # the same answer: existence is not revealed
    ):
        status, body = _call(
            keyed,
            "staff_writer",
            method,
            path,
            files={"image": ("x.png", png(1))} if method == "POST" else None,
        )
        assert (status, body["error"]["message"]) == (403, "this API key is not valid for this gallery"), path
    status, body = _call(keyed, "staff_writer", "POST", "/v1/galleries", json={"name": "elsewhere"})
    assert status == 403
    status, body = _call(keyed, "staff_writer", "DELETE", "/v1/galleries/staff/people/p0")
    assert (status, body) == (200, {"removed": "p0", "faces": 2})


def test_keys_created_while_serving_take_effect(keyed: dict, settings: ServiceSettings) -> None:
    (late,) = write_keys(settings, ("read", None))
    assert keyed["client"].get("/v1/galleries", headers={"X-API-Key": late}).status_code == 200
    store = KeyStore(settings.keys_file)
    store.revoke(store.keys()[-1].id)
    assert keyed["client"].get("/v1/galleries", headers={"X-API-Key": late}).status_code == 401


def test_cors_is_off_unless_origins_are_configured(
    settings: ServiceSettings, open_client: Callable[..., TestClient]
) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    plain = open_client(settings)
    response = plain.options("/v1/verify", headers=preflight)
    assert "access-control-allow-origin" not in response.headers
    assert (
        "access-control-allow-origin"
        not in plain.get("/healthz", headers={"Origin": "https://app.example"}).headers
    )
    allowed = open_client(settings, cors_origins=("https://app.example",))
    response = allowed.options(
        "/v1/verify", headers={**preflight, "Access-Control-Request-Headers": "X-API-Key"}
    )
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    other = allowed.options("/v1/verify", headers={**preflight, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_answers_carry_protective_headers(client: TestClient) -> None:
    api = client.get("/v1/galleries")
    assert api.headers["cache-control"] == "no-store"
    assert api.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in client.get("/").headers["content-security-policy"]
    assert "server" not in api.headers or "uvicorn" not in api.headers["server"]
    assert json.loads(api.text) == []
