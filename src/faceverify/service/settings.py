"""What an operator chooses for the service: model, storage, limits and batching.

:class:`ServiceSettings` is a frozen dataclass; it travels to uvicorn's worker
processes as JSON in an environment variable (:data:`SETTINGS_ENV`), so every worker
builds the same application. Nothing here imports FastAPI.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

from faceverify.errors import ConfigError
from faceverify.models.spec import ModelSpec
from faceverify.paths import data_dir
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
    """What one request may carry, and what all requests may decode at once.

    Each is checked before any image is decoded: sizes before an upload is read, pixels
    from its header. The pixel defaults fit face photos. 25 MP per image passes a 12 MP
    phone photo (4032x3024) and a 24 MP camera photo (6000x4000, 6016x4016) with room to
    spare, and refuses a 48 MP full-sensor photo, which shows a face no better once the
    model has shrunk it to its input size. 100 MP per request passes eight phone photos
    (97.5 MP) or four camera photos. 1 GiB of decoded images (8 bytes a pixel while
    decoding, see :func:`faceverify.decode.decoding_bytes`) holds one such request whole,
    and about eleven phone photos of several requests at once.

    Attributes:
        max_body_bytes: the whole request body (413 above it).
        max_image_bytes: one uploaded file (413 above it).
        max_images: files in one request (413 above it).
        max_pixels: width x height of one image, read from its header (422 above it).
        max_request_pixels: width x height summed over the images of one request (413).
        max_decoded_bytes: memory for decoded images, all requests of a worker process
            together; an image holds its share until it is freed. A request that does not
            fit now gets 503 with Retry-After; one that could never fit gets 413.
        timeout_s: the whole request, upload included (408 while uploading, 504 after).
    """

    max_body_bytes: int = 32 * MB
    max_image_bytes: int = 10 * MB
    max_images: int = 8
    max_pixels: int = 25_000_000
    max_request_pixels: int = 100_000_000
    max_decoded_bytes: int = 1024 * MB
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        from faceverify.decode import BYTES_PER_PIXEL

        for item in fields(self):
            if getattr(self, item.name) <= 0:
                raise ConfigError(f"limit {item.name}={getattr(self, item.name)!r} must be positive")
        if self.max_pixels > self.max_request_pixels:
            raise ConfigError(
                f"limit max_pixels={self.max_pixels:,} is above max_request_pixels="
                f"{self.max_request_pixels:,}: no request could carry such an image; raise "
                "max_request_pixels (--max-request-megapixels) or lower max_pixels (--max-megapixels)"
            )
        needed = self.max_request_pixels * BYTES_PER_PIXEL
        if needed > self.max_decoded_bytes:
            raise ConfigError(
                f"limit max_decoded_bytes={self.max_decoded_bytes:,} cannot decode one request of "
                f"max_request_pixels={self.max_request_pixels:,} ({BYTES_PER_PIXEL} bytes a pixel: "
                f"{needed:,}); raise max_decoded_bytes (--max-decoded-mb) to at least {needed / MB:,.0f} MB "
                "or lower max_request_pixels (--max-request-megapixels)"
            )


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


#: A camera's name: what ``/v1/cameras/{name}`` takes (the rule of gallery names).
CAMERA_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,47}")


@dataclass(frozen=True)
class Camera:
    """A video source the service watches for subscribers of ``/v1/cameras/{name}/events``.

    Attributes:
        name: how clients name it (1-48 lower-case letters, digits, ``_`` or ``-``).
        gallery: the gallery whose people it names; a key needs ``read`` on it to subscribe.
        source: a file, a camera (``/dev/video0`` or ``0``) or a stream URL; never shown to
            clients (a URL may hold a password).
    """

    name: str
    gallery: str
    source: str

    def __post_init__(self) -> None:
        from faceverify.errors import GalleryError
        from faceverify.gallery.catalog import check_gallery_name

        if CAMERA_NAME.fullmatch(self.name) is None:
            raise ConfigError(
                f"camera name {self.name[:60]!r} is not valid; use 1-48 lower-case letters, digits, "
                "'_' or '-', starting with a letter or digit"
            )
        try:
            check_gallery_name(self.gallery)
        except GalleryError as exc:
            raise ConfigError(f"camera {self.name!r}: {exc}") from None
        if not self.source:
            raise ConfigError(f"camera {self.name!r} has no source; give NAME=GALLERY:SOURCE")

    @classmethod
    def parse(cls, text: str) -> Camera:
        """``NAME=GALLERY:SOURCE`` (``door=staff:rtsp://cam/stream``, ``desk=staff:0``): the
        first ``:`` ends the gallery, whose names hold none, so the source may hold any."""
        name, equals, rest = text.partition("=")
        gallery, colon, source = rest.partition(":")
        if not (equals and colon) or source.startswith("//"):  # "door=rtsp://...": no gallery
            raise ConfigError(
                f"camera {text[:80]!r} is not NAME=GALLERY:SOURCE (e.g. door=staff:rtsp://10.0.0.5/stream)"
            )
        return cls(name.strip(), gallery.strip(), source.strip())


@dataclass(frozen=True)
class VideoSettings:
    """Videos uploaded for a background watch, and cameras watched for live subscribers.

    The defaults keep one watch at a time busy (a watch uses a core or more; the service's
    other requests need the rest) and bound everything a client can make the service hold.

    Attributes:
        max_upload_bytes: one uploaded video (413 above it; the request body may exceed it
            by 1 MB for the form's other parts).
        upload_timeout_s: the whole upload request (a video takes longer to send than a
            photo: 512 MB at 10 Mbit/s is about 7 minutes).
        workers: videos watched at once (threads).
        max_pending: videos waiting for a worker, uploads in progress included; more get
            503 with Retry-After before their body is read.
        keep_s: how long a finished job (its events name people) is kept after it ends.
        max_jobs: finished jobs kept at most; the oldest go first.
        max_events: events kept per job (the first ones; the rest are counted). With
            ``max_jobs`` it bounds what finished jobs hold: 100,000 events of about 1 KB.
        folder: where uploads wait for their worker (a private sub-folder is made in it);
            None: the system's temporary folder.
        cameras: the cameras clients may subscribe to.
        max_subscribers: event streams per camera at once (more get 503).
        subscriber_queue: events waiting for one slow subscriber; beyond, the oldest are
            dropped and the subscriber is told how many.
        keepalive_s: seconds between keep-alive comments on an idle event stream.
    """

    max_upload_bytes: int = 512 * MB
    upload_timeout_s: float = 900.0
    workers: int = 1
    max_pending: int = 4
    keep_s: float = 3600.0
    max_jobs: int = 50
    max_events: int = 2000
    folder: str | None = None
    cameras: tuple[Camera, ...] = ()
    max_subscribers: int = 16
    subscriber_queue: int = 256
    keepalive_s: float = 15.0

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if isinstance(value, (int, float)) and value <= 0:
                raise ConfigError(f"video setting {item.name}={value!r} must be positive")
        names = [camera.name for camera in self.cameras]
        if len(set(names)) != len(names):
            raise ConfigError(f"camera names must differ; got {', '.join(names)}")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> VideoSettings:
        cameras = tuple(Camera(**camera) for camera in raw.get("cameras", ()))
        return cls(**{**raw, "cameras": cameras})


@dataclass(frozen=True)
class ServiceSettings(ModelSpec):
    """Everything :func:`faceverify.service.app.create_app` needs: the model to serve (the
    :class:`~faceverify.models.spec.ModelSpec` fields, ``model``, ``weights``, ``device``,
    ``input_size``, ``crop_pct``, ``threshold``, ``model_args``, ``backend``...) and how.

    The model's fields are the spec's own, inherited rather than held in a field of their
    own, so that the settings stay one flat record: keyword arguments and
    ``dataclasses.replace`` take ``weights=...`` as before, and so does the JSON in
    :data:`SETTINGS_ENV`. :attr:`spec` is the model part alone, what the service builds.

    Attributes:
        db: the galleries: a folder (one embedded gallery per sub-folder) or a
            ``postgresql://`` URL (one schema per gallery).
        keys_file: the API keys file written by ``faceverify keys`` (and by ``faceverify
            serve`` on its first start). Every ``/v1`` request needs a key from it; without
            the file, no request is accepted.
        insecure: no keys at all: anyone who reaches the service may read and change the
            galleries. On a loopback ``host`` the service then accepts only loopback
            ``Host`` names and refuses foreign ``Origin`` headers (other web sites and DNS
            rebinding); beyond loopback it trusts the whole network.
        host: the address the server listens on (for the ``insecure`` checks above).
        faces: how faces are found in photos (:class:`faceverify.photos.FaceOptions`:
            ``detect`` None detects when the model needs aligned faces, e.g.
            ``dlib_resnet_v1``; False takes uploads as face crops). Its policy for several
            faces stays unset: each route keeps its job's default.
        threads: CPU threads for the network (torch intra-op); None keeps torch's default.
            One per worker process suits several workers, or a machine shared with others.
        match: how a gallery compares a probe with a person's faces (``best``/``centroid``).
        cors_origins: origins allowed to call the API from a browser; empty: CORS off.
        library_roots: server folders inside which clients may have photo libraries scanned
            (``POST /v1/libraries/{gallery}/scan``); empty: no scanning over HTTP. A folder
            is checked after ``..`` and links are resolved, so neither leads out of a root.
        video: uploaded videos and cameras (:class:`VideoSettings`).
    """

    db: str = field(default_factory=default_galleries)
    keys_file: str = field(default_factory=default_keys_file)
    insecure: bool = False
    host: str = "127.0.0.1"
    faces: FaceOptions = field(default_factory=FaceOptions)
    threads: int | None = None
    match: str = "best"
    limits: Limits = field(default_factory=Limits)
    batching: Batching = field(default_factory=Batching)
    cors_origins: tuple[str, ...] = ()
    library_roots: tuple[str, ...] = ()
    video: VideoSettings = field(default_factory=VideoSettings)

    _KIND: ClassVar[str] = "service setting"

    @property
    def spec(self) -> ModelSpec:
        """The model to serve, as the plain spec the CLI builds from the same options."""
        return ModelSpec(**self.to_dict())

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServiceSettings:
        raw = json.loads(text)
        raw["faces"] = FaceOptions(**raw["faces"])
        raw["limits"] = Limits(**raw["limits"])
        raw["batching"] = Batching(**raw["batching"])
        raw["cors_origins"] = tuple(raw["cors_origins"])
        raw["library_roots"] = tuple(raw["library_roots"])
        raw["video"] = VideoSettings.from_dict(raw["video"])
        return cls.from_dict(raw)

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


def exposure_warning(host: str, *, insecure: bool) -> str | None:
    """What an operator must be told about running ``insecure`` on ``host`` (None: nothing)."""
    if not insecure:
        return None
    if is_loopback(host):
        return (
            "--insecure: no API keys; anyone with a shell on this machine can read and change the "
            "galleries (web pages and other Host names are refused)"
        )
    return (
        f"--insecure on {host}: NO API KEYS. Anyone on the network can read, enrol and delete "
        "faces in every gallery. Use keys (drop --insecure) unless this network is yours alone"
    )
