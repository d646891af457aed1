"""Choosing the compute device: the GPU when there is one, unless told otherwise."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Union

from faceverify.errors import DeviceError, MissingDependencyError

if TYPE_CHECKING:
    import torch

DeviceLike = Union[str, "torch.device", None]
VALID_DEVICES = "auto, cpu, cuda, cuda:N, mps"
log = logging.getLogger(__name__)


def resolve_device_name(device: DeviceLike = None) -> str:
    """:func:`resolve_device` as a name (``cpu``, ``cuda``, ``cuda:1``, ``mps``), working
    without PyTorch: the base install computes on the CPU (ONNX Runtime), and says so when
    this machine has a GPU that only the torch extra would use, rather than fall back silently.
    """
    from faceverify.extras import TORCH

    name = str(device) if device is not None else "auto"
    if name == "cpu":
        return name
    if TORCH.installed():
        if name == "auto" and not _may_have_accelerator():
            return "cpu"  # nothing to ask PyTorch about: importing it alone takes a second
        return str(resolve_device(device))
    if name != "auto":
        raise MissingDependencyError(
            f"device {name!r} needs PyTorch, which the base install leaves out: {TORCH.install} "
            "(or use --device cpu)"
        )
    if nvidia_gpus():
        log.warning(
            "this machine has a GPU, but PyTorch is not installed: computing on the CPU; %s to use the GPU",
            TORCH.install,
        )
    return "cpu"


def _may_have_accelerator() -> bool:
    """Whether PyTorch might find a GPU here: an NVIDIA or AMD (ROCm) device node, or a Mac
    (MPS). False means the CPU, for certain."""
    import sys

    devices = Path("/dev")
    return bool(
        nvidia_gpus()
        or sys.platform == "darwin"
        or (devices / "kfd").exists()
        or any(devices.glob("nvidia[0-9]*"))
    )


def nvidia_gpus() -> list[str]:
    """The NVIDIA GPUs the driver reports (Linux), without importing anything heavy."""
    folder = Path("/proc/driver/nvidia/gpus")
    try:
        return sorted(entry.name for entry in folder.iterdir())
    except OSError:
        return []


def resolve_device(device: DeviceLike = None) -> torch.device:
    """Turn ``None``/``"auto"``/a name into a usable ``torch.device``.

    ``None`` and ``"auto"`` pick CUDA when available, then Apple's MPS, then the CPU.
    Asking for a device that this machine lacks is an error, never a silent fallback.
    """
    import torch

    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(f"device {device!r} is not understood; valid: {VALID_DEVICES}") from None
    if resolved.type == "cuda":
        _check_cuda(resolved)
    elif resolved.type == "mps" and not _mps_available():
        raise DeviceError("device 'mps' is not available on this machine; use 'cpu'")
    elif resolved.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"device {device!r} is not supported; valid: {VALID_DEVICES}")
    return resolved


def _check_cuda(device: torch.device) -> None:
    import torch

    if not torch.cuda.is_available():
        raise DeviceError(
            f"device {str(device)!r} was asked for but CUDA is not available on this machine "
            "(no GPU, or a CPU-only PyTorch build); use --device cpu or auto"
        )
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise DeviceError(
            f"device {str(device)!r} does not exist; this machine has {count} CUDA device(s): "
            + ", ".join(f"cuda:{i}" for i in range(count))
        )


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())
