"""The service on a small real network with random weights saved to a file."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the service needs its extra: pip install 'faceverify[serve]'")

from fastapi.testclient import TestClient

from faceverify.service.app import create_app
from faceverify.service.settings import ServiceSettings

#: ConvNeXt-Atto (random weights, from the root conftest) at 32 pixels: a real network,
#: milliseconds per face, and the generated people of ``identity_data`` stay apart.
INPUT_SIZE = 32


@pytest.fixture
def settings(tmp_path: Path, atto_file: Path) -> ServiceSettings:
    return ServiceSettings(
        db=str(tmp_path / "galleries"),
        keys_file=str(tmp_path / "keys.json"),
        weights=str(atto_file),
        device="cpu",
        input_size=INPUT_SIZE,
    )


@pytest.fixture
def open_client() -> Iterator[Callable[..., TestClient]]:
    """Start an app with given settings; every client is shut down at the end of the test."""
    clients: list[TestClient] = []

    def start(settings: ServiceSettings, **changes: Any) -> TestClient:
        client = TestClient(create_app(replace(settings, **changes)))
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(settings: ServiceSettings, open_client: Callable[..., TestClient]) -> TestClient:
    return open_client(settings)
