"""What an operator chooses for the service: model, storage, limits and batching.

:class:`ServiceSettings` is a frozen dataclass; it travels to uvicorn's worker
processes as JSON in an environment variable (:data:`SETTINGS_ENV`), so every worker
builds the same application. Nothing here imports FastAPI.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceverify.errors import ConfigError
from faceverify.paths import data_dir

if TYPE_CHECKING:
    from faceverify.photos import FaceOptions

SETTINGS_ENV = "FACEVERIFY_SERVICE_SETTINGS"
MB = 1 << 20


def default_galleries() -> str:
    """Where the service keeps its galleries without ``--db``."""
    return str(data_dir() / "galleries")


def default_keys_file() -> str:
    """Where API keys (their hashes) live without ``--keys``."""
    return str(data_dir() / "service" / "keys.json")


@dataclass(frozen=True)
class Limits:
    """What one request may carry; each is checked before any image is decoded.

    Attributes:
        max_body_bytes: the whole request body (413 above it).
        max_image_bytes: one uploaded file (413 above it).
        max_images: files in one request (413 above it).
        max_pixels: width x height of one image, read from its header (422 above it).
        timeout_s: the whole request, upload included (408 while uploading, 504 after).
    """

    max_body_bytes: int = 32 * MB
    max_image_bytes: int = 10 * MB
    max_images: int = 8
    max_pixels: int = 40_000_000
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        for item in fields(self):
            if getattr(self, item.name) <= 0:
                raise ConfigError(f"limit {item.name}={getattr(self, item.name)!r} must be positive")


@dataclass(frozen=True)
class Batching:
    """The dynamic batcher in front of the network.

    Attributes:
        enabled: False runs every request's images as their own forward pass (still one
            pass at a time, through the same bounded queue): the baseline for benchmarks.
        max_batch: images in one forward pass.
        max_wait_ms: how long the first waiting image waits for companions.
        max_queue: images waiting at most; beyond it requests get 503 with Retry-After.
    """

    enabled: bool = True
    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 256

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_queue < 1 or self.max_wait_ms < 0:
            raise ConfigError(
                f"batching needs max_batch >= 1, max_queue >= 1 and max_wait_ms >= 0; got {self}"
            )


@dataclass(frozen=True)
class ServiceSettings:
    """Everything :func:`faceverify.service.app.create_app` needs.

    Attributes:
        db: the galleries: a folder (one embedded gallery per sub-folder) or a
            ``postgresql://`` URL (one schema per gallery).
        keys_file: the API keys file written by ``faceverify keys``. While it does not
            exist the API needs no key (allowed on localhost only, see
            :func:`check_exposure`); once it exists every ``/v1`` request needs one.
        model, weights, device, input_size, crop_pct, threshold, model_args, backend: as
            for :func:`faceverify.build_model`.
        detect, detector, upsample, min_face: how faces are found in photos, as in
            :class:`faceverify.photos.FaceOptions` (``detect`` None: when the model needs
            aligned faces, e.g. ``dlib_resnet_v1``; False: uploads are face crops).
        threads: CPU threads for the network (torch intra-op); None keeps torch's default.
            One per worker process suits several workers, or a machine shared with others.
        match: how a gallery compares a probe with a person's faces (``best``/``centroid``).
        cors_origins: origins allowed to call the API from a browser; empty: CORS off.
    """

    db: str = field(default_factory=default_galleries)
    keys_file: str = field(default_factory=default_keys_file)
    model: str | None = None
    weights: str | None = None
    device: str = "auto"
    input_size: int | None = None
    crop_pct: float | None = None
    threshold: float | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    backend: str = "torch"
    detect: bool | None = None
    detector: str = "hog"
    upsample: int = 1
    min_face: float = 0.0
    threads: int | None = None
    match: str = "best"
    limits: Limits = field(default_factory=Limits)
    batching: Batching = field(default_factory=Batching)
    cors_origins: tuple[str, ...] = ()

    def face_options(self) -> FaceOptions:
        from faceverify.photos import FaceOptions

        return FaceOptions(
            detect=self.detect, detector=self.detector, upsample=self.upsample, min_size=self.min_face
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServiceSettings:
        raw = json.loads(text)
        raw["limits"] = Limits(**raw["limits"])
        raw["batching"] = Batching(**raw["batching"])
        raw["cors_origins"] = tuple(raw["cors_origins"])
        return cls(**raw)

    @classmethod
    def from_environment(cls) -> ServiceSettings:
        text = os.environ.get(SETTINGS_ENV)
        if not text:
            raise ConfigError(f"{SETTINGS_ENV} is not set; start the service with `faceverify serve`")
        return cls.from_json(text)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_exposure(host: str, keys_file: str | Path, *, insecure: bool) -> None:
    """Refuse to serve an open API (no keys file) beyond this machine unless told to."""
    if is_loopback(host) or insecure or Path(keys_file).expanduser().exists():
        return
    raise ConfigError(
        f"refusing to listen on {host} without API keys: anyone who reaches it could read and "
        "change the galleries. Create a key with `faceverify keys create --scope write` (and "
        "pass the same --keys), or pass --insecure if the network is trusted"
    )
