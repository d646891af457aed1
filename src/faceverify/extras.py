"""The optional parts of faceverify, and the one-line answer when one is missing.

``pip install faceverify`` (the base) embeds, verifies, enrols, identifies, detects,
evaluates and serves with dlib's network on ONNX Runtime. The extras add what is heavy
and needed only for some jobs; a feature that needs one fails with a
:class:`~faceverify.errors.MissingDependencyError` naming the install command, never with
an ImportError traceback. Presence is checked with ``importlib.util.find_spec``, which
does not import the package (importing PyTorch alone takes seconds).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from faceverify.errors import MissingDependencyError


@dataclass(frozen=True)
class Extra:
    """An optional group of packages: its name in ``pip install "faceverify[name]"``, the
    modules that tell it is installed, and what it brings."""

    name: str
    modules: tuple[str, ...]
    brings: str

    @property
    def install(self) -> str:
        return f'pip install "faceverify[{self.name}]"'

    def installed(self) -> bool:
        return all(importlib.util.find_spec(module) is not None for module in self.modules)

    def require(self, what: str) -> None:
        """Raise MissingDependencyError unless installed: ``what`` needs it."""
        if not self.installed():
            missing = [m for m in self.modules if importlib.util.find_spec(m) is None]
            raise MissingDependencyError(
                f"{what} needs {', '.join(missing)} ({self.brings}), which the base install leaves "
                f"out: {self.install}"
            )


TORCH = Extra("torch", ("torch", "timm"), "PyTorch: training, timm backbones, GPUs")
PLOTS = Extra("plots", ("matplotlib",), "figures")
POSTGRES = Extra("postgres", ("psycopg", "psycopg_pool", "pgvector"), "PostgreSQL galleries")
INDEX = Extra("index", ("faiss",), "faiss indexes for galleries of tens of thousands of faces and more")
ONNX = Extra("onnx", ("onnx",), "ONNX tools: int8 quantisation")
VIDEO = Extra("video", ("av", "trackers"), "video decoding through FFmpeg and face tracking")
EXTRAS = (TORCH, PLOTS, POSTGRES, INDEX, ONNX, VIDEO)


def torch_installed() -> bool:
    """Whether PyTorch and timm can be imported (without importing them)."""
    return TORCH.installed()


def require_torch(what: str) -> None:
    """Raise MissingDependencyError naming the torch extra unless it is installed."""
    TORCH.require(what)
