"""A dynamic batcher: concurrent requests share one forward pass of the network.

Request threads hand their preprocessed images to :meth:`Batcher.run` and wait. One
worker thread takes the oldest waiting images and every waiting companion of the same
shape (up to ``max_batch`` images); while requests have lately been arriving together it
also waits at most ``max_wait_ms`` for more. It runs them through the network as one
batch and hands each request its rows. Under load the queue fills while the network is
busy, so batches form without waiting, and N clients arriving together cost about one
forward pass, not N; a lone client is never made to wait. The queue is bounded in images:
when it is full a request is refused at once with :class:`~faceverify.service.errors.OverloadedError` (503 and
``Retry-After``) rather than waiting behind an ever-growing queue, which keeps both
latency and memory bounded under any load.

:class:`BatchedEmbedder` puts the batcher behind the library's
:class:`~faceverify.runtime.base.Embedder` interface, so the library's own
``embed_images``, ``compute_embedding`` and ``Gallery`` methods (detection and alignment
included) run unchanged and batch across requests without knowing it, whichever
runtime (PyTorch, ONNX Runtime) computes the numbers.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

import numpy as np

from faceverify.errors import OverloadedError, RequestTimeoutError
from faceverify.runtime.base import Embedder, WrappedEmbedder
from faceverify.service.settings import Batching

#: After two callers were seen together, the batcher waits for companions this long.
CONCURRENCY_MEMORY_S = 1.0


@dataclass(eq=False)  # jobs are told apart by identity, never by their tensors
class _Job:
    inputs: np.ndarray
    future: Future[np.ndarray] = field(default_factory=Future)


class Batcher:
    """Runs ``forward`` on batches gathered from concurrent callers, on one thread.

    Args:
        forward: ``[N, ...]`` input to ``[N, ...]`` output (an embedder's ``embed``).
        config: batch size, wait and queue bound; ``enabled=False`` runs each call alone.
        wait_timeout_s: how long a caller waits for its result before giving up (504).
        on_batch: called with the size of every batch run (for metrics).
    """

    def __init__(
        self,
        forward: Callable[[np.ndarray], np.ndarray],
        config: Batching,
        *,
        wait_timeout_s: float = 30.0,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.forward = forward
        self.config = config
        self.wait_timeout_s = wait_timeout_s
        self.on_batch = on_batch
        self._jobs: deque[_Job] = deque()
        self._queued = 0  # images waiting, the bounded quantity
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._concurrent_until = 0.0  # until when waiting for companions is worth it

    @property
    def queued(self) -> int:
        """Images waiting for the network now."""
        return self._queued

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name="faceverify-batcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Finish the batches already queued, then end the worker."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def submit(self, inputs: np.ndarray) -> Future[np.ndarray]:
        """Queue ``inputs`` (``[n, ...]``); refuse at once if the queue is full."""
        job = _Job(inputs)
        with self._cond:
            if self._stopping or not self.alive:
                raise OverloadedError("the service is shutting down; try again shortly")
            if self._queued and self._queued + len(inputs) > self.config.max_queue:
                raise OverloadedError(
                    f"{self._queued} images are waiting for the model (limit {self.config.max_queue}); "
                    "retry after the interval in Retry-After"
                )
            self._jobs.append(job)
            self._queued += len(inputs)
            self._cond.notify_all()
        return job.future

    def run(self, inputs: np.ndarray) -> np.ndarray:
        """:meth:`submit` and wait for the result (errors of the network are re-raised)."""
        future = self.submit(inputs)
        try:
            return future.result(timeout=self.wait_timeout_s)
        except FutureTimeout:
            future.cancel()
            raise RequestTimeoutError(f"the model did not answer within {self.wait_timeout_s:g} s") from None

    def _work(self) -> None:
        while True:
            jobs = self._gather()
            if not jobs:
                return
            self._run(jobs)

    def _gather(self) -> list[_Job]:
        """The next batch: the oldest job, the companions already waiting, and, while
        callers have lately been concurrent, those that arrive within the wait (a lone
        client never waits for companions that will not come)."""
        limit = self.config.max_batch if self.config.enabled else 1
        with self._cond:
            while not self._jobs:
                if self._stopping:
                    return []
                self._cond.wait()
            first = self._jobs.popleft()
            jobs, size = [first], len(first.inputs)
            patient = time.monotonic() < self._concurrent_until
            deadline = time.monotonic() + (self.config.max_wait_ms / 1000.0 if patient else 0.0)
            shape = first.inputs.shape[1:]
            while self.config.enabled and size < limit:
                fitting = next(
                    (j for j in self._jobs if j.inputs.shape[1:] == shape and size + len(j.inputs) <= limit),
                    None,
                )
                if fitting is not None:
                    self._jobs.remove(fitting)
                    jobs.append(fitting)
                    size += len(fitting.inputs)
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stopping:
                    break
                self._cond.wait(remaining)
            self._queued -= size
            if len(jobs) > 1 or self._jobs:
                self._concurrent_until = time.monotonic() + CONCURRENCY_MEMORY_S
        return jobs

    def _run(self, jobs: list[_Job]) -> None:
        live = [j for j in jobs if j.future.set_running_or_notify_cancel()]
        if not live:
            return
        try:
            batch = live[0].inputs if len(live) == 1 else np.concatenate([j.inputs for j in live])
            output = self.forward(batch)
        except BaseException as exc:  # every waiting caller gets the network's error
            for job in live:
                job.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        if self.on_batch is not None:
            self.on_batch(len(batch))
        start = 0
        for job in live:
            stop = start + len(job.inputs)
            job.future.set_result(output[start:stop])
            start = stop


class BatchedEmbedder(WrappedEmbedder):
    """The embedder as the library sees it, with every batch going through a batcher.

    It reports the wrapped embedder's name, contract, weights identity and threshold, so
    galleries record and check the same model, and prepares images the same way.
    """

    def __init__(self, inner: Embedder, batcher: Batcher) -> None:
        super().__init__(inner)
        self.batcher = batcher

    def embed(self, batch: np.ndarray) -> np.ndarray:
        return self.batcher.run(batch)
