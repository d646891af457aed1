"""Video over HTTP: uploads watched in the background, and a camera's server-sent events.

One service (dlib's network) runs in uvicorn for the module, with Obama and Biden enrolled
from the shared photos and a camera that plays a file; the clip (the two of them and a
stranger, Kit Harington, walking past) is made once from the photos.
"""

from __future__ import annotations

import asyncio
import json
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from faceverify.errors import ConfigError
from faceverify.service.cameras import RETRY_MS, CameraFeed, Message, Subscriber
from faceverify.service.settings import Camera, ServiceSettings, VideoSettings
from tests.conftest import SHARED_FACES
from tests.service.helpers import error_of, start_uvicorn, write_keys

pytest.importorskip("av", reason="video needs PyAV: pip install 'faceverify[video]'")
pytest.importorskip("trackers", reason="video needs trackers: pip install 'faceverify[video]'")

#: The service's body limit, and a video's above it (far above the clip's size).
MAX_BODY, MAX_VIDEO = 1 << 20, 3 << 20
WAIT_S = 90.0
FRAMES = 44  # the clip's


@dataclass
class Service:
    """The module's service: its URL, keys by role, the clip, the uploads' parent folder."""

    url: str
    keys: dict[str, str]
    clip: bytes
    uploads: Path

    def client(self, role: str = "read") -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": self.keys[role]}, timeout=30)

    def upload(
        self, role: str = "read", data: bytes | None = None, name: str = "clip.mp4", **params: Any
    ) -> Any:
        with self.client(role) as client:
            files = {"video": (name, self.clip if data is None else data, "video/mp4")}
            return client.post("/v1/galleries/people/videos", files=files, params=params)

    def wait(self, job: str, *statuses: str) -> dict[str, Any]:
        """The job once its status is one of ``statuses`` (done or failed by default)."""
        deadline = time.monotonic() + WAIT_S
        with self.client() as client:
            while time.monotonic() < deadline:
                answer = client.get(f"/v1/videos/{job}")
                assert answer.status_code == 200, answer.text
                if answer.json()["status"] in (statuses or ("done", "failed")):
                    return dict(answer.json())
                time.sleep(0.05)
        raise AssertionError(f"job {job} did not reach {statuses or 'its end'} in {WAIT_S} s")

    def files(self) -> list[Path]:
        return [path for path in self.uploads.rglob("*") if path.is_file()]


def _portrait(photo: Path) -> Any:
    import numpy as np

    from faceverify.decode import load_image
    from faceverify.photos import FaceOptions, find_faces
    from faceverify.video.scenes import portrait

    pixels = np.asarray(load_image(photo))
    return portrait(pixels, find_faces(pixels, FaceOptions())[0].box)


def _clip(path: Path) -> Path:
    """4.4 s at 320x240, 10 fps: Obama, Biden, then the stranger cross the frame one after
    the other, in the same direction (faces that cross each other are the tracker's test)."""
    from faceverify.video.scenes import Walker, render, write_clip

    people = [
        SHARED_FACES / "probes" / "obama1.jpg",
        SHARED_FACES / "gallery" / "biden" / "biden2.jpg",
        SHARED_FACES / "gallery" / "kit_harington" / "john1.jpeg",
    ]
    walkers = [
        Walker(_portrait(photo), start, start + 2.0, (-0.1, 0.5), (1.1, 0.5), 0.6)
        for photo, start in zip(people, (0.0, 1.2, 2.4))
    ]
    assert write_clip(path, render(walkers, size=(320, 240), fps=10), fps=10) == FRAMES
    return path


