"""Where faceverify keeps its own files (XDG locations, overridable by environment), how it
writes them, and the time it stamps on what it records."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

#: A new file only, never through a link someone put in its place.
_PRIVATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)


def cache_dir() -> Path:
    """Re-creatable files (model descriptions): ``$XDG_CACHE_HOME/faceverify``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "faceverify"


def data_dir() -> Path:
    """Files worth keeping (calibrations of hub models): ``$XDG_DATA_HOME/faceverify``."""
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "faceverify"


@contextlib.contextmanager
def atomic_path(path: Path, *, private: bool = False, suffix: str = "") -> Iterator[Path]:
    """A temporary path beside ``path`` to write the whole file to, by any writer (PIL,
    numpy, torch, onnx); renamed onto ``path`` when the block ends, removed if it raises.
    Readers never see half a file, and a kill leaves the old file or the new one.

    Args:
        private: create the temporary file owner-only (0600) before anyone writes to it
            (faces, keys, vectors); the rename keeps its mode.
        suffix: end the temporary name so (e.g. ``.npz``: numpy appends one otherwise).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # unique per writer: threads and processes writing the same file never share one
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp{suffix}")
    try:
        if private:
            os.close(os.open(temporary, _PRIVATE_FLAGS, 0o600))
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def private_dir(path: Path) -> Path:
    """``path`` created (with its parents) readable by the owner only: faces and keys live
    in it. A folder that exists already keeps its mode (the owner chose it)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def write_private(path: Path, data: str | bytes) -> None:
    """Write owner-only (0600) via a new temporary file and a rename: readers never see half a
    file, and a link planted at ``path`` is replaced, never written through."""
    with atomic_path(path) as temporary, open_private(temporary) as stream:
        stream.write(data.encode("utf-8") if isinstance(data, str) else data)


def open_private(path: Path) -> BinaryIO:
    """A new file opened for writing, owner-only (0600) from its first byte, never through a
    link; an existing file at ``path`` is replaced."""
    path.unlink(missing_ok=True)
    return os.fdopen(os.open(path, _PRIVATE_FLAGS, 0o600), "wb")


def append_private(path: Path, line: str) -> None:
    """Append a line to an owner-only (0600) log, never through a link."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
    with os.fdopen(os.open(path, flags, 0o600), "a", encoding="utf-8") as stream:
        stream.write(line.rstrip("\n") + "\n")


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes, held on ``path`` (created 0600, never through a
    link). Raises OSError when the lock file cannot be opened."""
    try:
        import fcntl
    except ImportError:  # not POSIX: processes are not kept apart
        yield
        return
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


#: Hashes of files this process read, by (path, inode, size, mtime): building a model hashes
#: its weights and its cached graph (40-50 ms for dlib's); once per file version is enough.
_HASHES: dict[tuple[str, int, int, int], str] = {}
_HASHES_LOCK = threading.Lock()
_HASHES_KEPT = 256


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks (weights files are large); a file
    unchanged since this process last hashed it (same inode, size and mtime) is not read again."""
    stat = path.stat()
    key = (str(Path(path).resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    with _HASHES_LOCK:
        known = _HASHES.get(key)
    if known is not None:
        return known
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    hashed = digest.hexdigest()
    with _HASHES_LOCK:
        if len(_HASHES) >= _HASHES_KEPT:
            _HASHES.clear()
        _HASHES[key] = hashed
    return hashed


def timestamp() -> str:
    """Local time with its UTC offset (``2026-05-09T07:35:25+0200``), as every artifact records it."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
