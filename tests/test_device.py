"""Choosing the device: never a silent fallback, and no PyTorch import where none is needed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from faceverify.device import nvidia_gpus, resolve_device_name
from faceverify.errors import DeviceError

IMPORTS_TORCH = """
import sys
from faceverify.device import resolve_device_name
print(resolve_device_name({device!r}), "torch" in sys.modules)
"""


@pytest.mark.parametrize("device", ["cpu", "auto", None])
def test_the_cpu_is_named_without_importing_pytorch(device: str | None) -> None:
    """Importing PyTorch takes a second; a CPU-only answer must not pay it (the full install
    runs dlib's graph in ONNX Runtime)."""
    if device != "cpu" and nvidia_gpus():
        pytest.skip("this machine has a GPU: auto asks PyTorch")
    code = IMPORTS_TORCH.format(device=device)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["cpu", "False"]


def test_a_device_this_machine_lacks_is_an_error_not_the_cpu() -> None:
    if nvidia_gpus():
        pytest.skip("this machine has a GPU")
    with pytest.raises(DeviceError, match="CUDA is not available"):
        resolve_device_name("cuda")


THREADS = """
import sys
from faceverify import build_model
from faceverify.runtime.onnx_backend import set_threads
set_threads(1)
onnx = build_model("dlib_resnet_v1", device="cpu", backend="onnxruntime")
loaded = "torch" in sys.modules
build_model("face_resnet", weights="random", device="cpu", backend="torch")
import torch
print(onnx.threads, loaded, torch.get_num_threads())
"""


def test_threads_reach_both_runtimes_without_loading_pytorch_for_onnx_runtime() -> None:
    """The service's ``--threads``: ONNX Runtime gets them at once; PyTorch when a model
    first needs it, not before (loading it costs a second and its memory)."""
    done = subprocess.run([sys.executable, "-c", THREADS], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["1", "False", "1"]
