"""Weights an architecture publishes outside the hub, in a format of its own.

This is timm's ``custom_load`` done the faceverify way: an architecture's module registers
a :class:`CustomWeights` beside its timm entry (dlib's network does), saying where its
published weights are on this machine and how its files read;
:mod:`faceverify.models.weights` then plans and reads them like any other weights (and
loads them strictly), without testing a model's name.

A leaf module: the architectures import it to register, ``weights`` to look up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class CustomWeights:
    """Where an architecture's published weights are, and how files of its format read.

    Attributes:
        default_file: the published weights on this machine, for ``weights=None``; raises
            an error that says what to install when they are absent.
        read: the architecture's tensors from a file in its format (and that format's own
            errors, naming what is wrong with a file).
        suffixes: how the names of files in that format end; other files (safetensors,
            PyTorch checkpoints) take the common path.
    """

    default_file: Callable[[], Path]
    read: Callable[[Path], dict[str, torch.Tensor]]
    suffixes: tuple[str, ...]


_REGISTERED: dict[str, CustomWeights] = {}


def register_custom_weights(architecture: str, weights: CustomWeights) -> None:
    """Say where ``architecture``'s published weights are and how its own files read."""
    _REGISTERED[architecture] = weights


def registered(architecture: str) -> CustomWeights | None:
    """What ``architecture`` (without a tag) registered, if its module has been imported;
    :func:`faceverify.models.weights.custom_weights` imports faceverify's architectures first."""
    return _REGISTERED.get(architecture)
