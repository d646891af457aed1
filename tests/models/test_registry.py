"""The curated list: dims read off the architectures, cached, and true."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch

from faceverify.models import registry
from faceverify.models.registry import DEFAULT_MODEL, curated_names, list_models


def test_every_family_is_curated_and_each_name_has_published_weights() -> None:
    infos = {info.name: info for info in list_models(use_cache=False)}
    families = {info.family for info in infos.values()}
    assert {"VGG", "ResNet", "Inception", "DenseNet", "EfficientNet", "MobileNet", "ConvNeXt"} <= families
    assert infos["face_resnet"].embedding_dim == 512
    assert infos[DEFAULT_MODEL].embedding_dim == 320
    assert infos.pop("face_resnet").hub_id is None  # the course's ResNet: trained, not downloaded
    assert infos.pop("dlib_resnet_v1").hub_id is None  # dlib's: weights from a PyPI package
    for info in infos.values():
        assert info.hub_id == f"timm/{info.name}"


@pytest.mark.parametrize(
    "name", ["convnext_atto.d2_in1k", "resnet18.a1_in1k", "mobilenetv3_large_100.ra_in1k"]
)
def test_listed_dims_equal_a_real_forward_pass(name: str) -> None:
    listed = {info.name: info for info in list_models()}[name]
    model = timm.create_model(name, pretrained=False, num_classes=0).eval()
    with torch.inference_mode():
        out = model(torch.zeros(1, 3, *listed.input_size))
    assert out.shape == (1, listed.embedding_dim)


def test_descriptions_are_cached_and_a_corrupt_cache_is_rebuilt(monkeypatch: pytest.MonkeyPatch) -> None:
    first = list_models()
    cache = registry._cache_file()
    assert cache.is_file()
    assert [row["name"] for row in json.loads(cache.read_text())] == curated_names()
    monkeypatch.setattr(registry, "_describe", _fail)
    assert list_models() == first  # served from the cache, nothing rebuilt
    cache.write_text("{not json")
    monkeypatch.undo()
    assert list_models() == first


def _fail(entry: object) -> None:
    raise AssertionError("the cache should have answered")


def test_unwritable_cache_does_not_break_the_listing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # a file where a folder must go
    assert len(list_models()) == len(curated_names())
