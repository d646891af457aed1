"""``faceverify keys`` and ``faceverify serve``: keys shown once, never an open API by default."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from faceverify.cli.common import EXIT_ERROR, EXIT_OK, EXIT_USAGE
from tests.cli.test_cli import Capture, _one_line_error, run


def test_keys_create_list_revoke(capsys: Capture, tmp_path: Path) -> None:
    keys = str(tmp_path / "keys.json")
    code, out, err = run(capsys, "keys", "create", "--scope", "write", "--gallery", "staff", "--keys", keys)
    secret = out.strip()
    assert code == EXIT_OK and secret.startswith("fvk_") and "shown only now" in err
    assert secret not in Path(keys).read_text()
    code, out, _ = run(
        capsys,
        "keys",
        "create",
        "--scope",
        "enrol",
        "--label",
        "kiosk",
        "--expires",
        "30d",
        "--keys",
        keys,
        "--json",
    )
    created = json.loads(out)
    assert created["scope"] == "enrol" and created["gallery"] is None and created["key"].startswith("fvk_")
    assert created["expires"] > created["created"]
    code, out, _ = run(capsys, "keys", "list", "--keys", keys)
    rows = [line.split("\t") for line in out.splitlines()]
    assert [(r[1], r[2], r[4], r[5]) for r in rows] == [
        ("write", "staff", "-", ""),
        ("enrol", "*", created["expires"], "kiosk"),
    ]
    code, out, _ = run(capsys, "keys", "revoke", rows[0][0], "--keys", keys)
    assert out == f"revoked {rows[0][0]}\n"
    code, out, _ = run(capsys, "keys", "log", "--keys", keys)
    import getpass

    logged = [line.split("\t")[1:] for line in out.splitlines()]
    me = f"cli:{getpass.getuser()}"
    assert logged == [
        [me, "create", rows[0][0], "write", "staff"],
        [me, "create", rows[1][0], "enrol", "*"],
        [me, "revoke", rows[0][0], "write", "staff"],
    ]
    assert secret not in Path(keys).with_name("keys-audit.jsonl").read_text()
    code, _, err = run(capsys, "keys", "revoke", "nope", "--keys", keys)
    assert code == EXIT_ERROR and "no API key with id 'nope'" in _one_line_error(err)
    with pytest.raises(SystemExit) as usage:
        run(capsys, "keys", "create", "--scope", "owner", "--keys", keys)
    assert usage.value.code == EXIT_USAGE and "invalid choice: 'owner'" in capsys.readouterr().err
    code, _, err = run(capsys, "keys", "create", "--scope", "read", "--expires", "2001-01-01", "--keys", keys)
    assert code == EXIT_ERROR and "expiry '2001-01-01' is in the past" in _one_line_error(err)
    code, _, err = run(capsys, "keys", "create", "--scope", "read", "--gallery", "../x", "--keys", keys)
    assert code == EXIT_ERROR and "not valid" in _one_line_error(err)


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What ``serve`` hands to uvicorn, without starting a server."""
    import uvicorn

    seen: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: seen.update(app=app, **options))
    monkeypatch.delenv("FACEVERIFY_SERVICE_SETTINGS", raising=False)
    return seen


def test_serve_creates_an_admin_key_on_first_start_and_shows_it_once(
    capsys: Capture, tmp_path: Path, started: dict
) -> None:
    from faceverify.service.keys import KeyStore

    keys = tmp_path / "service" / "keys.json"
    code, out, err = run(capsys, "serve", "--host", "0.0.0.0", "--keys", str(keys))
    secret = next(word for word in err.split() if word.startswith("fvk_"))
    assert code == EXIT_OK and out == "" and started["host"] == "0.0.0.0"
    assert f"X-API-Key: {secret}" in err and f"/#key={secret}" in err and "shown only now" in err
    (record,) = KeyStore(keys).records()
    assert record.scope == "admin" and KeyStore(keys).authenticate(secret) == record
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600 and stat.S_IMODE(keys.parent.stat().st_mode) == 0o700
    assert started["h11_max_incomplete_event_size"] > 0 and started["timeout_keep_alive"] > 0
    settings = started["app"]  # the app itself (one worker): keys required
    assert settings.state.keys is not None
    started.clear()
    code, _, err = run(capsys, "serve", "--keys", str(keys))  # a second start: no new key, none shown
    assert code == EXIT_OK and "fvk_" not in err and len(KeyStore(keys).records()) == 1


