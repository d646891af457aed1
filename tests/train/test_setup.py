"""Run set-up choices that depend on the machine."""

from __future__ import annotations

import timm
import torch

from faceverify.models.registry import register_architectures
from faceverify.train.setup import use_channels_last


def test_channels_last_stays_off_where_onednn_corrupts_memory() -> None:
    """On AVX-512 CPUs a 1x1 strided conv on < 16 channels crashes channels-last backward."""
    register_architectures()
    narrow, wide = (timm.create_model("face_resnet", num_classes=0, width=w) for w in (8, 16))
    cpu = torch.device("cpu")
    avx512 = "AVX512" in torch.backends.cpu.get_cpu_capability()
    assert use_channels_last(True, narrow, cpu) is not avx512
    assert use_channels_last(True, wide, cpu) is True and use_channels_last(False, wide, cpu) is False
    chosen = use_channels_last(True, narrow, cpu)
    if chosen:
        narrow.to(memory_format=torch.channels_last)
    images = torch.randn(4, 3, 64, 64)
    for _ in range(3):  # the backward passes that crashed the process
        narrow(images.contiguous(memory_format=torch.channels_last) if chosen else images).sum().backward()
