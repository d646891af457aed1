"""compute_embedding / embed_images: shapes, every input form, batching, bad inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data import create_transform

from faceverify import compute_embedding, embed_images
from faceverify.errors import BatchImageError, ConfigError, ImageError, InputError


@pytest.fixture(scope="module")
def pixels(face_dir: Path) -> np.ndarray:
    return np.asarray(Image.open(face_dir / "face0.png").convert("RGB"))


def test_single_tensor_gains_a_batch_dimension(atto_model: Any) -> None:
    x = torch.randn(3, 224, 224)
    out = compute_embedding(atto_model, x)
    assert isinstance(out, np.ndarray)
    assert out.shape == (1, 320)
    assert out.dtype == np.float32
    assert compute_embedding(atto_model, x.unsqueeze(0).repeat(4, 1, 1, 1)).shape == (4, 320)


def test_a_batch_gives_the_same_vectors_as_each_image_alone(atto_model: Any, face_dir: Path) -> None:
    paths = sorted(str(p) for p in face_dir.rglob("*.*"))
    together = compute_embedding(atto_model, paths, batch_size=4)
    alone = np.concatenate([compute_embedding(atto_model, p) for p in paths])
    in_twos = compute_embedding(atto_model, paths, batch_size=2)
    assert together.dtype == alone.dtype == in_twos.dtype == np.float32
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(together, in_twos, rtol=1e-4, atol=1e-4)


def test_every_input_form_of_one_image_gives_the_same_embedding(
    atto_model: Any, face_dir: Path, pixels: np.ndarray
) -> None:
    path = face_dir / "face0.png"
    chw = torch.from_numpy(pixels.copy()).permute(2, 0, 1).contiguous()
    forms: list[Any] = [
        str(path),
        path,
        path.read_bytes(),
        Image.open(path),
        pixels,
        pixels[None],  # N×H×W×3
        chw,  # uint8 [3, H, W]
        chw[None],  # uint8 [1, 3, H, W]
        [pixels],
        [chw],
    ]
    reference = compute_embedding(atto_model, str(path))
    for form in forms:
        out = compute_embedding(atto_model, form)
        assert out.shape == (1, 320), type(form)
        assert out.dtype == np.float32, type(form)
        np.testing.assert_allclose(out, reference, rtol=1e-5, atol=1e-5, err_msg=str(type(form)))


def test_images_match_timms_own_preprocessing_and_forward(atto_model: Any, face_dir: Path) -> None:
    image = Image.open(face_dir / "face1.png").convert("RGB")
    transform = create_transform(**atto_model.preprocess.to_timm(), is_training=False)
    with torch.inference_mode():
        expected = atto_model.backbone(transform(image)[None]).numpy()
    got = compute_embedding(atto_model, image)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_mixed_lists_and_normalisation(atto_model: Any, face_dir: Path, pixels: np.ndarray) -> None:
    out = compute_embedding(
        atto_model, [face_dir / "face0.png", pixels, face_dir / "face2.png"], normalize=True
    )
    assert out.shape == (3, 320)
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), np.ones(3), rtol=1.3e-6, atol=1e-5)
    np.testing.assert_allclose(out[0], out[1], rtol=1e-5, atol=1e-5)
    assert compute_embedding(atto_model, []).shape == (0, 320)


def test_a_list_of_float_tensors_is_stacked_as_model_input(atto_model: Any) -> None:
    x = torch.randn(2, 3, 224, 224)
    stacked, batch = compute_embedding(atto_model, list(x)), compute_embedding(atto_model, x)
    assert stacked.dtype == batch.dtype == np.float32
    np.testing.assert_allclose(stacked, batch, rtol=1.3e-6, atol=1e-5)


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        (torch.zeros(224, 224), "rank 2; expected"),
        (torch.zeros(1, 1, 3, 224, 224), "rank 5"),
        (torch.zeros(1, 5, 224, 224), "5 channels"),
        (torch.zeros(1, 2, 64, 64, dtype=torch.uint8), "2 channels"),
        (torch.zeros(1, 3, 224, 224, dtype=torch.int64), "dtype torch.int64"),
        (torch.full((1, 3, 224, 224), float("nan")), "NaN"),
    ],
)
def test_wrong_tensors_are_refused_with_the_reason(
    atto_model: Any, tensor: torch.Tensor, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        compute_embedding(atto_model, tensor)


def test_other_refusals(atto_model: Any, face_dir: Path) -> None:
    with pytest.raises(InputError, match="mixes float tensors"):
        compute_embedding(atto_model, [torch.randn(3, 224, 224), face_dir / "face0.png"])
    with pytest.raises(InputError, match="share a shape"):
        compute_embedding(atto_model, [torch.randn(3, 224, 224), torch.randn(3, 112, 112)])
    with pytest.raises(ConfigError, match="batch size 0"):
        compute_embedding(atto_model, face_dir / "face0.png", batch_size=0)
    with pytest.raises(InputError, match=r"cannot process input of shape \(1, 3, 2, 2\)"):
        compute_embedding(atto_model, torch.zeros(1, 3, 2, 2))


def test_bad_files_in_a_batch_lose_no_good_ones(atto_model: Any, face_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    inputs = [
        face_dir / "face0.png",
        tmp_path / "missing.png",
        face_dir / "face1.png",
        tmp_path / "broken.jpg",
        np.zeros((4, 4, 3), dtype=np.uint8),
        face_dir / "face2.png",
    ]
    result = embed_images(atto_model, inputs, batch_size=2)
    assert result.indices == [0, 2, 5]
    assert result.sources == [str(inputs[i]) for i in (0, 2, 5)]
    assert result.embeddings.shape == (3, 320)
    assert [(f.index, f.source) for f in result.failures] == [
        (1, str(tmp_path / "missing.png")),
        (3, str(tmp_path / "broken.jpg")),
        (4, "<array uint8 (4, 4, 3)>"),
    ]
    assert "file not found" in result.failures[0].reason
    good = compute_embedding(atto_model, [inputs[i] for i in (0, 2, 5)])
    assert result.embeddings.dtype == good.dtype == np.float32
    np.testing.assert_allclose(result.embeddings, good, rtol=1e-4, atol=1e-4)
    with pytest.raises(BatchImageError, match="3 of 6 images could not be used") as info:
        compute_embedding(atto_model, inputs)
    assert len(info.value.failures) == 3
    with pytest.raises(ImageError, match=r"missing\.png: file not found"):
        compute_embedding(atto_model, tmp_path / "missing.png")


def test_prepared_numpy_input_is_embedded_as_it_is(atto_model: Any, face_dir: Path) -> None:
    """What ``prepare`` gives goes straight to the network, as float tensors do: the way to
    feed model-ready input on an install without PyTorch."""
    from faceverify.decode import load_image

    prepared = np.stack([atto_model.prepare(load_image(face_dir / f"face{i}.png")) for i in range(3)])
    expected = compute_embedding(atto_model, [face_dir / f"face{i}.png" for i in range(3)])
    batch = compute_embedding(atto_model, prepared)
    one = compute_embedding(atto_model, prepared[1])
    listed = compute_embedding(atto_model, list(prepared))
    np.testing.assert_array_equal(listed, batch)
    assert batch.dtype == np.float32 and batch.shape == expected.shape
    np.testing.assert_allclose(batch, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(one[0], expected[1], rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="NaN or infinite"):
        compute_embedding(atto_model, np.full_like(prepared, np.nan))
