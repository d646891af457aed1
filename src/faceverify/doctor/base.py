"""What a doctor check is (:class:`Check`, :class:`Report`), and the small helpers the checks share."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from faceverify.extras import PLOTS, POSTGRES, TORCH

Status = Literal["ok", "warn", "missing", "broken"]
STATUSES: tuple[Status, ...] = ("ok", "warn", "missing", "broken")

#: Seconds to wait for a PostgreSQL server (libpq's own minimum is 2).
CONNECT_TIMEOUT_S = 3
#: Seconds ``nvidia-smi -L`` may take; a hung driver must not hang the doctor.
GPU_PROBE_TIMEOUT_S = 3

TORCH_FIX, PLOTS_FIX, POSTGRES_FIX = TORCH.install, PLOTS.install, POSTGRES.install
#: The wheels that all install the module ``onnxruntime``: two at once shadow each other.
ORT_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-directml", "onnxruntime-openvino")
POSTGRES_PREFIXES = ("postgresql://", "postgres://")  # as faceverify.gallery.gallery.open_store


@dataclass(frozen=True)
class Check:
    """One line of the report.

    Attributes:
        name: what was checked (``onnxruntime``, ``keys file``...).
        status: ``ok``, ``warn``, ``missing`` or ``broken``.
        detail: what was found: versions, paths, sizes, the reason it fails.
        fix: the command (or action) that fixes a ``warn``/``missing``/``broken``; empty if ok.
        required: a ``missing``/``broken`` status fails the command (base parts, what was asked).
    """

    name: str
    status: Status
    detail: str
    fix: str = ""
    required: bool = False

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not valid; valid: {', '.join(STATUSES)}")

    @property
    def failed(self) -> bool:
        """Whether this check makes ``faceverify doctor`` exit non-zero."""
        return self.required and self.status in ("missing", "broken")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "detail": self.detail,
            "fix": self.fix,
            "required": self.required,
        }


@dataclass(frozen=True)
class Report:
    """Every check, in the order they ran; ``ok`` when none of them failed."""

    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(check.failed for check in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"checks": [check.to_dict() for check in self.checks], "ok": self.ok}


# ----------------------------------------------------------------------------------------
# small helpers


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (a ``None`` entry in
    ``sys.modules``, the way to block an import, counts as not installed)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package fails, or a module without a spec
        return False


def dist_version(distribution: str) -> str | None:
    """The installed version of a distribution (its metadata only: nothing imported)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def human_size(size: int) -> str:
    """``22.5 MB``: sizes as people read them (decimal units, as pip and file managers)."""
    amount = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if amount < 1000 or unit == "GB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1000
    raise AssertionError("unreachable")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _packages(pairs: Sequence[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """``(found, missing)`` for ``(module, distribution)`` pairs: ``numpy 2.1.0`` or the
    distribution's name."""
    found, missing = [], []
    for module, distribution in pairs:
        if installed(module):
            found.append(f"{distribution} {dist_version(distribution) or '?'}")
        else:
            missing.append(distribution)
    return found, missing


def package_check(name: str, pairs: Sequence[tuple[str, str]], *, extra: str = "") -> Check:
    """One line for a group of packages: an ``extra``'s (missing is fine) or, without one,
    the base install's (missing is broken, fixed by installing exactly those)."""
    found, missing = _packages(pairs)
    required = not extra
    if missing:
        status: Status = "broken" if required else "missing"
        have = f" (have: {', '.join(found)})" if found else ""
        fix = f'pip install "faceverify[{extra}]"' if extra else f"pip install {' '.join(missing)}"
        return Check(name, status, f"not installed: {', '.join(missing)}{have}", fix, required)
    return Check(name, "ok", ", ".join(found), required=required)