@pytest.fixture(scope="module")
def service(dlib_settings: ServiceSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:

    from faceverify.service.app import create_app

    if not SHARED_FACES.is_dir():
        pytest.skip(f"real face photos not found at {SHARED_FACES}")
    root = tmp_path_factory.mktemp("videos")
    clip = _clip(root / "clip.mp4")
    video = VideoSettings(
        max_upload_bytes=MAX_VIDEO,
        max_pending=1,
        folder=str(root / "uploads"),
        cameras=(Camera("door", "people", str(clip)),),
    )
    settings = replace(
        dlib_settings, video=video, limits=replace(dlib_settings.limits, max_body_bytes=MAX_BODY)
    )
    roles = ("admin", "read", "reader", "other", "other_admin")
    scopes = [("admin", None), ("read", "people"), ("read", "people"), ("read", "other"), ("admin", "other")]
    keys = dict(zip(roles, write_keys(settings, *scopes)))
    server, thread, url = start_uvicorn(create_app(settings), timeout_graceful_shutdown=5)
    built = Service(url, keys, clip.read_bytes(), root / "uploads")
    with built.client("admin") as admin:
        assert admin.post("/v1/galleries", json={"name": "people"}).status_code == 201
        for person in ("obama", "biden"):
            photos = sorted((SHARED_FACES / "gallery" / person).iterdir())
            files = [("images", (p.name, p.read_bytes())) for p in photos]
            enrolled = admin.post("/v1/galleries/people/people", data={"name": person}, files=files)
            assert enrolled.status_code == 201, enrolled.text
    yield built
    server.should_exit = True
    thread.join(30)
    assert not thread.is_alive(), "the service did not stop"
    assert not built.files() and not list(built.uploads.iterdir()), "the service left its uploads behind"


# ---- uploads ------------------------------------------------------------------------------


def test_an_uploaded_clip_names_each_person_once_and_the_stranger_unknown(service: Service) -> None:
    answer = service.upload(detect_every=1)
    assert answer.status_code == 202, answer.text
    created = answer.json()
    assert created["status"] == "queued" and answer.headers["location"] == created["links"]["job"]
    job = service.wait(created["id"])
    assert job["status"] == "done" and job["error"] is None, job
    ended = [event for event in job["events"] if event["event"] == "ended"]
    known = sorted(event["name"] for event in ended if event["status"] == "known")
    assert known == ["biden", "obama"], ended
    assert [event["status"] for event in ended].count("unknown") == 1, ended
    assert [event["seq"] for event in job["events"]] == list(range(1, job["events_total"] + 1))
    summary = job["summary"]
    assert summary["people"] == ["biden", "obama"] and summary["frames_processed"] == FRAMES
    assert summary["source"] == "video ('clip.mp4')" and str(service.uploads) not in json.dumps(job)
    assert job["progress"]["frames"] == FRAMES and job["video"]["width"] == 320 and job["expires"]
    assert service.files() == []  # the upload is deleted once the job is done
    with service.client() as client:  # paging: the events after the first two
        page = client.get(f"/v1/videos/{created['id']}", params={"after": 2, "limit": 1}).json()
    assert [event["seq"] for event in page["events"]] == [3] and page["next_after"] == 3


def test_a_job_is_read_by_the_key_that_uploaded_it_or_an_admin_only(service: Service) -> None:
    job = service.upload(detect_every=4).json()["id"]
    service.wait(job)
    for role, status in (("read", 200), ("admin", 200), ("reader", 404), ("other_admin", 404)):
        with service.client(role) as client:
            answer = client.get(f"/v1/videos/{job}")
        assert answer.status_code == status, (role, answer.text)
        if status == 404:
            assert error_of(answer)["code"] == "unknown_job"
    refused = service.upload("other")  # a key of another gallery uploads nothing to this one
    assert refused.status_code == 403 and error_of(refused)["code"] == "forbidden"


def test_what_is_not_a_video_is_refused_at_once_and_leaves_nothing(service: Service) -> None:
    playlist = b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\n/etc/hostname\n#EXT-X-ENDLIST\n"
    larger_than_a_photo_request = bytes(MAX_BODY + 1000)  # a video may be: refused as no video
    for data, name in ((larger_than_a_photo_request, "notes.mp4"), (playlist, "list.m3u8")):
        answer = service.upload(data=data, name=name)
        assert answer.status_code == 422, answer.text
        error = error_of(answer)
        assert error["code"] == "invalid_video" and name in error["message"], error
        assert str(service.uploads) not in error["message"]
    with service.client() as client:
        empty = client.post("/v1/galleries/people/videos", files={"other": ("x.mp4", b"x")})
    assert empty.status_code == 422 and error_of(empty)["code"] == "missing_video"
    too_large = service.upload(data=bytes(MAX_VIDEO + 1000))
    assert too_large.status_code == 413 and error_of(too_large)["code"] == "video_too_large"
    assert service.files() == []


def test_a_video_whose_frames_cannot_be_decoded_ends_its_job_failed(service: Service, tmp_path: Path) -> None:
    import numpy as np

    from faceverify.video.scenes import render, write_clip

    clip = tmp_path / "blank.mp4"
    write_clip(clip, render([], size=(64, 48), fps=10, duration=10.0), fps=10)
    data = clip.read_bytes()  # the container stays whole; every frame's bytes are noise
    start, end = data.index(b"mdat") + 4, data.index(b"moov") - 4
    noise = np.random.default_rng(0).integers(0, 256, end - start, dtype=np.uint8).tobytes()
    answer = service.upload(data=data[:start] + noise + data[end:], name="noise.mp4")
    assert answer.status_code == 202, answer.text
    job = service.wait(answer.json()["id"])
    assert job["status"] == "failed" and job["error"].startswith("video ('noise.mp4'): "), job
    assert "decoded" in job["error"] and job["summary"]["error"] == job["error"]
    assert service.files() == []


def test_an_unknown_job_is_404(service: Service) -> None:
    with service.client() as client:
        for answer in (client.get("/v1/videos/nosuchjob"), client.delete("/v1/videos/nosuchjob")):
            assert answer.status_code == 404 and error_of(answer)["code"] == "unknown_job"


def test_the_queue_is_bounded_and_a_deleted_job_takes_its_upload_along(service: Service) -> None:
    accepted: list[str] = []
    for _ in range(8):  # one job runs, one waits (max_pending=1): the next is refused
        answer = service.upload()
        if answer.status_code != 202:
            break
        accepted.append(answer.json()["id"])
    assert answer.status_code == 503 and error_of(answer)["code"] == "overloaded", answer.text
    assert int(answer.headers["retry-after"]) > 0 and len(accepted) >= 2
    uploads = service.files()
    assert {path.stem for path in uploads} <= set(accepted) and len(uploads) >= 1
    assert all(stat.S_IMODE(path.stat().st_mode) == 0o600 for path in uploads)
    assert stat.S_IMODE(uploads[0].parent.stat().st_mode) == 0o700
    with service.client() as client:
        for job in reversed(accepted):  # the waiting one, then the running one
            assert client.delete(f"/v1/videos/{job}").status_code == 204
            assert client.get(f"/v1/videos/{job}").status_code == 404
    assert service.files() == []
    after = service.upload(detect_every=8)  # the worker has let the cancelled job go
    assert after.status_code == 202 and service.wait(after.json()["id"])["status"] == "done"


# ---- cameras ------------------------------------------------------------------------------


def _events(url: str, key: str) -> list[tuple[str, dict[str, Any]]]:
    """A camera's stream read to its end (``end``), as ``(event, data)``."""
    events: list[tuple[str, dict[str, Any]]] = []
    kind = ""
    deadline = time.monotonic() + WAIT_S
    with httpx.stream("GET", url, headers={"X-API-Key": key}, timeout=30) as answer:
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/event-stream")
        for line in answer.iter_lines():
            assert time.monotonic() < deadline, "the stream did not end"
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((kind, json.loads(line.removeprefix("data: "))))
                if kind == "end":
                    break
    return events


def test_a_camera_streams_its_events_to_keys_of_its_gallery(service: Service) -> None:
    with service.client("other") as other:
        assert other.get("/v1/cameras").json() == []
        refused = other.get("/v1/cameras/door/events")
        assert refused.status_code == 403 and error_of(refused)["code"] == "forbidden"
        missing = other.get("/v1/cameras/nowhere/events")
        assert missing.status_code == 404 and error_of(missing)["code"] == "unknown_camera"
    with service.client() as client:
        assert client.get("/v1/cameras").json() == [
            {"name": "door", "gallery": "people", "running": False, "subscribers": 0}
        ]
    events = _events(f"{service.url}/v1/cameras/door/events", service.keys["read"])
    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "end" and events[-1][1]["reason"] == "the source ended", events[-1]
    named = {data["name"] for kind, data in events if kind == "ended" and data["status"] == "known"}
    assert named == {"obama", "biden"}, events


def test_a_slow_subscriber_loses_the_oldest_events_and_is_told_how_many() -> None:
    async def read() -> list[str]:
        feed = CameraFeed(Camera("door", "people", "x.mp4"), VideoSettings(keepalive_s=0.01), _no_gallery)
        subscriber = Subscriber(3, asyncio.get_running_loop())
        stream = feed.stream(subscriber)
        chunks = [await anext(stream), await anext(stream)]  # nothing happens: a keep-alive
        for n in range(5):
            subscriber.offer(Message("appeared", {"track": n}, n + 1))
        subscriber.offer(Message("end", {"reason": "the source ended"}), final=True)
        subscriber.offer(Message("appeared", {"track": 9}, 10))  # after the end: never sent
        return chunks + [chunk async for chunk in stream]

    chunks = asyncio.run(read())
    assert chunks[:2] == [f"retry: {RETRY_MS}\n\n", ": keep-alive\n\n"]
    assert chunks[2:] == [
        'event: dropped\ndata: {"dropped": 3}\n\n',
        'id: 4\nevent: appeared\ndata: {"track": 3}\n\n',
        'id: 5\nevent: appeared\ndata: {"track": 4}\n\n',
        'event: end\ndata: {"reason": "the source ended"}\n\n',
    ]


def _no_gallery(name: str) -> Any:
    raise AssertionError("the stream alone opens no gallery")


# ---- settings -------------------------------------------------------------------------------


def test_a_camera_is_given_as_name_gallery_and_source() -> None:
    camera = Camera.parse("door=staff:rtsp://user:pw@10.0.0.5:554/stream")
    assert camera == Camera("door", "staff", "rtsp://user:pw@10.0.0.5:554/stream")
    for bad in ("door", "door=rtsp://x", "door=staff", "Door=staff:0", "door=:0", "door=staff:"):
        with pytest.raises(ConfigError):
            Camera.parse(bad)
    settings = ServiceSettings(video=VideoSettings(cameras=(camera,)))
    assert ServiceSettings.from_json(settings.to_json()) == settings
