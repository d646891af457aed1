"""API keys, scopes, expiry, gallery-bound keys, the service without keys, CORS and headers."""

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
from faceverify.service.settings import ServiceSettings
from tests.service.helpers import error_of, person_images, png, write_keys


def test_keys_are_stored_hashed_private_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "service" / "keys.json"
    store = KeyStore(path)
    assert store.authenticate("anything") is None and store.records() == []
    secret, record = store.create("read", gallery="staff", label="front desk")
    assert secret.startswith(f"fvk_{record.id}_") and len(secret) > 40
    text = path.read_text()
    assert secret not in text and secret.split("_")[-1] not in text
    assert (
        stat.S_IMODE(os.stat(path).st_mode) == 0o600 and stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    )
    assert store.authenticate(secret) == record
    assert store.authenticate(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
    assert store.authenticate("x" * 10_000) is None and store.authenticate(None) is None
    other = KeyStore(path)  # another process sees the same keys
    assert other.authenticate(secret) == record
    store.revoke(record.id)
    assert other.authenticate(secret) is None
    with pytest.raises(ConfigError, match="no API key with id 'nope'"):
        store.revoke("nope")
    with pytest.raises(ConfigError, match="scope 'owner' is unknown; valid: read, enrol, write, admin"):
        store.create("owner")
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "keys-audit.jsonl",
        "keys.json",
        "keys.json.lock",
    ]


def test_scopes_include_the_ones_below_them() -> None:
    from faceverify.service.keys import SCOPES, ApiKey

    for rank, scope in enumerate(SCOPES):
        key = ApiKey(id="k", scope=scope, gallery="staff", created="")
        assert [key.grants(s) for s in SCOPES] == [i <= rank for i in range(len(SCOPES))]
        assert key.allows(scope, "staff") and not key.allows(scope, "other") and key.allows(scope, None)


def test_expired_keys_are_refused(tmp_path: Path) -> None:
    import datetime as dt

    from faceverify.service.keys import parse_expiry

    now = dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.timezone.utc)
    assert parse_expiry("30d", now) == "2027-01-04T12:00:00+00:00"
    assert parse_expiry("12h", now) == "2026-12-06T00:00:00+00:00"
    assert parse_expiry("2027-01-31", now) == "2027-01-31T00:00:00+00:00"
    assert parse_expiry("2027-01-31T18:00+01:00", now) == "2027-01-31T17:00:00+00:00"
    for bad, why in (("yesterday", "not valid"), ("2026-12-01", "in the past"), ("0d", "in the past")):
        with pytest.raises(ConfigError, match=why):
            parse_expiry(bad, now)
    store = KeyStore(tmp_path / "keys.json")
    secret, record = store.create("admin", expires="1h")
    assert store.authenticate(secret) == record and not record.expired()
    assert record.expired(dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2))
    document = json.loads((tmp_path / "keys.json").read_text())  # an hour later, as the clock sees it
    document["keys"][0]["expires"] = "2020-01-01T00:00:00+00:00"
    (tmp_path / "keys.json").write_text(json.dumps(document))
    assert KeyStore(tmp_path / "keys.json").authenticate(secret) is None


