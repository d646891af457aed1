"""Checks of Python, faceverify, the base packages and the runtimes: ONNX Runtime, PyTorch, timm, the GPU."""

from __future__ import annotations

import functools
import os
import platform
import re
import shutil
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from faceverify.doctor.base import (
    GPU_PROBE_TIMEOUT_S,
    ORT_DISTRIBUTIONS,
    TORCH_FIX,
    Check,
    dist_version,
    first_line,
    installed,
    package_check,
)
from faceverify.extras import ONNX

# ----------------------------------------------------------------------------------------
# Python, faceverify and the base packages


def check_python() -> Check:
    """Python and the platform: the first thing a bug report needs."""
    version = platform.python_version()
    where = f"{platform.python_implementation()} {version} on {platform.system()} {platform.machine()}"
    detail = f"{where} ({sys.executable})"
    return Check("python", "ok", detail, required=True)


def check_faceverify() -> Check:
    from faceverify import __version__

    folder = Path(__file__).resolve().parents[1]  # the faceverify package, above doctor/
    return Check("faceverify", "ok", f"{__version__} ({folder})", required=True)


def check_core_packages() -> Check:
    pairs = [("numpy", "numpy"), ("PIL", "Pillow"), ("tqdm", "tqdm"), ("yaml", "PyYAML")]
    pairs.append(("google.protobuf", "protobuf"))  # faceverify writes and reads ONNX graphs with it
    return package_check("core packages", pairs)


def check_service_packages() -> Check:
    pairs = [
        ("fastapi", "fastapi"),
        ("uvicorn", "uvicorn"),
        ("multipart", "python-multipart"),
        ("prometheus_client", "prometheus_client"),
    ]
    return package_check("service packages", pairs)


# ----------------------------------------------------------------------------------------
# runtimes: ONNX Runtime, PyTorch, timm, the GPU


@dataclass(frozen=True)
class OrtInfo:
    """What ONNX Runtime says about itself (``error`` when it cannot be imported)."""

    version: str = ""
    providers: tuple[str, ...] = ()
    distributions: tuple[str, ...] = ()
    error: str = ""


@functools.lru_cache(maxsize=1)
def ort_info() -> OrtInfo | None:
    """ONNX Runtime's version and providers; None when it is not installed."""
    if not installed("onnxruntime"):
        return None
    distributions = tuple(d for d in ORT_DISTRIBUTIONS if dist_version(d) is not None)
    try:
        import onnxruntime
    except Exception as exc:  # a wheel for another CPU or Python, a missing CUDA library...
        return OrtInfo(distributions=distributions, error=first_line(exc))
    return OrtInfo(onnxruntime.__version__, tuple(onnxruntime.get_available_providers()), distributions)


def check_onnxruntime() -> Check:
    """ONNX Runtime runs dlib's network and the ``mmod`` detector in the base install."""
    info = ort_info()
    if info is None:
        return Check("onnxruntime", "broken", "not installed", "pip install onnxruntime", True)
    if info.error:
        return Check(
            "onnxruntime",
            "broken",
            f"cannot be imported: {info.error}",
            "pip install --force-reinstall onnxruntime",
            True,
        )
    detail = f"{info.version}; providers: {', '.join(info.providers)}"
    if len(info.distributions) > 1:  # they share one module folder: whichever came last wins
        return Check(
            "onnxruntime",
            "warn",
            f"{detail}; wheels {', '.join(info.distributions)} are all installed and overwrite each other",
            f"pip uninstall -y {' '.join(info.distributions)} && pip install {info.distributions[-1]}",
            True,
        )
    return Check(
        "onnxruntime",
        "ok",
        f"{detail} ({info.distributions[0] if info.distributions else '?'})",
        required=True,
    )


def check_onnx() -> Check:
    """onnx (the onnx extra, in the torch one too): int8 quantisation and PyTorch's exporter;
    faceverify writes and reads its own graphs without it."""
    if not installed("onnx"):
        return Check("onnx", "missing", "not installed (faceverify quantize needs it)", ONNX.install)
    return Check("onnx", "ok", dist_version("onnx") or "?")


@dataclass(frozen=True)
class TorchInfo:
    """What PyTorch says about itself and its devices (``error`` when it cannot be imported)."""

    version: str = ""
    cuda_build: str | None = None
    hip_build: str | None = None
    cuda_available: bool = False
    devices: tuple[str, ...] = ()
    mps: bool = False
    note: str = ""
    error: str = ""


@functools.lru_cache(maxsize=1)
def torch_info() -> TorchInfo | None:
    """PyTorch's version and what CUDA/MPS it sees; None when it is not installed. Importing
    torch takes seconds, so this runs once, and only when torch is there."""
    if not installed("torch"):
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            import torch

            cuda = bool(torch.cuda.is_available())
            devices = (
                tuple(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) if cuda else ()
            )
            mps_backend = getattr(torch.backends, "mps", None)
            mps = bool(mps_backend is not None and mps_backend.is_available())
        except Exception as exc:
            return TorchInfo(version=dist_version("torch") or "?", error=first_line(exc))
    # torch explains why CUDA is unusable (an old driver...) in a warning: keep the first
    note = next((str(w.message).strip().splitlines()[0] for w in caught if str(w.message).strip()), "")
    return TorchInfo(
        version=str(torch.__version__),
        cuda_build=torch.version.cuda,
        hip_build=getattr(torch.version, "hip", None),
        cuda_available=cuda,
        devices=devices,
        mps=mps,
        note=note,
    )


