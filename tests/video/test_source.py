"""One reader for files, cameras and streams: formats, bad input, live drops and reconnection."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")

from faceverify.errors import ConfigError, VideoError
from faceverify.video.source import VideoSource, mask_password, open_video

SENDER = Path(__file__).with_name("stream_sender.py")


def _frames(count: int, size: tuple[int, int] = (96, 64)) -> Iterator[np.ndarray]:
    for index in range(count):
        pixels = np.zeros((size[1], size[0], 3), np.uint8)
        pixels[:, : (index * 7) % size[0]] = (200, 50, 50)
        yield pixels


@pytest.mark.parametrize(
    ("suffix", "codec"),
    [
        (".mp4", "libx264"),
        (".mkv", "libx264"),
        (".mov", "libx264"),
        (".webm", "libvpx-vp9"),
        (".avi", "mpeg4"),
    ],
)
def test_files_of_each_container_are_read_whole_with_their_times(
    tmp_path: Path, suffix: str, codec: str
) -> None:
    from faceverify.video.scenes import write_clip

    path = tmp_path / f"clip{suffix}"
    write_clip(path, _frames(20), fps=10, codec=codec)
    with open_video(path) as source:
        assert not source.live and source.fps == pytest.approx(10) and source.size == (96, 64)
        frames = list(source)
    assert [f.index for f in frames] == list(range(20))
    times = [f.time for f in frames]
    assert times == sorted(times) and times[-1] == pytest.approx(1.9, abs=0.11)
    assert frames[5].pixels().shape == (64, 96, 3) and frames[5].pixels()[0, :30, 0].mean() > 150


def test_what_is_not_a_video_is_refused_clearly(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("these are not frames\n" * 100)
    with pytest.raises(VideoError, match="cannot be opened as a video"):
        open_video(text)
    with pytest.raises(VideoError, match="no such file"):
        open_video(tmp_path / "missing.mp4")
    with pytest.raises(ConfigError, match="unknown scheme 'ftp'"):
        open_video("ftp://example.org/a.mp4")


def test_an_absent_camera_is_named_with_the_cameras_there_are() -> None:
    missing = next(f"/dev/video{n}" for n in range(60, 99) if not Path(f"/dev/video{n}").exists())
    with pytest.raises(VideoError, match="no such camera; cameras on this machine"):
        open_video(missing)
    with pytest.raises(VideoError, match="no such camera"):
        open_video(int(missing.removeprefix("/dev/video")))


def test_a_damaged_file_gives_the_frames_it_can(tmp_path: Path) -> None:
    """Bytes overwritten mid-stream: the frames around them still come and nothing hangs
    (MPEG-TS resynchronises; FFmpeg drops what it cannot parse). Damage where an MP4 keeps
    its index is a clear error; a file cut short gives the frames before the cut."""
    from faceverify.video.scenes import write_clip

    def damage(path: Path, at: float) -> Path:
        data = bytearray(path.read_bytes())
        start = int(len(data) * at)
        data[start : start + 3000] = np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
        damaged = path.with_name("damaged" + path.suffix)
        damaged.write_bytes(bytes(data))
        return damaged

    stream = tmp_path / "clip.ts"
    write_clip(stream, _frames(60), fps=10, codec="mpeg4")
    with open_video(damage(stream, 0.5)) as source:
        times = [f.time for f in source]
    assert 40 <= len(times) < 60 and times == sorted(times)
    indexed = tmp_path / "clip.mp4"
    write_clip(indexed, _frames(60), fps=10)
    with pytest.raises(VideoError, match="cannot be opened as a video"):
        open_video(damage(indexed, 0.5))
    truncated = tmp_path / "truncated.ts"
    truncated.write_bytes(stream.read_bytes()[: len(stream.read_bytes()) // 3])
    with open_video(truncated) as source:
        assert 5 <= len(list(source)) < 60


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _sender(port: int, sessions: int, frames: int, fps: float) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, str(SENDER), str(port), str(sessions), str(frames), str(fps)])
    time.sleep(0.4)  # listening
    return process


def test_a_live_stream_drops_old_frames_when_the_consumer_is_behind() -> None:
    port = _free_port()
    sender = _sender(port, 1, 150, 0)  # as fast as it can encode
    try:
        with open_video(f"tcp://127.0.0.1:{port}", retries=0) as source:
            assert source.live
            seen, indices = 0, []
            for frame in source:
                seen += 1
                indices.append(frame.index)
                time.sleep(0.02)  # a slow consumer
                assert source._queue.qsize() <= 4, "the queue stays bounded"
    except VideoError:
        pass  # the stream ended and retries=0: expected after the frames
    finally:
        sender.wait(timeout=30)
    stats = source.stats
    assert stats.dropped > 0 and stats.read == 150
    assert seen + stats.dropped == stats.read
    assert indices == sorted(indices), "the newest frames are kept, in order"


def test_a_live_stream_that_breaks_is_reconnected_then_given_up_on() -> None:
    port = _free_port()
    sender = _sender(port, 2, 30, 30)
    frames = []
    started = time.monotonic()
    try:
        with (
            pytest.raises(VideoError, match="reconnection attempts failed"),
            open_video(f"tcp://127.0.0.1:{port}", retries=2) as source,
        ):
            frames.extend(source)
    finally:
        sender.wait(timeout=30)
    assert source.stats.reconnects == 1
    assert len(frames) + source.stats.dropped == 60
    times = [f.time for f in frames]
    assert times == sorted(times), "times keep rising across the reconnection"
    assert time.monotonic() - started < 20, "back-off is bounded: no hang"


def test_a_stream_that_never_connects_fails_after_its_retries() -> None:
    port = _free_port()  # nobody listens
    started = time.monotonic()
    with pytest.raises(VideoError, match="3 attempts failed"):
        VideoSource(f"tcp://127.0.0.1:{port}", retries=2)
    assert time.monotonic() - started < 10


def test_passwords_never_reach_messages() -> None:
    assert mask_password("rtsp://admin:hunter2@10.0.0.5/stream") == "rtsp://admin:***@10.0.0.5/stream"
    port = _free_port()
    with pytest.raises(VideoError) as caught:
        VideoSource(f"tcp://user:hunter2@127.0.0.1:{port}", retries=0)
    assert "hunter2" not in str(caught.value)


def test_a_file_whose_every_frame_is_damaged_is_an_error_not_an_empty_video(tmp_path: Path) -> None:
    from faceverify.video.scenes import write_clip

    path = tmp_path / "clip.mp4"
    write_clip(path, _frames(20), fps=10)
    data = bytearray(path.read_bytes())
    start, end = data.find(b"mdat") + 4, data.find(b"moov") - 4  # the frames, not the index
    data[start:end] = np.random.default_rng(1).integers(0, 256, end - start, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    with (
        open_video(path) as source,
        pytest.raises(VideoError, match="no frame of its h264 video could be decoded"),
    ):
        list(source)
