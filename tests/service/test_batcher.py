"""The dynamic batcher: concurrent callers share forward passes; a full queue refuses at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from faceverify.errors import OverloadedError
from faceverify.service.batcher import Batcher
from faceverify.service.settings import Batching, ServiceSettings
from tests.service.helpers import error_of, png


class GatedNetwork:
    """Doubles its input; records batch sizes; can hold the first pass until released."""

    def __init__(self, hold_first: bool = False) -> None:
        self.sizes: list[int] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        if not hold_first:
            self.release.set()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.sizes.append(len(x))
        self.entered.set()
        assert self.release.wait(10)
        return x * 2


@pytest.fixture
def make_batcher() -> Iterator[Callable[..., Batcher]]:
    started: list[Batcher] = []

    def make(network: GatedNetwork, **config: object) -> Batcher:
        batcher = Batcher(network, replace(Batching(), **config), wait_timeout_s=10)
        batcher.start()
        started.append(batcher)
        return batcher

    yield make
    for batcher in started:
        batcher.stop()


def _rows(count: int, width: int = 3) -> list[torch.Tensor]:
    return [torch.full((1, width), float(i)) for i in range(count)]


def test_callers_waiting_together_share_one_forward_pass(make_batcher: Callable[..., Batcher]) -> None:
    network = GatedNetwork(hold_first=True)
    batcher = make_batcher(network, max_batch=32, max_wait_ms=200)
    first = batcher.submit(torch.zeros(1, 3))
    assert network.entered.wait(5)  # the network is busy with the first caller...
    futures = [batcher.submit(row) for row in _rows(8)]  # ...while eight more arrive
    assert batcher.queued == 8
    network.release.set()
    assert first.result(5).tolist() == [[0.0, 0.0, 0.0]]
    for i, future in enumerate(futures):  # each caller gets its own rows back
        assert future.result(5).tolist() == [[2.0 * i] * 3]
    assert network.sizes == [1, 8]
    assert batcher.queued == 0


def test_many_threads_cost_few_passes(make_batcher: Callable[..., Batcher]) -> None:
    network = GatedNetwork()
    batcher = make_batcher(network, max_batch=64, max_wait_ms=50)
    barrier = threading.Barrier(16)

    def call(row: torch.Tensor) -> torch.Tensor:
        barrier.wait()
        return batcher.run(row)

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, _rows(16)))
    assert [r[0, 0].item() for r in results] == [2.0 * i for i in range(16)]
    assert sum(network.sizes) == 16 and len(network.sizes) <= 6


def test_a_lone_caller_does_not_wait_for_companions(make_batcher: Callable[..., Batcher]) -> None:
    batcher = make_batcher(GatedNetwork(), max_wait_ms=5000)
    started = time.monotonic()
    for row in _rows(3):
        batcher.run(row)
    assert time.monotonic() - started < 2.5


def test_batches_respect_the_size_limit_and_input_shapes(make_batcher: Callable[..., Batcher]) -> None:
    network = GatedNetwork(hold_first=True)
    batcher = make_batcher(network, max_batch=4, max_wait_ms=0)
    batcher.submit(torch.zeros(1, 3))
    assert network.entered.wait(5)
    jobs = [
        batcher.submit(torch.zeros(3, 3)),
        batcher.submit(torch.zeros(2, 5)),
        batcher.submit(torch.zeros(1, 3)),
    ]
    network.release.set()
    for job in jobs:
        job.result(5)
    assert network.sizes == [1, 4, 2]  # 3+1 rows of width 3 together; width 5 alone


def test_without_batching_every_call_is_its_own_pass(make_batcher: Callable[..., Batcher]) -> None:
    network = GatedNetwork(hold_first=True)
    batcher = make_batcher(network, enabled=False)
    batcher.submit(torch.zeros(1, 3))
    assert network.entered.wait(5)
    jobs = [batcher.submit(row) for row in _rows(3)]
    network.release.set()
    for job in jobs:
        job.result(5)
    assert network.sizes == [1, 1, 1, 1]


def test_a_full_queue_refuses_at_once_and_recovers(make_batcher: Callable[..., Batcher]) -> None:
    network = GatedNetwork(hold_first=True)
    batcher = make_batcher(network, max_queue=4, max_wait_ms=0)
    batcher.submit(torch.zeros(1, 3))
    assert network.entered.wait(5)
    waiting = [batcher.submit(torch.zeros(2, 3)), batcher.submit(torch.zeros(2, 3))]
    with pytest.raises(OverloadedError, match="4 images are waiting") as refused:
        batcher.submit(torch.zeros(1, 3))
    assert refused.value.headers == {"Retry-After": "1"} and refused.value.status == 503
    network.release.set()
    for job in waiting:
        job.result(5)
    assert batcher.run(torch.ones(1, 3)).tolist() == [[2.0, 2.0, 2.0]]


def test_a_network_error_reaches_every_caller_of_the_batch(make_batcher: Callable[..., Batcher]) -> None:
    def broken(x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("shapes do not fit")

    batcher = Batcher(broken, Batching(max_wait_ms=0), wait_timeout_s=5)
    batcher.start()
    try:
        with pytest.raises(RuntimeError, match="shapes do not fit"):
            batcher.run(torch.zeros(1, 3))
        assert batcher.alive  # the worker carries on
    finally:
        batcher.stop()


def test_overload_is_a_503_with_retry_after_over_http(
    settings: ServiceSettings, open_client: Callable[..., TestClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    client = open_client(settings, batching=Batching(max_queue=1))
    batcher = client.app.state.service.batcher  # type: ignore[attr-defined]
    gate, network = GatedNetwork(hold_first=True), batcher.forward
    monkeypatch.setattr(batcher, "forward", lambda x: (gate(x), network(x))[1])
    one = {"images": ("x.png", png(1))}
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(client.post, "/v1/embed", files=one)
        assert gate.entered.wait(10)  # the network is busy...
        waiting = pool.submit(client.post, "/v1/embed", files=one)
        while batcher.queued < 1:  # ...and the queue is full
            time.sleep(0.01)
        refused = client.post("/v1/verify", files={"a": ("a.png", png(1)), "b": ("b.png", png(2))})
        gate.release.set()
        assert running.result(10).status_code == waiting.result(10).status_code == 200
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert error_of(refused)["code"] == "overloaded"
    assert client.post("/v1/embed", files=one).status_code == 200


def test_memory_does_not_grow_under_repeated_load(client: TestClient, tmp_path: Path) -> None:
    import resource

    files = {"a": ("a.png", png(1, (64, 64))), "b": ("b.png", png(2, (64, 64)))}
    for _ in range(10):  # warm up allocator pools and caches
        client.post("/v1/verify", files=files)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(60):
        assert client.post("/v1/verify", files=files).status_code == 200
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 50_000, f"peak memory grew by {grown_kib} KiB over 60 requests"
    assert client.app.state.service.batcher.queued == 0  # type: ignore[attr-defined]