def test_the_first_key_is_made_once_and_the_file_never_through_a_link(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    first = KeyStore(path).create_first()
    assert first is not None and KeyStore(path).authenticate(first).scope == "admin"  # type: ignore[union-attr]
    assert KeyStore(path).create_first() is None and len(KeyStore(path).records()) == 1
    # a link planted where the file goes is replaced, never written through
    target = tmp_path / "elsewhere.json"
    KeyStore(target).create("read")
    before = target.read_text()
    linked = tmp_path / "linked.json"
    linked.symlink_to(target)
    KeyStore(linked).create("write")
    assert target.read_text() == before and not linked.is_symlink()
    assert stat.S_IMODE(linked.stat().st_mode) == 0o600 and len(KeyStore(linked).records()) == 2
    lock = tmp_path / "other.json.lock"
    lock.symlink_to(target)
    with pytest.raises(ConfigError, match="cannot lock"):
        KeyStore(tmp_path / "other.json").create("read")
    assert target.read_text() == before


KEYS = {
    "admin": ("admin", None),
    "writer": ("write", None),
    "enroller": ("enrol", None),
    "reader": ("read", None),
    "staff_admin": ("admin", "staff"),
    "staff_writer": ("write", "staff"),
    "staff_reader": ("read", "staff"),
}


@pytest.fixture
def keyed(settings: ServiceSettings, open_client: Callable[..., TestClient], identity_data: Path) -> dict:
    """An app with a gallery 'staff' (p0 enrolled) and 'other', and a key of every kind."""
    keys = dict(zip(KEYS, write_keys(settings, *KEYS.values())))
    client = open_client(settings, key=None)
    admin = {"X-API-Key": keys["admin"]}
    for name in ("staff", "other"):
        assert client.post("/v1/galleries", json={"name": name}, headers=admin).status_code == 201
    files = person_images(identity_data, "gallery", "p0")
    enrolled = client.post("/v1/galleries/staff/people", data={"name": "p0"}, files=files, headers=admin)
    assert enrolled.status_code == 201
    return {"client": client, **keys}


def _call(keyed: dict, key: str | None, method: str, path: str, **kwargs: object) -> tuple[int, dict]:
    headers = {"X-API-Key": keyed[key]} if key else {}
    response = keyed["client"].request(method, path, headers=headers, **kwargs)
    return response.status_code, response.json() if response.content else {}


def test_requests_without_a_valid_key_get_401_and_nothing_else(keyed: dict) -> None:
    client = keyed["client"]
    for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": keyed["admin"] + "x"}):
        for method, path in (
            ("GET", "/v1/galleries/staff/people"),
            ("GET", "/v1/galleries"),
            ("GET", "/v1/keys"),
        ):
            response = client.request(method, path, headers=headers)
            assert response.status_code == 401 and response.headers["www-authenticate"].startswith("ApiKey")
            assert error_of(response) == {
                "code": "unauthorized",
                "message": "a valid API key is required in the X-API-Key header",
            }
    big = client.post("/v1/detect", content=b"x" * (40 << 20), headers={"content-type": "image/png"})
    assert big.status_code == 401  # refused before its body is read or measured
    assert client.get("/v2/anything").status_code == 401  # deny by default: not only /v1
    assert client.get("/healthz").status_code == 200 and client.get("/").status_code == 200


def test_without_a_keys_file_nothing_is_open(
    settings: ServiceSettings, open_client: Callable[..., TestClient]
) -> None:
    client = open_client(settings, key=None)  # no keys file at all: not an open API
    assert not Path(settings.keys_file).exists()
    for method, path in (("GET", "/v1/galleries"), ("POST", "/v1/galleries"), ("POST", "/v1/verify")):
        assert client.request(method, path).status_code == 401, path
    (key,) = write_keys(settings, ("read", None))
    assert client.get("/v1/galleries", headers={"X-API-Key": key}).status_code == 200
    Path(settings.keys_file).unlink()  # deleting the file revokes every key; it never opens the API
    assert client.get("/v1/galleries", headers={"X-API-Key": key}).status_code == 401


#: Every kind of change, and the least scope that may make it.
CHANGES = (
    (
        "enrol",
        "POST",
        "/v1/galleries/staff/people",
        {"data": {"name": "q"}, "files": {"images": ("x.png", b"")}},
    ),
    ("enrol", "POST", "/v1/galleries/staff/people/p0/faces", {"files": {"images": ("x.png", b"")}}),
    ("write", "DELETE", "/v1/galleries/staff/people/nobody", {}),
    ("write", "DELETE", "/v1/galleries/staff/people?id=999", {}),
    ("admin", "POST", "/v1/galleries", {"json": {"name": "new"}}),
    ("admin", "DELETE", "/v1/galleries/nothing-here", {}),
    ("admin", "GET", "/v1/keys", {}),
)


def test_each_scope_may_do_its_own_and_lower_changes_only(keyed: dict) -> None:
    from faceverify.service.keys import SCOPES

    for needed, method, path, kwargs in CHANGES:
        for holder in ("reader", "enroller", "writer", "admin"):
            status, body = _call(keyed, holder, method, path, **kwargs)
            scope = KEYS[holder][0]
            if SCOPES.index(scope) < SCOPES.index(needed):
                assert status == 403, (holder, method, path)
                assert body["error"]["message"] == (
                    f"this API key's scope is {scope!r}; this needs {needed!r} or above"
                )
            else:  # allowed: whatever happens next is the request's own business, never 401/403
                assert status not in (401, 403), (holder, method, path, body)
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
        ("DELETE", "/v1/galleries/other/people?id=1"),
        ("GET", "/v1/galleries/nonexistent/people"),  # the same answer: existence is not revealed
    ):
        status, body = _call(
            keyed,
            "staff_admin",
            method,
            path,
            files={"image": ("x.png", png(1))} if method == "POST" else None,
        )
        assert (status, body["error"]["message"]) == (403, "this API key is not valid for this gallery"), path
    status, body = _call(keyed, "staff_admin", "POST", "/v1/galleries", json={"name": "elsewhere"})
    assert status == 403
    status, body = _call(keyed, "staff_admin", "GET", "/v1/keys")  # it could make itself a key for all
    assert status == 403 and "every gallery" in body["error"]["message"]
    status, body = _call(keyed, "staff_writer", "DELETE", "/v1/galleries/staff/people/p0")
    assert (status, body) == (200, {"removed": "p0", "faces": 2})


