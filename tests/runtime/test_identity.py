"""One model identity, compared the same way by galleries, calibrations and the ONNX cache."""

from __future__ import annotations

from pathlib import Path

import pytest

import faceverify as fv
from faceverify.errors import ModelMismatchError
from faceverify.gallery.base import same_model
from faceverify.gallery.gallery import model_manifest
from faceverify.runtime.identity import ModelIdentity


def test_identity_names_what_differs() -> None:
    a = ModelIdentity("m", 128, "abc", "fp1")
    b = ModelIdentity("m", 128, "abd", "fp2")
    assert a.matches(ModelIdentity.from_dict(a.to_dict()))
    assert a.differences(b) == ["weights_sha256", "preprocess_fingerprint"]
    assert a.matches(b, only=("model", "embedding_dim"))
    assert "weights_sha256: here 'abc' vs there 'abd'" in a.describe_differences(b, "here", "there")


def test_a_gallery_refuses_another_preprocessing_naming_it(atto_file: Path) -> None:
    weights = atto_file
    built = fv.build_model(weights=weights, device="cpu", backend="torch")
    smaller = fv.build_model(weights=weights, device="cpu", backend="torch", input_size=112)
    assert built.identity().weights_sha256 == smaller.identity().weights_sha256
    assert built.identity().differences(smaller.identity()) == ["preprocess_fingerprint"]
    same_model(model_manifest(built), model_manifest(built))
    with pytest.raises(ModelMismatchError, match=r"preprocess_fingerprint: gallery '.*' vs model"):
        same_model(model_manifest(built), model_manifest(smaller))


def test_the_onnx_cache_key_follows_the_identity(atto_file: Path) -> None:
    pytest.importorskip("onnxruntime")
    from faceverify.runtime.onnx_export import cached_graph_path

    weights = atto_file
    built = fv.build_model(weights=weights, device="cpu", backend="torch")
    again = fv.build_model(weights=weights, device="cpu", backend="torch")
    smaller = fv.build_model(weights=weights, device="cpu", backend="torch", input_size=112)
    assert cached_graph_path(built) == cached_graph_path(again)
    assert cached_graph_path(built) != cached_graph_path(smaller)
