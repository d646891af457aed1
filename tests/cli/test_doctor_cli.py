"""``faceverify doctor``: one line per check, ``--json``, and exit codes that fail only on
what is broken and needed (base parts, what ``--db``/``--keys`` name)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from faceverify.cli.common import EXIT_ERROR, EXIT_OK
from faceverify.doctor import CONNECT_TIMEOUT_S, STATUSES
from tests.cli.test_cli import Capture, run
from tests.test_doctor import PASSWORD, closed_port_url, keys_file

#: Run the CLI in a fresh Python in which torch and timm cannot be imported.
WITHOUT_TORCH = (
    "import sys; sys.modules['torch'] = None; sys.modules['timm'] = None; "
    "from faceverify.cli.main import main; sys.exit(main(sys.argv[1:]))"
)
#: ... and one without the postgres extra's driver.
WITHOUT_PSYCOPG = (
    "import sys; sys.modules['psycopg'] = None; "
    "from faceverify.cli.main import main; sys.exit(main(sys.argv[1:]))"
)


def line_of(out: str, name: str) -> str:
    """The report line of the check called ``name`` (status, name, detail, fix)."""
    found = [line for line in out.splitlines() if line.split(maxsplit=1)[1].startswith(f"{name} ")]
    assert len(found) == 1, out
    return found[0]


def test_json_is_one_object_with_every_field(capsys: Capture, tmp_path: Path) -> None:
    keys = keys_file(tmp_path / "service", 0o600)
    code, out, _ = run(capsys, "doctor", "--json", "--keys", str(keys), "--db", str(tmp_path / "gallery"))
    report = json.loads(out)
    assert set(report) == {"checks", "ok"}
    for check in report["checks"]:
        assert set(check) >= {"name", "status", "detail", "fix"}
        assert check["status"] in STATUSES
    by_name = {check["name"]: check for check in report["checks"]}
    assert by_name["keys file"]["status"] == "ok"
    assert by_name["gallery"]["status"] == "broken"  # --db names a folder that does not exist
    assert report["ok"] is False and code == EXIT_ERROR


def test_human_report_is_one_line_per_check_and_exit_0_when_all_needed_works(
    capsys: Capture, tmp_path: Path
) -> None:
    keys = keys_file(tmp_path / "service", 0o600)
    code, out, err = run(capsys, "doctor", "--keys", str(keys))
    _, as_json, _ = run(capsys, "doctor", "--json", "--keys", str(keys))
    assert code == EXIT_OK, out + err
    assert len(out.splitlines()) == len(json.loads(as_json)["checks"])
    assert all(line.split()[0] in STATUSES for line in out.splitlines())
    assert line_of(out, "keys file").startswith("ok ")
    assert "Traceback" not in err


def test_keys_file_open_to_others_fails_with_the_chmod_fix(capsys: Capture, tmp_path: Path) -> None:
    keys = keys_file(tmp_path / "service", 0o644)
    code, out, err = run(capsys, "doctor", "--keys", str(keys))
    assert code == EXIT_ERROR
    line = line_of(out, "keys file")
    assert line.startswith("broken ") and line.endswith(f"-> fix: chmod 600 {keys}")
    assert "keys file" in err  # the summary names what to fix


def test_keys_file_0600_passes(capsys: Capture, tmp_path: Path) -> None:
    keys = keys_file(tmp_path / "service", 0o600)
    code, out, _ = run(capsys, "doctor", "--keys", str(keys))
    assert code == EXIT_OK and "3 keys (1 admin, 2 read)" in line_of(out, "keys file")


def test_unreachable_postgres_fails_quickly_with_the_password_masked(capsys: Capture) -> None:
    url = closed_port_url()
    started = time.monotonic()
    code, out, err = run(capsys, "doctor", "--db", url)
    assert time.monotonic() - started < CONNECT_TIMEOUT_S + 10  # torch's import included
    assert code == EXIT_ERROR
    line = line_of(out, "gallery")
    assert line.startswith("broken ") and "postgresql://alice:***@127.0.0.1:" in line
    assert PASSWORD not in out and PASSWORD not in err


def test_real_postgres_passes_with_its_pgvector_version(capsys: Capture, pg_url: str) -> None:
    import psycopg

    with psycopg.connect(pg_url) as db:
        row = db.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    assert row is not None
    version = row[0]
    code, out, _ = run(capsys, "doctor", "--json", "--db", pg_url)
    gallery = next(c for c in json.loads(out)["checks"] if c["name"] == "gallery")
    assert gallery["status"] == "ok" and f"pgvector {version};" in gallery["detail"], gallery
    assert code == EXIT_OK


def test_without_torch_the_base_install_passes_and_torch_is_missing_with_its_fix(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, "doctor"], env=env, capture_output=True, text=True, timeout=120
    )
    elapsed = time.monotonic() - started
    assert done.returncode == EXIT_OK, done.stdout + done.stderr
    torch = line_of(done.stdout, "torch")
    assert torch.startswith("missing ") and torch.endswith('-> fix: pip install "faceverify[torch]"')
    assert line_of(done.stdout, "timm models").startswith("missing ")
    assert line_of(done.stdout, "model dlib_resnet_v1").startswith("ok ")
    assert line_of(done.stdout, "keys file").startswith("missing ")  # none yet: reported, not failed
    assert elapsed < 20, f"doctor took {elapsed:.1f} s without torch"
    as_json = subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, "doctor", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(as_json.stdout)
    torch_check = next(c for c in report["checks"] if c["name"] == "torch")
    assert report["ok"] is True
    assert (torch_check["status"], torch_check["fix"]) == ("missing", 'pip install "faceverify[torch]"')


def test_db_url_without_the_postgres_extra_fails_with_its_install_command(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data")}
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_PSYCOPG, "doctor", "--json", "--db", closed_port_url()],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == EXIT_ERROR, done.stderr
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["postgres drivers"]["status"] == "missing"
    assert checks["gallery"]["status"] == "broken"
    assert (
        checks["gallery"]["fix"] == checks["postgres drivers"]["fix"] == 'pip install "faceverify[postgres]"'
    )
    assert PASSWORD not in done.stdout + done.stderr
