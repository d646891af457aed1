"""Where faceverify keeps its own files (XDG locations, overridable by environment), how it
writes them, and the time it stamps on what it records."""

from __future__ import annotations

import os
import time
from pathlib import Path


def cache_dir() -> Path:
    """Re-creatable files (model descriptions): ``$XDG_CACHE_HOME/faceverify``."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "faceverify"


def data_dir() -> Path:
    """Files worth keeping (calibrations of hub models): ``$XDG_DATA_HOME/faceverify``."""
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "faceverify"


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def timestamp() -> str:
    """Local time with its UTC offset (``2026-05-09T07:35:25+0200``), as every artifact records it."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