def test_serve_without_keys_only_when_told_and_says_so(
    capsys: Capture, tmp_path: Path, started: dict
) -> None:
    keys = tmp_path / "keys.json"
    code, _, err = run(capsys, "serve", "--keys", str(keys), "--insecure")
    assert code == EXIT_OK and not keys.exists() and "no API keys" in err
    assert started["app"].state.keys is None
    code, _, err = run(capsys, "serve", "--host", "0.0.0.0", "--keys", str(keys), "--insecure")
    assert code == EXIT_OK and "Anyone on the network can read, enrol and delete" in err


def test_serve_hands_its_settings_to_uvicorn(
    capsys: Capture, tmp_path: Path, started: dict, atto_file: Path
) -> None:
    argv = ["serve", "--port", "8123", "--db", str(tmp_path / "g"), "--keys", str(tmp_path / "k.json")]
    argv += ["--weights", str(atto_file), "--input-size", "32", "--batch-size", "16", "--max-images", "3"]
    assert run(capsys, *argv)[0] == EXIT_OK
    assert (started["host"], started["port"], started["server_header"]) == ("127.0.0.1", 8123, False)
    assert {"/v1/verify", "/healthz"} <= set(started["app"].openapi()["paths"])
    assert (
        run(
            capsys,
            *argv,
            "--workers",
            "2",
            "--no-batching",
            "--threads",
            "1",
            "--no-detect",
            "--upsample",
            "0",
        )[0]
        == EXIT_OK
    )
    assert started["app"] == "faceverify.service.app:app_from_environment" and started["workers"] == 2
    settings = json.loads(os.environ["FACEVERIFY_SERVICE_SETTINGS"])
    assert settings["weights"] == str(atto_file) and (settings["input_size"], settings["threads"]) == (32, 1)
    assert settings["batching"] == {"enabled": False, "max_batch": 16, "max_wait_ms": 5.0, "max_queue": 256}
    assert settings["limits"]["max_images"] == 3
    faces = settings["faces"]
    assert (faces["detect"], faces["upsample"], faces["detector"], faces["several"]) == (
        False,
        0,
        "hog+mmod",
        None,
    )
    from faceverify.service.app import app_from_environment

    assert app_from_environment().title == "faceverify"  # what each worker builds


def test_a_fresh_server_refuses_writes_without_the_key_it_printed(tmp_path: Path, atto_file: Path) -> None:
    """The real `faceverify serve` process, first start: the printed key works, nothing else does."""
    import socket
    import subprocess
    import sys
    import time

    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "faceverify", "serve", "--port", str(port), "--db", str(tmp_path / "g")]
    command += ["--keys", str(tmp_path / "keys.json"), "--weights", str(atto_file), "--input-size", "32"]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        key = ""
        deadline = time.monotonic() + 120
        while not key and time.monotonic() < deadline:  # the key comes before uvicorn starts
            line = server.stderr.readline()
            assert line or server.poll() is None, "the server exited before printing its key"
            key = next((word for word in line.split() if word.startswith("fvk_")), "")
        base = f"http://127.0.0.1:{port}"
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        refused = httpx.post(f"{base}/v1/galleries", json={"name": "staff"})
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
        assert httpx.get(f"{base}/v1/galleries").status_code == 401  # reads too
        made = httpx.post(f"{base}/v1/galleries", json={"name": "staff"}, headers={"X-API-Key": key})
        assert made.status_code == 201
    finally:
        server.terminate()
        server.wait(30)
    assert server.stdout is not None and key not in server.stdout.read()  # uvicorn's access log


def test_serve_refuses_a_faces_policy_that_would_override_every_route(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from faceverify.cli.main import main

    assert main(["serve", "--faces", "all", "--insecure"]) != 0
    assert "serve takes no --faces; each route keeps its job's default" in capsys.readouterr().err
