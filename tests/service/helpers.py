"""Helpers for the service tests: images as bytes, error shapes, keys, metrics."""

from __future__ import annotations

import io
import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from faceverify.service.settings import ServiceSettings


def png(seed: int, size: tuple[int, int] = (48, 48)) -> bytes:
    """A random RGB image as PNG bytes; the same seed gives the same image."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    stream = io.BytesIO()
    Image.fromarray(pixels).save(stream, "PNG")
    return stream.getvalue()


def person_images(identity_data: Path, split: str, person: str) -> list[tuple[str, tuple[str, bytes]]]:
    """Multipart ``images`` fields for a generated person's photos."""
    files = sorted((identity_data / split / person).glob("*.png"))
    return [("images", (f.name, f.read_bytes())) for f in files]


def error_of(response: Any) -> dict[str, str]:
    """The ``error`` object of an error answer, after checking its shape."""
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert "Traceback" not in response.text
    return dict(body["error"])


def write_keys(settings: ServiceSettings, *specs: tuple[str, str | None]) -> list[str]:
    """Create keys of ``(scope, gallery)`` in the settings' keys file; returns the secrets."""
    from faceverify.service.keys import KeyStore

    store = KeyStore(settings.keys_file)
    return [store.create(scope, gallery=gallery)[0] for scope, gallery in specs]


def admin_key(settings: ServiceSettings) -> str:
    """A new admin key in the settings' keys file."""
    (key,) = write_keys(settings, ("admin", None))
    return key


def metric(text: str, name: str, **labels: str) -> float:
    """One sample's value from Prometheus text, 0 if absent."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    head = f"{name}{{{wanted}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(head + " "):
            return float(line.split()[-1])
    return 0.0


def start_uvicorn(app: Any, **config: Any) -> tuple[Any, threading.Thread, str]:
    """``app`` served by uvicorn in a thread on a free local port, once it has started:
    ``(server, thread, base URL)``; set ``server.should_exit`` and join the thread to stop."""
    import uvicorn

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    return server, thread, f"http://127.0.0.1:{listener.getsockname()[1]}"
