"""API keys: created by ``faceverify keys``, stored hashed, checked in constant time.

A key is ``fvk_<id>_<secret>`` with 256 random bits of secret; only its SHA-256 is
written to the keys file (mode 0600), so the file cannot be used to call the API. The
key itself is shown once, when it is created. Each key has a scope (``read``: verify,
identify, list; ``write``: also enrol, remove, create and delete galleries) and may be
limited to one gallery. The service re-reads the file when it changes, so keys can be
created and revoked while it runs. There are no default keys: while no keys file
exists the API is open, which the service allows on localhost only.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from faceverify.errors import ConfigError
from faceverify.gallery.catalog import check_gallery_name

log = logging.getLogger(__name__)

SCOPES = ("read", "write")
KEYS_FORMAT = "faceverify-keys/1"
KEY_PREFIX = "fvk_"
#: Anything longer than this is not one of our keys; it is refused without hashing.
MAX_KEY_LENGTH = 128


@dataclass(frozen=True)
class ApiKey:
    """What is known about a key, without its secret.

    Attributes:
        id: a short public name for the key (part of the key itself).
        scope: ``read`` or ``write`` (``write`` includes ``read``).
        gallery: the only gallery the key may use, or None for all of them.
        created: when it was made (ISO 8601).
        label: a note for people (who holds it).
    """

    id: str
    scope: str
    gallery: str | None
    created: str
    label: str = ""

    def allows(self, scope: str, gallery: str | None) -> bool:
        """Whether this key may do something of ``scope`` on ``gallery`` (None: no gallery)."""
        if scope == "write" and self.scope != "write":
            return False
        return self.gallery is None or gallery is None or gallery == self.gallery


def check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise ConfigError(f"scope {scope!r} is unknown; valid: {', '.join(SCOPES)}")
    return scope


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class KeyStore:
    """The keys file, read again whenever it changes on disk.

    Args:
        path: the JSON file (created by :meth:`create`).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._entries: list[tuple[str, ApiKey]] = []
        self._required = False

    @property
    def required(self) -> bool:
        """Whether requests need a key: once a keys file has been seen, always (even if
        it is emptied or deleted later, the service never falls back to open access)."""
        self._refresh()
        return self._required

    def authenticate(self, presented: str | None) -> ApiKey | None:
        """The key matching ``presented``, or None. Every stored hash is compared, in
        constant time, so the time taken tells nothing about which key came close."""
        self._refresh()
        if not presented or len(presented) > MAX_KEY_LENGTH:
            return None
        digest = _digest(presented)
        found: ApiKey | None = None
        for stored, key in self._entries:
            if hmac.compare_digest(stored, digest):
                found = key
        return found

    def keys(self) -> list[ApiKey]:
        self._refresh()
        return [key for _, key in self._entries]

    def create(self, scope: str, *, gallery: str | None = None, label: str = "") -> tuple[str, ApiKey]:
        """Make a key; returns the key itself (show it once, it is not stored) and its record."""
        check_scope(scope)
        if gallery is not None:
            check_gallery_name(gallery)
        key_id = secrets.token_hex(4)
        secret = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        record = ApiKey(
            id=key_id, scope=scope, gallery=gallery, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), label=label
        )
        with self._editing() as entries:
            entries.append((_digest(secret), record))
        return secret, record

    def revoke(self, key_id: str) -> ApiKey:
        """Delete a key by its id; requests with it fail from the next one on."""
        with self._editing() as entries:
            for position, (_, key) in enumerate(entries):
                if key.id == key_id:
                    del entries[position]
                    return key
        known = ", ".join(key.id for _, key in entries) or "none"
        raise ConfigError(f"no API key with id {key_id!r} in {self.path}; ids: {known}")

    @contextlib.contextmanager
    def _editing(self) -> Iterator[list[tuple[str, ApiKey]]]:
        """Read, change and write the file under an exclusive lock (several CLIs at once)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _file_lock(self.path.with_name(self.path.name + ".lock")):
            entries = self._read()
            yield entries
            document = {
                "format": KEYS_FORMAT,
                "keys": [{"sha256": digest, **asdict(key)} for digest, key in entries],
            }
            _write_private(self.path, json.dumps(document, indent=2) + "\n")
        self._seen = None

    def load(self) -> None:
        """Read the file now, raising :class:`ConfigError` if it is unreadable (at start-up)."""
        self._read()
        self._refresh()

    def _refresh(self) -> None:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            if self._required:  # the file went away: keep the keys we had, stay closed
                return
            self._entries, self._seen = [], None
            return
        signature = (info.st_mtime_ns, info.st_size, info.st_ino)
        if signature == self._seen:
            return
        with self._lock:
            self._seen, self._required = signature, True
            try:
                self._entries = self._read()
            except ConfigError as exc:  # e.g. hand-edited badly: keep the keys we had
                log.warning("%s; still using the %d keys read before", exc, len(self._entries))

    def _read(self) -> list[tuple[str, ApiKey]]:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            raise ConfigError(f"API keys file {self.path} cannot be read: {exc}") from exc
        if not isinstance(document, dict) or document.get("format") != KEYS_FORMAT:
            raise ConfigError(f"{self.path} is not a faceverify keys file ({KEYS_FORMAT})")
        try:
            return [
                (item["sha256"], ApiKey(**{k: v for k, v in item.items() if k != "sha256"}))
                for item in document["keys"]
            ]
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"API keys file {self.path} has a malformed entry ({exc})") from exc


def _write_private(path: Path, text: str) -> None:
    """Write readable by the owner only, via a temporary file and a rename."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        stream.write(text)
    temporary.replace(path)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # not POSIX: concurrent `faceverify keys` runs are not guarded
        yield
        return
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
