"""The curated model names shown by ``faceverify models``.

Any timm architecture works with :func:`faceverify.build_model`; this list is the short
menu of one or more well-tested names per CNN family. Embedding dimensions and input
sizes are never typed here: :func:`list_models` reads them off the real architectures,
built on PyTorch's ``meta`` device so that no memory is allocated and nothing downloads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


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
):
    register(_name, _family, _note)


def curated_names() -> list[str]:
    """The curated names, in menu order."""
    return list(_ZOO)


def list_models() -> list[ModelInfo]:
    """Describe every curated model, reading dims and input sizes off the architecture."""
    return [_describe(entry) for entry in _ZOO.values()]


def _describe(entry: ZooEntry) -> ModelInfo:
    import timm
    import torch
    from timm.data import resolve_model_data_config

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
        hub_id=model.pretrained_cfg.get("hf_hub_id"),
        note=entry.note,
    )
