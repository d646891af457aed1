"""API keys: created by ``faceverify keys`` (or by ``faceverify serve`` on its first start),
stored hashed, checked in constant time.

A key is ``fvk_<id>_<secret>`` with 256 random bits of secret; only its SHA-256 is
written to the keys file (mode 0600, created without following links), so the file
cannot be used to call the API. The key itself is shown once, when it is created. Each
key has a scope, and each scope includes the ones before it:

- ``read``: verify, identify, detect, embed, list galleries and people;
- ``enrol``: also enrol people and add photos of them (never remove anything);
- ``write``: also remove people;
- ``admin``: also create and delete galleries, and manage keys over the API.

A key may be limited to one gallery and may carry an expiry time. The service re-reads
the file when it changes, so keys can be created and revoked while it runs. There are no
default keys, and no open mode unless the operator asks for one (``serve --insecure``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from faceverify.errors import ConfigError
from faceverify.paths import append_private, file_lock, private_dir, write_private

log = logging.getLogger(__name__)

#: From least to most: each scope may do what the ones before it may.
SCOPES = ("read", "enrol", "write", "admin")
KEYS_FORMAT = "faceverify-keys/1"
KEY_PREFIX = "fvk_"
#: Anything longer than this is not one of our keys; it is refused without hashing.
MAX_KEY_LENGTH = 128
FIRST_KEY_LABEL = "created by faceverify serve on first start"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@dataclass(frozen=True)
class ApiKey:
    """What is known about a key, without its secret.

    Attributes:
        id: a short public name for the key (part of the key itself).
        scope: ``read``, ``enrol``, ``write`` or ``admin`` (each includes the ones before).
        gallery: the only gallery the key may use, or None for all of them.
        created: when it was made (ISO 8601).
        label: a note for people (who holds it).
        expires: when it stops working (ISO 8601, UTC), or None for never.
    """

    id: str
    scope: str
    gallery: str | None
    created: str
    label: str = ""
    expires: str | None = None

    def grants(self, scope: str) -> bool:
        """Whether this key's scope includes ``scope``."""
        return SCOPES.index(self.scope) >= SCOPES.index(check_scope(scope))

    def allows(self, scope: str, gallery: str | None) -> bool:
        """Whether this key may do something of ``scope`` on ``gallery`` (None: no gallery)."""
        return self.grants(scope) and (self.gallery is None or gallery is None or gallery == self.gallery)

    def expired(self, now: dt.datetime | None = None) -> bool:
        return self.expires is not None and (now or _now()) >= dt.datetime.fromisoformat(self.expires)


def check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise ConfigError(f"scope {scope!r} is unknown; valid: {', '.join(SCOPES)}")
    return scope


_DURATION = re.compile(r"(\d+)([hdw])")
_UNITS = {"h": dt.timedelta(hours=1), "d": dt.timedelta(days=1), "w": dt.timedelta(weeks=1)}