def test_admin_keys_manage_keys_over_the_api(keyed: dict, settings: ServiceSettings) -> None:
    status, made = _call(
        keyed,
        "admin",
        "POST",
        "/v1/keys",
        json={"scope": "enrol", "gallery": "staff", "label": "kiosk", "expires": "8w"},
    )
    assert status == 201 and made["key"].startswith("fvk_") and made["expires"]
    stored = {record.id: record for record in KeyStore(settings.keys_file).records()}
    assert stored[made["id"]].scope == "enrol" and made["key"] not in Path(settings.keys_file).read_text()
    status, listed = _call(keyed, "admin", "GET", "/v1/keys")
    assert status == 200 and made["id"] in {k["id"] for k in listed} and all("key" not in k for k in listed)
    assert keyed["client"].get("/v1/galleries", headers={"X-API-Key": made["key"]}).status_code == 200
    status, body = _call(keyed, "admin", "POST", "/v1/keys", json={"scope": "root"})
    assert status == 422 and "scope 'root' is unknown" in body["error"]["message"]
    assert _call(keyed, "admin", "DELETE", f"/v1/keys/{made['id']}")[0] == 204
    assert keyed["client"].get("/v1/galleries", headers={"X-API-Key": made["key"]}).status_code == 401
    status, body = _call(keyed, "admin", "DELETE", f"/v1/keys/{made['id']}")
    assert (status, body["error"]["code"]) == (404, "unknown_key")
    admin_id = KeyStore(settings.keys_file).authenticate(keyed["admin"]).id  # type: ignore[union-attr]
    changes = [(e["actor"], e["action"], e["key"]) for e in KeyStore(settings.keys_file).log()][-2:]
    assert changes == [(f"key:{admin_id}", "create", made["id"]), (f"key:{admin_id}", "revoke", made["id"])]


def test_keys_created_while_serving_take_effect(keyed: dict, settings: ServiceSettings) -> None:
    (late,) = write_keys(settings, ("read", None))
    assert keyed["client"].get("/v1/galleries", headers={"X-API-Key": late}).status_code == 200
    store = KeyStore(settings.keys_file)
    store.revoke(store.records()[-1].id)
    assert keyed["client"].get("/v1/galleries", headers={"X-API-Key": late}).status_code == 401


