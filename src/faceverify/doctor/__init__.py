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

Modules: ``base`` (:class:`Check`, :class:`Report`, shared helpers), ``runtimes`` (Python, the
base packages, ONNX Runtime, PyTorch, timm, the GPU), ``faces`` (dlib, its files, detectors,
models, the cache; faiss, plots, PostgreSQL drivers), ``storage`` (the gallery behind
``--db``, the keys file).

May import: anything in faceverify (it looks at every layer) except the CLI, which prints
its report.
"""

from __future__ import annotations

from collections.abc import Callable

from faceverify.doctor.base import (
    CONNECT_TIMEOUT_S,
    STATUSES,
    Check,
    Report,
    Status,
    dist_version,
    human_size,
    installed,
)
from faceverify.doctor.faces import (
    check_cache,
    check_detectors,
    check_dlib,
    check_dlib_files,
    check_dlib_model,
    check_faiss,
    check_plots,
    check_postgres_drivers,
    check_timm_models,
    check_video,
)
from faceverify.doctor.runtimes import (
    check_core_packages,
    check_faceverify,
    check_gpu,
    check_onnx,
    check_onnxruntime,
    check_python,
    check_service_packages,
    check_timm,
    check_torch,
    gpu_hardware,
)
from faceverify.doctor.storage import check_gallery, check_keys, mask_url

__all__ = [
    "CONNECT_TIMEOUT_S",
    "STATUSES",
    "Check",
    "Report",
    "Status",
    "check_gallery",
    "check_gpu",
    "check_keys",
    "check_onnxruntime",
    "dist_version",
    "gpu_hardware",
    "human_size",
    "installed",
    "mask_url",
    "run_checks",
]


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
        ("video", check_video),
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
