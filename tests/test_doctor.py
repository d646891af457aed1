"""``faceverify.doctor``: each check on real files, a real closed port and a real PostgreSQL."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from faceverify import doctor
from faceverify.doctor import Check, Report, check_gallery, check_keys, mask_url, run_checks
from faceverify.service.keys import KeyStore

PASSWORD = "s3cret-Pa55"


def closed_port_url(password: str = PASSWORD) -> str:
    """A PostgreSQL URL on 127.0.0.1 at a port nobody listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"postgresql://alice:{password}@127.0.0.1:{port}/faces"


def keys_file(folder: Path, mode: int, *, scopes: tuple[str, ...] = ("admin", "read", "read")) -> Path:
    """A real keys file made by KeyStore in ``folder`` (0700), then given ``mode``."""
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / "keys.json"
    store = KeyStore(path)
    for scope in scopes:
        store.create(scope)
    os.chmod(path, mode)
    return path


# ----------------------------------------------------------------------------------------
# the report and its checks


def test_check_refuses_an_unknown_status() -> None:
    with pytest.raises(ValueError, match="'fine' is not valid; valid: ok, warn, missing, broken"):
        Check("x", "fine", "")  # type: ignore[arg-type]


def test_only_required_missing_or_broken_checks_fail_the_report() -> None:
    optional = Check("torch", "missing", "not installed", 'pip install "faceverify[torch]"')
    warned = Check("gpu", "warn", "unused", "fix", required=True)
    assert not optional.failed and not warned.failed and Report([optional, warned]).ok
    broken = Check("dlib", "broken", "cannot be imported", "pip install dlib-bin", required=True)
    assert broken.failed and not Report([optional, broken]).ok
    assert Report([broken]).to_dict() == {
        "checks": [
            {
                "name": "dlib",
                "status": "broken",
                "detail": "cannot be imported",
                "fix": "pip install dlib-bin",
                "required": True,
            }
        ],
        "ok": False,
    }


def test_a_check_that_raises_is_reported_broken_not_raised() -> None:
    def exploding() -> Check:
        raise RuntimeError("odd installation")

    found = doctor._guarded("odd", exploding)
    assert found == Check("odd", "broken", "the check itself failed: RuntimeError: odd installation")


def test_every_line_that_is_not_ok_says_how_to_fix_it() -> None:
    report = run_checks()
    names = [check.name for check in report.checks]
    assert len(names) == len(set(names)), names
    for expected in ("python", "onnxruntime", "torch", "gpu", "dlib", "detectors", "faiss", "keys file"):
        assert expected in names
    for check in report.checks:
        assert check.status == "ok" or check.fix, check
        assert "the check itself failed" not in check.detail, check


def test_base_components_of_this_install_are_ok() -> None:
    checks = {check.name: check for check in run_checks().checks}
    for name in ("onnxruntime", "dlib", "model dlib_resnet_v1", "detectors"):
        assert checks[name].status == "ok" and checks[name].required, checks[name]
    for extra in ("faiss", "onnx"):  # the index and onnx extras: reported, never failing the report
        assert checks[extra].status == "ok" and not checks[extra].required, checks[extra]
    files = [check for name, check in checks.items() if name.startswith("dlib file (")]
    assert {c.name for c in files} == {
        "dlib file (cnn detector)",
        "dlib file (landmarks)",
        "dlib file (face network)",
    }
    for check in files:
        path = Path(check.detail.rsplit(" (", 1)[0])
        assert path.is_file() and check.status == "ok"
    assert "hog+mmod (default)" in checks["detectors"].detail
    assert checks["faiss"].detail.startswith(__import__("faiss").__version__)


def test_onnxruntime_lists_its_providers() -> None:
    import onnxruntime

    check = doctor.check_onnxruntime()
    assert check.status == "ok"
    for provider in onnxruntime.get_available_providers():
        assert provider in check.detail


def test_gpu_line_warns_with_a_fix_whenever_a_gpu_goes_unused() -> None:
    check = doctor.check_gpu()
    if not doctor.gpu_hardware():
        assert (check.status, check.detail) == ("ok", "none found; everything runs on the CPU")
    elif check.status == "warn":
        assert "runs on the CPU" in check.detail or "CUDA_VISIBLE_DEVICES" in check.detail
        assert check.fix
    else:
        assert check.status == "ok" and "used by" in check.detail


def test_human_size() -> None:
    assert [doctor.human_size(n) for n in (0, 999, 22_500_000, 3 * 10**12)] == [
        "0 B",
        "999 B",
        "22.5 MB",
        "3000.0 GB",
    ]


# ----------------------------------------------------------------------------------------
# the keys file


def test_keys_file_open_to_others_is_broken_with_the_chmod_fix(tmp_path: Path) -> None:
    path = keys_file(tmp_path / "service", 0o644)
    check = check_keys(str(path))
    assert check.status == "broken" and check.required and check.failed
    assert "file mode 0644" in check.detail and "0600 expected" in check.detail
    assert check.fix == f"chmod 600 {path}"


def test_keys_file_0600_in_a_0700_folder_is_ok_and_counted_without_secrets(tmp_path: Path) -> None:
    folder = tmp_path / "service"
    path = keys_file(folder, 0o600)
    check = check_keys(str(path))
    assert check.status == "ok" and check.required and not check.failed, check
    assert check.detail == f"{path}: 3 keys (1 admin, 2 read)"
    stored = path.read_text()
    import json

    for entry in json.loads(stored)["keys"]:
        assert entry["sha256"] not in check.detail and entry["id"] not in check.detail