def check_torch() -> Check:
    """PyTorch: timm backbones, training, exporting to ONNX; the `torch` extra."""
    info = torch_info()
    if info is None:
        return Check(
            "torch",
            "missing",
            "not installed (timm models, training and GPUs through PyTorch need it)",
            TORCH_FIX,
        )
    if info.error:
        return Check(
            "torch",
            "broken",
            f"{info.version} cannot be imported: {info.error}",
            f"{TORCH_FIX} --force-reinstall",
        )
    return Check("torch", "ok", f"{info.version}; {_torch_devices(info)}")


def _torch_devices(info: TorchInfo) -> str:
    if info.hip_build:
        build = f"ROCm {info.hip_build} build"
    elif info.cuda_build:
        build = f"CUDA {info.cuda_build} build"
    else:
        build = "CPU-only build"
    if info.cuda_available:
        cuda = f"CUDA: {len(info.devices)} device(s): {', '.join(info.devices)}"
    else:
        cuda = "CUDA: not available" + (f" ({info.note})" if info.note else "")
    return f"{build}; {cuda}; MPS: {'yes' if info.mps else 'no'}"


def check_timm() -> Check:
    """timm holds the backbones (convnext_atto...); read from metadata, not imported (slow)."""
    if not installed("timm"):
        return Check("timm", "missing", "not installed (timm backbones need it)", TORCH_FIX)
    return Check("timm", "ok", dist_version("timm") or "?")


def gpu_hardware() -> list[str]:
    """The GPUs this machine has, whatever can use them: NVIDIA's from the kernel driver
    (``/proc/driver/nvidia/gpus``), ``/dev/nvidia*`` or ``nvidia-smi -L``; AMD's from
    ``/dev/kfd``; Apple silicon's. Empty when none is found."""
    found = _proc_nvidia_gpus() or _nvidia_smi_gpus()
    if not found and any(Path("/dev").glob("nvidia[0-9]*")):
        found = ["NVIDIA GPU (/dev/nvidia*)"]
    if Path("/dev/kfd").exists():
        found.append("AMD GPU (/dev/kfd)")
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        found.append("Apple silicon GPU")
    return found


def _proc_nvidia_gpus() -> list[str]:
    names = []
    for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
        try:
            text = info.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        model = re.search(r"^Model:\s*(.+)$", text, re.MULTILINE)
        names.append(model.group(1).strip() if model else f"NVIDIA GPU ({info.parent.name})")
    return names


def _nvidia_smi_gpus() -> list[str]:
    program = shutil.which("nvidia-smi")
    if program is None:
        return []
    try:
        listing = subprocess.run(
            [program, "-L"], capture_output=True, text=True, timeout=GPU_PROBE_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:  # the driver is there, but hung
        return [f"NVIDIA GPU (nvidia-smi did not answer within {GPU_PROBE_TIMEOUT_S} s)"]
    except OSError:
        return []
    names = re.findall(r"^GPU \d+: (.+?)(?: \(UUID: .*\))?$", listing.stdout, re.MULTILINE)
    return [name.strip() for name in names]


def check_gpu() -> Check:
    """A GPU that nothing can use is the slow path users never notice: say so, with the fix."""
    hardware = gpu_hardware()
    if not hardware:
        return Check("gpu", "ok", "none found; everything runs on the CPU")
    users = _gpu_users()
    detail = "; ".join(hardware)
    if users:
        return Check("gpu", "ok", f"{detail}; used by {', '.join(users)}")
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    if hidden is not None and not hidden.strip(" ,"):
        return Check(
            "gpu",
            "warn",
            f"{detail}; hidden by CUDA_VISIBLE_DEVICES='{hidden}'",
            "unset CUDA_VISIBLE_DEVICES",
        )
    return Check(
        "gpu",
        "warn",
        f"{detail}; neither torch nor onnxruntime can use it, so everything runs on the CPU{_why_unused()}",
        _gpu_fix(),
    )


def _gpu_users() -> list[str]:
    users = []
    info = torch_info()
    if info is not None and not info.error and info.cuda_available:
        users.append(f"torch ({'ROCm' if info.hip_build else 'CUDA'})")
    if info is not None and not info.error and info.mps:
        users.append("torch (MPS)")
    # ONNX Runtime's GPU providers are listed on the onnxruntime line, not counted here:
    # faceverify opens CPU sessions only, so a GPU serves faceverify through PyTorch alone
    return users


def _why_unused() -> str:
    """`` (torch ...)``: why PyTorch, the runtime faceverify runs on GPUs, leaves it alone."""
    return f" ({_torch_reason()}; faceverify's ONNX Runtime sessions run on the CPU)"


def _torch_reason() -> str:
    info = torch_info()
    if info is None:
        return "torch is not installed"
    if info.error:
        return f"torch cannot be imported: {info.error}"
    if not info.cuda_build and not info.hip_build:
        return f"torch {info.version} is a CPU-only build"
    return f"torch {info.version}: {info.note or 'CUDA not available'}"


def _gpu_fix() -> str:
    """PyTorch is how faceverify computes on a GPU (its ONNX Runtime sessions are CPU ones)."""
    return _torch_fix()


def _torch_fix() -> str:
    info = torch_info()
    if info is None or info.error:
        return f"{TORCH_FIX} (its Linux wheels are CUDA builds)"
    if info.cuda_build or info.hip_build:
        return f"update the GPU driver to one torch {info.version} supports"
    return (
        "pip install --force-reinstall torch torchvision --index-url "
        "https://download.pytorch.org/whl/cu126 (a CUDA build; see pytorch.org/get-started)"
    )
