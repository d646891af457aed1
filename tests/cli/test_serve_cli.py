"""``faceverify keys`` and ``faceverify serve``: keys shown once, open APIs kept local."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from faceverify.cli.common import EXIT_ERROR, EXIT_OK, EXIT_USAGE
from tests.cli.test_cli import Capture, _one_line_error, run

pytest.importorskip("uvicorn", reason="the service needs its extra: pip install 'faceverify[serve]'")


def test_keys_create_list_revoke(capsys: Capture, tmp_path: Path) -> None:
    keys = str(tmp_path / "keys.json")
    code, out, err = run(capsys, "keys", "create", "--scope", "write", "--gallery", "staff", "--keys", keys)
    secret = out.strip()
    assert code == EXIT_OK and secret.startswith("fvk_") and "shown only now" in err
    assert secret not in Path(keys).read_text()
    code, out, _ = run(
        capsys, "keys", "create", "--scope", "read", "--label", "kiosk", "--keys", keys, "--json"
    )
    created = json.loads(out)
    assert created["scope"] == "read" and created["gallery"] is None and created["key"].startswith("fvk_")
    code, out, _ = run(capsys, "keys", "list", "--keys", keys)
    rows = [line.split("\t") for line in out.splitlines()]
    assert [(r[1], r[2], r[4]) for r in rows] == [("write", "staff", ""), ("read", "*", "kiosk")]
    code, out, _ = run(capsys, "keys", "revoke", rows[0][0], "--keys", keys)
    assert out == f"revoked {rows[0][0]}\n"
    code, _, err = run(capsys, "keys", "revoke", "nope", "--keys", keys)
    assert code == EXIT_ERROR and "no API key with id 'nope'" in _one_line_error(err)
    with pytest.raises(SystemExit) as usage:
        run(capsys, "keys", "create", "--scope", "admin", "--keys", keys)
    assert usage.value.code == EXIT_USAGE and "invalid choice: 'admin'" in capsys.readouterr().err
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


def test_serve_refuses_an_open_api_beyond_localhost(capsys: Capture, tmp_path: Path, started: dict) -> None:
    keys = str(tmp_path / "keys.json")
    code, _, err = run(capsys, "serve", "--host", "0.0.0.0", "--keys", keys)
    assert code == EXIT_ERROR and "refusing to listen on 0.0.0.0 without API keys" in _one_line_error(err)
    assert started == {}
    code, _, err = run(capsys, "serve", "--host", "0.0.0.0", "--keys", keys, "--insecure")
    assert code == EXIT_OK and started["host"] == "0.0.0.0" and "the API is open" in err
    run(capsys, "keys", "create", "--scope", "read", "--keys", keys)
    started.clear()
    code, _, _ = run(capsys, "serve", "--host", "0.0.0.0", "--keys", keys)
    assert code == EXIT_OK and started["host"] == "0.0.0.0"


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
    assert (settings["detect"], settings["upsample"], settings["detector"]) == (False, 0, "hog")
    from faceverify.service.app import app_from_environment

    assert app_from_environment().title == "faceverify"  # what each worker builds
