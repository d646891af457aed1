"""Prometheus metrics: requests, latency, faces processed, errors by kind, batching.

Each application has its own registry (several apps in one process, as in tests, do not
mix their counts). With ``--workers N`` every worker process counts its own requests.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Methods counted by name; anything else a client sends is counted as "other" (a label
#: per made-up method would grow the series without bound).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """The service's counters and histograms, in their own registry."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "faceverify_http_requests",
            "HTTP requests answered, by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "faceverify_http_request_duration_seconds",
            "Time from request to the end of the answer",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.faces = Counter(
            "faceverify_faces_processed", "Faces handled, by endpoint", ["endpoint"], registry=self.registry
        )
        self.errors = Counter(
            "faceverify_errors", "Error answers, by error code", ["code"], registry=self.registry
        )
        self.batch_size = Histogram(
            "faceverify_batch_images",
            "Images per forward pass of the network",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.queue = Gauge(
            "faceverify_queue_images", "Images waiting for the network", registry=self.registry
        )

    def count_error(self, code: str) -> None:
        self.errors.labels(code).inc()

    def count_faces(self, endpoint: str, count: int) -> None:
        if count:
            self.faces.labels(endpoint).inc(count)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class Instrument:
    """Counts every HTTP request and times it, labelled by route template (bounded labels)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def watched_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        finally:
            route: Any = scope.get("route")
            template = str(getattr(route, "path", None) or "other")
            method = scope["method"] if scope["method"] in METHODS else "other"
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(template).observe(time.perf_counter() - started)
