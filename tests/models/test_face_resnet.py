"""The course ResNet: the specified structure, registered with timm like any model."""

from __future__ import annotations

import pytest
import timm
import torch

from faceverify import build_model
from faceverify.errors import ModelError
from faceverify.models.face_resnet import FaceResNet, ResBlock


def test_structure_matches_the_course_specification() -> None:
    model = FaceResNet(num_classes=4000)
    assert (model.stem.in_channels, model.stem.out_channels, model.stem.kernel_size, model.stem.stride) == (
        3,
        64,
        (3, 3),
        (1, 1),
    )
    blocks = list(model.stages)
    assert all(isinstance(b, ResBlock) for b in blocks)
    shapes = [(b.conv1.in_channels, b.conv1.out_channels, b.conv1.stride[0]) for b in blocks]
    assert shapes == [
        (64, 64, 1),
        (64, 64, 1),
        (64, 128, 2),
        (128, 128, 1),
        (128, 256, 2),
        (256, 256, 1),
        (256, 512, 2),
        (512, 512, 1),
    ]
    for block in blocks:
        downsample = block.conv1.stride[0] == 2
        assert isinstance(block.shortcut, torch.nn.Conv2d) == downsample
        if downsample:
            assert block.shortcut.kernel_size == (1, 1)
    assert (model.fc.in_features, model.fc.out_features) == (512, 4000)
    x = torch.randn(2, 3, 64, 64)
    pooled = model.forward_head(model.forward_features(x), pre_logits=True)
    torch.testing.assert_close(pooled, model.forward_features(x).mean(dim=(2, 3)))


def test_registered_with_timm_and_known_to_build_model() -> None:
    import faceverify.models.face_resnet  # noqa: F401  (registers the architecture)

    model = timm.create_model("face_resnet", num_classes=0, width=16)
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 128)
    built = build_model("face_resnet", weights="random", device="cpu")
    assert (built.embedding_dim, built.preprocess.input_size) == (512, (64, 64))
    with pytest.raises(ModelError, match="no pretrained weights for 'face_resnet'"):
        build_model("face_resnet", device="cpu")