def test_a_prefix_or_root_path_skips_no_key_check(settings: ServiceSettings, atto_file: Path) -> None:
    from fastapi import FastAPI

    from faceverify.service.app import create_app

    (key,) = write_keys(settings, ("read", None))
    inner = create_app(settings)
    outer = FastAPI(lifespan=lambda _: inner.router.lifespan_context(inner))
    outer.mount("/face", inner)  # mounted under a prefix by a larger app
    with TestClient(outer) as client:
        assert client.get("/face/v1/galleries").status_code == 401
        assert client.get("/face/v1/galleries", headers={"X-API-Key": key}).status_code == 200
        assert client.get("/face/healthz").status_code == 200
    with TestClient(create_app(settings), root_path="/proxied") as client:  # serve --root-path
        assert client.get("/proxied/v1/galleries").status_code == 401
        assert client.get("/proxied/v1/galleries", headers={"X-API-Key": key}).status_code == 200


def test_every_api_route_checks_the_key_itself(settings: ServiceSettings) -> None:
    """Even with the authentication middleware gone, no /v1 route answers without a key."""
    from faceverify.service.app import create_app
    from faceverify.service.middleware import Authenticate

    app = create_app(settings)
    app.user_middleware = [m for m in app.user_middleware if m.cls is not Authenticate]
    routes = [
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path.startswith("/v1")
        for method in operations
    ]
    assert len(routes) >= 17
    with TestClient(app) as client:
        for method, template in routes:
            path = template.replace("{gallery}", "staff").replace("{name}", "p0").replace("{key_id}", "k")
            response = client.request(method, path)
            assert response.status_code == 401, (method, path, response.text)


def test_without_keys_web_pages_and_foreign_hosts_are_refused(
    settings: ServiceSettings, open_client: Callable[..., TestClient]
) -> None:
    client = open_client(settings, insecure=True)  # `serve --insecure` on 127.0.0.1
    assert client.get("/v1/galleries").status_code == 200  # no key needed
    created = client.post("/v1/galleries", json={"name": "local"}, headers={"Origin": "http://127.0.0.1"})
    assert created.status_code == 201  # the page itself
    for headers in (
        {"Origin": "https://evil.example"},  # another site's script posting a form
        {"Origin": "null"},  # a sandboxed frame or a file:// page
        {"Host": "rebound.example:8000"},  # DNS rebinding: a foreign name resolving to 127.0.0.1
        {"Host": "127.0.0.1.evil.example"},
    ):
        response = client.delete("/v1/galleries/local", headers=headers)
        assert response.status_code == 403 and error_of(response)["code"] == "forbidden_origin", headers
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000", "LOCALHOST"):
        assert client.get("/v1/galleries", headers={"Host": host}).status_code == 200, host
    assert [g["name"] for g in client.get("/v1/galleries").json()] == ["local"]
    allowed = open_client(settings, insecure=True, cors_origins=("https://app.example",))
    assert allowed.get("/v1/galleries", headers={"Origin": "https://app.example"}).status_code == 200
    wide = open_client(settings, insecure=True, host="0.0.0.0")  # beyond loopback: Host not checked
    assert wide.get("/v1/galleries", headers={"Host": "faces.lan"}).status_code == 200
    assert (
        wide.post("/v1/galleries", json={"name": "x"}, headers={"Origin": "https://evil.example"}).status_code
        == 403
    )


def test_readiness_tells_why_only_to_key_holders(keyed: dict) -> None:
    client = keyed["client"]
    state = client.app.state.service  # type: ignore[attr-defined]
    state.batcher.stop()
    try:
        anonymous = client.get("/readyz")
        assert anonymous.status_code == 503 and error_of(anonymous)["message"] == "not ready"
        trusted = client.get("/readyz", headers={"X-API-Key": keyed["reader"]})
        assert trusted.status_code == 503 and "batcher" in error_of(trusted)["message"]
    finally:
        state.batcher.start()
    assert client.get("/readyz").json()["status"] == "ready"


def test_made_up_http_methods_share_one_metrics_label(keyed: dict) -> None:
    client = keyed["client"]
    for method in ("BREW", "PROPFIND", "X-ANYTHING"):
        client.request(method, "/healthz")
    text = client.get("/metrics").text
    labels = {line.split('method="')[1].split('"')[0] for line in text.splitlines() if 'method="' in line}
    assert "other" in labels and labels <= {"GET", "POST", "DELETE", "other"}, labels


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
