"""Which model to build, as one typed record: :class:`ModelSpec`.

The CLI's model options, the HTTP service's settings and Python callers describe the
embedder they want with the same fields: the arguments of
:func:`faceverify.runtime.build.build_model`, which
:func:`~faceverify.runtime.build.build_from_spec` builds from a spec. A spec holds plain
values (strings, numbers, a dict), so it travels as JSON (to the service's worker
processes) and can be written beside what it produced.

It lives with the models, below the runtimes, so that every layer that describes a model
can import it, and it imports nothing heavy: the CLI's parser and the service's settings
load without torch. Building is therefore not a method here (models never import a
runtime); :func:`~faceverify.runtime.build.build_from_spec` does it.
"""

from __future__ import annotations

import functools
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from faceverify.errors import ConfigError

_Spec = TypeVar("_Spec", bound="ModelSpec")


@dataclass(frozen=True)
class ModelSpec:
    """The model to build: the arguments of :func:`~faceverify.runtime.build.build_model`.

    ``model`` is build_model's ``name``, under the name the CLI (``--model``), the service's
    settings and every artifact's metadata (``"model"``) give it. The defaults are
    build_model's own. See :func:`~faceverify.runtime.build.build_model` for what each
    value means; the backend's name is checked there too, where the runtimes are known.

    Attributes:
        model: a timm name, ``hf-hub:org/repo`` or ``local-dir:PATH``; None: the default.
        weights: None (the published weights), ``"random"``, or a local file or folder.
        device: None or ``"auto"`` (the GPU when present), ``"cpu"``, ``"cuda:1"``...
        input_size: the network's input side (or ``(height, width)``); None: the weights'.
        crop_pct: the centre-crop fraction; None: the weights'.
        interpolation: the resize filter; None: the weights'.
        threshold: a cosine threshold to carry; None: the model's own.
        channels_last: feed the network channels-last tensors.
        cache_dir: the Hugging Face cache folder; None: the standard one.
        model_args: extra architecture arguments (e.g. ``{"width": 32}``).
        backend: ``torch``, ``onnxruntime`` or ``auto``; None: PyTorch when installed, else ONNX Runtime.
        face_template, pixel_mean, pixel_std, channel_order: for ONNX graphs faceverify
            did not write: their alignment and pixel normalisation (0-255 units); None:
            the insightface convention (see :mod:`faceverify.runtime.foreign_onnx`).
        tta: ``flip`` embeds each face with its mirror image; None: no augmentation.
    """

    model: str | None = None
    weights: str | None = None
    device: str | None = None
    input_size: int | tuple[int, int] | None = None
    crop_pct: float | None = None
    interpolation: str | None = None
    threshold: float | None = None
    channels_last: bool = True
    cache_dir: str | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    backend: str | None = None
    face_template: str | None = None
    pixel_mean: float | tuple[float, float, float] | None = None
    pixel_std: float | tuple[float, float, float] | None = None
    channel_order: str | None = None
    tta: str | None = None

    #: What an unknown key is called in errors (a subclass that adds fields names its own).
    _KIND: ClassVar[str] = "model option"

    def __post_init__(self) -> None:
        # what JSON, YAML and Python hand over for the same value: a list, a path, an int
        plain = {
            "weights": _fspath(self.weights),
            "cache_dir": _fspath(self.cache_dir),
            "input_size": tuple(self.input_size) if isinstance(self.input_size, list) else self.input_size,
            "pixel_mean": _tuple_of_list(self.pixel_mean),
            "pixel_std": _tuple_of_list(self.pixel_std),
        }
        for name, value in plain.items():
            object.__setattr__(self, name, value)
        hints = _hints()
        for item in fields(ModelSpec):
            value = getattr(self, item.name)
            if not _fits(value, hints[item.name]):
                raise ConfigError(
                    f"{self._KIND} {item.name}={value!r:.200} must be {_describe(hints[item.name])}"
                )

    @classmethod
    def from_dict(cls: type[_Spec], data: Mapping[str, Any]) -> _Spec:
        """A spec from plain data (JSON, YAML); unknown keys are errors that list the valid ones."""
        known = [item.name for item in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(f"unknown {cls._KIND} {unknown[0]!r}; valid keys: {', '.join(known)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """The model's fields as plain data; :meth:`from_dict` reads it back.

        On a subclass that adds fields (the service's settings), still the model's only.
        """
        data = {item.name: getattr(self, item.name) for item in fields(ModelSpec)}
        data["model_args"] = dict(self.model_args)
        return data


@functools.cache
def _hints() -> dict[str, Any]:
    return typing.get_type_hints(ModelSpec)


def _tuple_of_list(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _fspath(value: Any) -> Any:
    return os.fspath(value) if isinstance(value, os.PathLike) else value


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` is of the annotated type (the few kinds a spec's fields use)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_fits(value, option) for option in typing.get_args(hint))
    origin = typing.get_origin(hint) or hint
    if origin is type(None):
        return value is None
    if origin is bool:
        return isinstance(value, bool)
    if origin in (int, float):  # an int is a fine float; a bool is neither
        allowed = (int, float) if origin is float else int
        return isinstance(value, allowed) and not isinstance(value, bool)
    if origin is tuple:
        items = typing.get_args(hint)
        return (
            isinstance(value, tuple)
            and len(value) == len(items)
            and all(_fits(v, t) for v, t in zip(value, items))
        )
    if origin is dict:
        return isinstance(value, dict) and all(isinstance(k, str) for k in value)
    return isinstance(value, origin)


def _describe(hint: Any) -> str:
    if isinstance(hint, type):
        return hint.__name__
    text = str(hint).replace("typing.", "").replace("NoneType", "None")
    return text.replace("Any", "value")
