"""The PyTorch runtime's failures: each says what happened and whose fault it is."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import faceverify as fv
from faceverify.errors import DeviceMemoryError, InputError
from faceverify.models.factory import LoadedNetwork
from faceverify.preprocess import PreprocessConfig
from faceverify.runtime.build import embedder_for

CONTRACT = PreprocessConfig(
    input_size=(32, 32), interpolation="bilinear", mean=(0.5,) * 3, std=(0.5,) * 3, crop_pct=1.0
)


class Failing(nn.Module):
    """A network that fails as a GPU out of memory (or a broken model) would: this
    CPU-only machine cannot run out of GPU memory for real."""

    num_features = 8

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error
        self.weight = nn.Parameter(torch.zeros(1))  # the runtime finds its device by its parameters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise self.error


def _embedder(error: Exception) -> fv.EmbeddingModel:
    return embedder_for(LoadedNetwork(Failing(error), "failing", CONTRACT, source="test", file=None))


def test_out_of_memory_says_so_and_what_to_change() -> None:
    model = _embedder(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"))
    with pytest.raises(
        DeviceMemoryError, match=r"ran out of memory embedding a batch of shape \(4, 3, 32, 32\)"
    ):
        fv.compute_embedding(model, torch.zeros(4, 3, 32, 32))


def test_only_input_of_another_size_is_blamed_on_the_input() -> None:
    model = _embedder(RuntimeError("an internal failure"))
    with pytest.raises(RuntimeError, match="an internal failure") as info:
        fv.compute_embedding(model, torch.zeros(1, 3, 32, 32))  # the contract's size: not the input
    assert not isinstance(info.value, InputError)
    with pytest.raises(InputError, match=r"cannot process input of shape \(1, 3, 16, 16\): an internal"):
        fv.compute_embedding(model, torch.zeros(1, 3, 16, 16))