def test_keys_folder_open_to_others_is_broken_with_chmod_700(tmp_path: Path) -> None:
    folder = tmp_path / "service"
    path = keys_file(folder, 0o600)
    os.chmod(folder, 0o755)
    check = check_keys(str(path))
    assert check.status == "broken" and "mode 0755" in check.detail
    assert check.fix == f"chmod 700 {folder}"


def test_named_keys_file_that_does_not_exist_fails_but_the_default_only_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    named = check_keys(str(tmp_path / "nowhere.json"))
    assert named.status == "broken" and named.failed and "does not exist" in named.detail
    assert named.fix.startswith("faceverify keys create --keys ")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    default = check_keys(None)
    assert default.status == "missing" and not default.failed
    assert str(tmp_path / "data" / "faceverify" / "service" / "keys.json") in default.detail


def test_keys_file_that_is_not_one_is_broken(tmp_path: Path) -> None:
    tmp_path.chmod(0o700)
    path = tmp_path / "keys.json"
    path.write_text("not json")
    path.chmod(0o600)
    check = check_keys(str(path))
    assert check.status == "broken" and "unreadable" in check.detail and check.fix


def test_keys_file_without_keys_warns(tmp_path: Path) -> None:
    path = keys_file(tmp_path / "service", 0o600, scopes=("read",))
    store = KeyStore(path)
    store.revoke(store.records()[0].id)
    check = check_keys(str(path))
    assert check.status == "warn" and "0 keys" in check.detail and "accepts no request" in check.detail


# ----------------------------------------------------------------------------------------
# the gallery behind --db


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://alice:pw@db:5432/faces", "postgresql://alice:***@db:5432/faces"),
        ("postgres://bob:p%40ss@db/x?sslmode=require", "postgres://bob:***@db/x?sslmode=require"),
        (
            "postgresql://db/x?user=a&password=pw&sslmode=disable",
            "postgresql://db/x?user=a&password=***&sslmode=disable",
        ),
        ("postgresql://carol@db/x", "postgresql://carol@db/x"),
        ("postgresql://postgres:@/postgres?host=/tmp/pg", "postgresql://postgres:***@/postgres?host=/tmp/pg"),
    ],
)
def test_mask_url_hides_every_password(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_unreachable_postgres_is_broken_within_the_timeout_and_never_shows_the_password() -> None:
    url = closed_port_url()
    started = time.monotonic()
    check = check_gallery(url)
    assert time.monotonic() - started < doctor.CONNECT_TIMEOUT_S + 2
    assert check.status == "broken" and check.failed
    assert "cannot connect to PostgreSQL at postgresql://alice:***@127.0.0.1:" in check.detail
    assert PASSWORD not in check.detail and PASSWORD not in check.fix


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://alice:{PASSWORD}@[bad/faces",  # the driver quotes an unparsable URL back
        f"postgresql://127.0.0.1:1/faces?user=alice&password={PASSWORD}",
    ],
)
def test_a_bad_url_is_broken_and_its_password_is_not_quoted_back(url: str) -> None:
    check = check_gallery(url)
    assert check.status == "broken" and check.failed
    assert PASSWORD not in check.detail and "***" in check.detail


def test_real_postgres_reports_its_pgvector_version(pg_url: str) -> None:
    import psycopg

    with psycopg.connect(pg_url) as db:
        row = db.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    assert row is not None
    version = row[0]
    check = check_gallery(pg_url)
    assert check.status == "ok" and check.required, check
    assert f"pgvector {version};" in check.detail and "PostgreSQL " in check.detail


def test_embedded_gallery_is_counted_and_left_as_found(tmp_path: Path) -> None:
    from faceverify.gallery.sqlite import DB_NAME, SQLiteStore

    folder = tmp_path / "gallery"
    with SQLiteStore(folder) as store:
        store.bind({"model": "dlib_resnet_v1", "embedding_dim": 4})
    before = sorted(p.name for p in folder.iterdir())
    check = check_gallery(str(folder))
    assert check == Check(
        "gallery", "ok", f"{folder}: SQLite, 0 people, 0 faces, model dlib_resnet_v1", required=True
    )
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written
    parent = check_gallery(str(tmp_path))
    assert parent.status == "ok" and "a folder of 1 galleries: gallery" in parent.detail
    as_file = check_gallery(str(folder / DB_NAME))
    assert as_file.status == "broken" and as_file.fix == f"--db {folder}"


def test_named_gallery_that_is_missing_or_corrupt_fails(tmp_path: Path) -> None:
    missing = check_gallery(str(tmp_path / "nowhere"))
    assert missing.status == "broken" and missing.failed and "no gallery at" in missing.detail
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "gallery.db").write_bytes(b"this is no database" * 100)
    corrupt = check_gallery(str(folder))
    assert corrupt.status == "broken" and "cannot be read" in corrupt.detail and corrupt.fix


def test_default_gallery_not_created_yet_is_fine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    check = check_gallery(None)
    assert check.status == "ok" and not check.required and "no gallery yet" in check.detail


def test_faceverify_is_reported_with_its_package_folder() -> None:
    from pathlib import Path

    import faceverify
    from faceverify.doctor.runtimes import check_faceverify

    check = check_faceverify()
    assert check.status == "ok" and check.detail.endswith(f"({Path(faceverify.__file__).resolve().parent})")