def parse_expiry(text: str, now: dt.datetime | None = None) -> str:
    """An expiry as ISO 8601 UTC, from a duration (``12h``, ``30d``, ``8w``) or a date or time
    (``2027-01-31``, ``2027-01-31T18:00+01:00``; without a zone: UTC). Must lie ahead."""
    now = now or _now()
    match = _DURATION.fullmatch(text.strip())
    try:
        if match:
            when = now + int(match.group(1)) * _UNITS[match.group(2)]
        else:
            when = dt.datetime.fromisoformat(text.strip())
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.timezone.utc)
    except (ValueError, OverflowError):
        raise ConfigError(
            f"expiry {text!r} is not valid; give a duration (12h, 30d, 8w) or a date (2027-01-31)"
        ) from None
    if when <= now:
        raise ConfigError(f"expiry {text!r} is in the past")
    return when.astimezone(dt.timezone.utc).isoformat(timespec="seconds")


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

    def authenticate(self, presented: str | None) -> ApiKey | None:
        """The key matching ``presented`` if it has not expired, or None. Every stored hash
        is compared, in constant time, so the time taken tells nothing about which key
        came close. Without a keys file there are no keys: nothing is accepted."""
        self._refresh()
        if not presented or len(presented) > MAX_KEY_LENGTH:
            return None
        digest = _digest(presented)
        found: ApiKey | None = None
        for stored, key in self._entries:
            if hmac.compare_digest(stored, digest):
                found = key
        return None if found is None or found.expired() else found

    def records(self) -> list[ApiKey]:
        self._refresh()
        return [key for _, key in self._entries]

    def create(
        self,
        scope: str,
        *,
        gallery: str | None = None,
        label: str = "",
        expires: str | None = None,
        actor: str = "library",
    ) -> tuple[str, ApiKey]:
        """Make a key; returns the key itself (show it once, it is not stored) and its record.

        Args:
            scope: ``read``, ``enrol``, ``write`` or ``admin``.
            gallery: limit the key to this gallery.
            label: who holds it.
            expires: a duration (``30d``) or date (``2027-01-31``), see :func:`parse_expiry`.
            actor: who makes it, for the keys' audit log (:meth:`log`).
        """
        with self._editing() as entries:
            made = _new_key(scope, gallery, label, expires)
            entries.append((_digest(made[0]), made[1]))
            self._log("create", made[1], actor)
        return made

    def create_first(self) -> str | None:
        """An admin key if the keys file does not exist yet (the service's first start):
        the key, to be shown once; None when a keys file is already there."""
        with self._locked():
            if self.path.exists():
                return None
            secret, record = _new_key("admin", None, FIRST_KEY_LABEL, None)
            self._save([(_digest(secret), record)])
            self._log("create", record, "serve")
        return secret

    def revoke(self, key_id: str, *, actor: str = "library") -> ApiKey:
        """Delete a key by its id; requests with it fail from the next one on."""
        with self._editing() as entries:
            for position, (_, key) in enumerate(entries):
                if key.id == key_id:
                    del entries[position]
                    self._log("revoke", key, actor)
                    return key
        known = ", ".join(key.id for _, key in entries) or "none"
        raise ConfigError(f"no API key with id {key_id!r} in {self.path}; ids: {known}")

    @property
    def log_path(self) -> Path:
        return self.path.with_name(self.path.stem + "-audit.jsonl")

    def log(self) -> list[dict[str, Any]]:
        """Every key change, oldest first: time, actor, action, and the key's id, scope and
        gallery (never the key)."""
        try:
            lines = self.log_path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    def _log(self, action: str, key: ApiKey, actor: str) -> None:
        """Append one line (under the keys file's lock; owner-only, never through a link)."""
        entry: dict[str, Any] = {"time": _now().isoformat(timespec="seconds"), "actor": actor}
        entry.update(action=action, key=key.id, scope=key.scope, gallery=key.gallery)
        append_private(self.log_path, json.dumps(entry))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """An exclusive lock on the keys file (several CLIs or a starting server at once)."""
        private_dir(self.path.parent)
        lock = self.path.with_name(self.path.name + ".lock")
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(file_lock(lock))
            except OSError as exc:  # e.g. a link planted in its place
                raise ConfigError(f"cannot lock {lock}: {exc.strerror or exc}; remove it if a link") from None
            yield

    @contextlib.contextmanager
    def _editing(self) -> Iterator[list[tuple[str, ApiKey]]]:
        """Read, change and write the file under the lock."""
        with self._locked():
            entries = self._read()
            yield entries
            self._save(entries)

    def _save(self, entries: list[tuple[str, ApiKey]]) -> None:
        document = {
            "format": KEYS_FORMAT,
            "keys": [{"sha256": digest, **asdict(key)} for digest, key in entries],
        }
        write_private(self.path, json.dumps(document, indent=2) + "\n")
        self._seen = None

    def load(self) -> None:
        """Read the file now, raising :class:`ConfigError` if it is unreadable (at start-up)."""
        self._read()
        self._refresh()

    def _refresh(self) -> None:
        try:
            info = self.path.stat()
        except FileNotFoundError:  # deleted: no key works any more (never an open API)
            self._entries, self._seen = [], None
            return
        signature = (info.st_mtime_ns, info.st_size, info.st_ino)
        if signature == self._seen:
            return
        with self._lock:
            if signature == self._seen:  # another thread read it meanwhile
                return
            try:
                entries = self._read()
            except ConfigError as exc:  # e.g. hand-edited badly: keep the keys we had
                log.warning("%s; still using the %d keys read before", exc, len(self._entries))
                entries = self._entries
            # the keys first, then the signature: no thread sees the new file with the old keys
            self._entries = entries
            self._seen = signature

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


def _new_key(scope: str, gallery: str | None, label: str, expires: str | None) -> tuple[str, ApiKey]:
    from faceverify.gallery.catalog import check_gallery_name  # numpy: not at the CLI's start

    check_scope(scope)
    if gallery is not None:
        check_gallery_name(gallery)
    key_id = secrets.token_hex(4)
    secret = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    record = ApiKey(
        id=key_id,
        scope=scope,
        gallery=gallery,
        created=_now().isoformat(timespec="seconds"),
        label=label,
        expires=parse_expiry(expires) if expires else None,
    )
    return secret, record
