"""`faceverify watch` and `faceverify strangers`: events on stdout or in a file, the
annotated video, snapshots, strangers' shots kept privately and erased on time."""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from faceverify.cli.main import main
from tests.video.conftest import FPS, Clip


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_watch_writes_events_video_snapshots_and_strangers(
    tmp_path: Path, walk: Clip, gallery_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events, video, shots, strangers = (
        tmp_path / n for n in ("events.jsonl", "out.mp4", "shots", "strangers")
    )
    code = main([
        "watch", str(walk.path), "--db", str(gallery_path), "--speed", "0", "--detect-every", "2",
        "--events", str(events), "--out", str(video), "--snapshots", str(shots),
        "--enroll-unknown", str(strangers), "--summary", str(tmp_path / "summary.json"),
    ])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0 and out == "", "events went to the file: stdout stays empty"
    assert "4 tracks: 3 known (biden, obama, rose_leslie), 1 unknown" in err
    records = [json.loads(line) for line in events.read_text().splitlines()]
    ended = [r for r in records if r["event"] == "ended"]
    assert sorted(str(r["name"]) for r in ended) == ["None", "biden", "obama", "rose_leslie"]
    assert all(Path(r["snapshot"]).is_file() and _mode(Path(r["snapshot"])) == 0o600 for r in ended)
    assert _mode(events) == 0o600 and _mode(shots) == 0o700 and _mode(video) == 0o600
    (kept,) = sorted(strangers.glob("stranger-*.jpg"))
    assert _mode(strangers) == 0o700 and _mode(kept) == 0o600
    assert json.loads(kept.with_suffix(".json").read_text())["track"] == next(
        r["track"] for r in ended if r["name"] is None
    )
    summary = json.loads((tmp_path / "summary.json").read_text())
    import av

    with av.open(str(video)) as container:
        assert sum(1 for _ in container.decode(video=0)) == summary["frames_processed"] == round(10.5 * FPS)
    # stdout carries the events when no file is named
    assert (
        main(
            ["watch", str(walk.path), "--db", str(gallery_path), "--speed", "0", "--detect-every", "3", "-q"]
        )
        == 0
    )
    out, err = capsys.readouterr()
    assert len([json.loads(line) for line in out.splitlines()]) >= 8 and err == ""


def test_strangers_shots_expire_and_can_be_erased(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "strangers"
    folder.mkdir(mode=0o700)
    for name, age_days in (("old", 40), ("recent", 1), ("other", 2)):
        for suffix in (".jpg", ".json"):
            path = folder / f"stranger-{name}{suffix}"
            path.write_bytes(b"x")
            stamp = time.time() - age_days * 86400
            os.utime(path, (stamp, stamp))
    assert main(["strangers", "expire", str(folder)]) == 0
    assert "erased 1" in capsys.readouterr().out
    assert sorted(p.name for p in folder.iterdir()) == [
        "stranger-other.jpg", "stranger-other.json", "stranger-recent.jpg", "stranger-recent.json",
    ]  # fmt: skip
    assert main(["strangers", "erase", str(folder), "stranger-recent.jpg"]) == 0
    assert main(["strangers", "list", str(folder)]) == 0
    assert capsys.readouterr().out.strip().endswith("stranger-other.jpg")
    assert main(["strangers", "erase", str(folder), "../evil.jpg"]) == 1
    assert "not a stranger's shot" in capsys.readouterr().err
    assert main(["strangers", "erase", str(folder), "--all", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"erased": 1} and list(folder.iterdir()) == []


def test_watch_errors_are_one_line_and_exit_non_zero(
    tmp_path: Path, gallery_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("no frames here")
    assert main(["watch", str(text), "--db", str(gallery_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot be opened as a video" in err
    assert main(["watch", str(text), "--option", "nokey"]) == 1
    assert "KEY=VALUE" in capsys.readouterr().err


def test_the_library_call_yields_the_same_events(walk: Clip, gallery_path: Path, dlib_model: Any) -> None:
    import faceverify as fv

    options = fv.WatchOptions(speed=0, detect_every=3)
    with (
        fv.open_gallery(gallery_path, model=dlib_model) as gallery,
        fv.watch(walk.path, gallery, options=options) as run,
    ):
        first = next(iter(run))
    assert first.kind == "appeared" and first.record["name"] == "obama"


def test_ctrl_c_on_a_live_source_ends_the_tracks_and_finishes_the_outputs(
    tmp_path: Path, walk: Clip, gallery_path: Path
) -> None:
    """A file read as live (`--live`) plays like a camera and starts again when it ends: an
    endless source. The first Ctrl-C ends the watch as if the video had ended."""
    import signal
    import subprocess
    import sys

    events, video = tmp_path / "events.jsonl", tmp_path / "out.mp4"
    command = [
        sys.executable, "-m", "faceverify", "watch", str(walk.path), "--live", "--db", str(gallery_path),
        "--events", str(events), "--out", str(video),
    ]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and '"appeared"' not in (
            events.read_text() if events.exists() else ""
        ):
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0, err
    records = [json.loads(line) for line in events.read_text().splitlines()]
    appeared = {r["track"] for r in records if r["event"] == "appeared"}
    assert appeared and appeared <= {r["track"] for r in records if r["event"] == "ended"}
    assert "tracks:" in err
    import av

    with av.open(str(video)) as container:
        assert sum(1 for _ in container.decode(video=0)) > 5


def test_a_stream_lost_for_good_ends_with_the_summary_then_one_error_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.video.test_source import _free_port, _sender

    port = _free_port()
    sender = _sender(port, 1, 20, 20)
    try:
        code = main(["watch", f"tcp://127.0.0.1:{port}", "--no-gallery", "--retries", "0"])
    finally:
        sender.wait(timeout=30)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert "0 tracks" in err[-2] and "frames read 20" in err[-2]
    assert "reconnection attempts failed" in err[-1] and err[-1].startswith("faceverify: error:")
