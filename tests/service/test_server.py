"""The service in a real uvicorn on 127.0.0.1 (a free port), called over real sockets."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from faceverify.service.settings import Batching, Limits, ServiceSettings
from tests.service.helpers import admin_key, metric, person_images, png


def test_concurrent_clients_share_forward_passes(
    serve: Callable[[ServiceSettings], str], settings: ServiceSettings
) -> None:
    base = serve(replace(settings, batching=Batching(max_wait_ms=100)))
    headers = {"X-API-Key": admin_key(settings)}
    files = {"a": ("a.png", png(1)), "b": ("b.png", png(2))}
    barrier = threading.Barrier(8)

    def call(_: int) -> httpx.Response:
        with httpx.Client(base_url=base, timeout=30, headers=headers) as client:
            barrier.wait()
            return client.post("/v1/verify", files=files)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(call, range(8)))
    assert [a.status_code for a in answers] == [200] * 8
    assert len({round(a.json()["score"], 5) for a in answers}) == 1
    text = httpx.get(f"{base}/metrics").text
    passes, images = (
        metric(text, "faceverify_batch_images_count"),
        metric(text, "faceverify_batch_images_sum"),
    )
    assert images == 16 and passes < 8, f"{passes:g} forward passes for 8 simultaneous requests"


def test_two_writers_enrolling_at_once_lose_nothing(
    serve: Callable[[ServiceSettings], str], settings: ServiceSettings, identity_data: Path
) -> None:
    base = serve(settings)
    headers = {"X-API-Key": admin_key(settings)}
    assert httpx.post(f"{base}/v1/galleries", json={"name": "staff"}, headers=headers).status_code == 201

    def writer(people: list[str]) -> list[int]:
        with httpx.Client(base_url=base, timeout=30, headers=headers) as client:
            return [
                client.post(
                    "/v1/galleries/staff/people",
                    data={"name": p},
                    files=person_images(identity_data, "gallery", p),
                ).status_code
                for p in people
            ]

    with ThreadPoolExecutor(2) as pool:
        codes = list(pool.map(writer, [["p0", "p1", "p2", "p3"], ["p4", "p5", "p6", "p7"]]))
    assert codes == [[201] * 4] * 2
    people = httpx.get(f"{base}/v1/galleries/staff/people", headers=headers).json()
    assert [(p["name"], p["faces"]) for p in people] == [(f"p{i}", 2) for i in range(8)]


def test_health_readiness_and_docs_over_the_network(
    serve: Callable[[ServiceSettings], str], settings: ServiceSettings
) -> None:
    base = serve(settings)
    assert httpx.get(f"{base}/healthz").json()["status"] == "ok"
    assert httpx.get(f"{base}/readyz").json() == {"status": "ready", "model": "convnext_atto.d2_in1k"}
    assert "swagger" in httpx.get(f"{base}/docs").text.lower()
    assert "faceverify_http_requests_total" in httpx.get(f"{base}/metrics").text


def test_slow_uploads_and_slow_answers_time_out(
    serve: Callable[[ServiceSettings], str], settings: ServiceSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = serve(replace(settings, limits=Limits(timeout_s=0.5)))
    key = admin_key(settings)
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        raw.sendall(
            b"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"X-API-Key: " + key.encode() + b"\r\nContent-Length: 1000\r\n\r\n--b\r\n"
        )  # ...and the rest never comes
        received = b""
        while not received.endswith(b"}}"):  # headers and body may come in separate segments
            chunk = raw.recv(4096)
            if not chunk:
                break
            received += chunk
        answer = received.decode()
    assert answer.startswith("HTTP/1.1 408") and '"upload_timeout"' in answer

    from faceverify.service.uploads import PhotoReader

    read_all = PhotoReader.read_all
    monkeypatch.setattr(PhotoReader, "read_all", lambda self, *a: (time.sleep(1.0), read_all(self, *a))[1])
    slow = httpx.post(
        f"{base}/v1/detect", files={"images": ("x.png", png(1))}, headers={"X-API-Key": key}, timeout=10
    )
    assert slow.status_code == 504 and slow.json()["error"]["code"] == "timeout"
