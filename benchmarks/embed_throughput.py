"""Embedding throughput: every runtime against plain eager PyTorch, in one run.

For each model (ConvNeXt-Atto 224, the course ResNet 64×64, and dlib's face network
150×150 when its weights are installed), with the same random weights and inputs:

* ``eager``: the bare network called on an NCHW float tensor under ``torch.no_grad()``,
  the way most scripts run it (timm's own model for timm architectures);
* ``fv torch``: ``compute_embedding`` with ``backend="torch"`` (inference mode,
  channels-last, batching);
* ``fv onnx fp32``: ``backend="onnxruntime"`` (dlib's network: the graph written from
  its ``.dat`` file; the others: exported from PyTorch);
* ``fv onnx int8``: ``faceverify quantize``'s graph (static QDQ, per-channel weights),
  calibrated on random images (enough to time it; its accuracy is reported as the cosine
  to the fp32 embeddings on other random images).

Rounds alternate between the runtimes so that machine noise hits all alike; medians are
reported with the ratio to eager and the fraction of the machine's fp32 peak the
throughput implies (FLOPs per image counted by ``torch.utils.flop_counter``). ONNX Runtime
sessions are created with spinning off, so they do not slow the PyTorch rounds after them.

Run:  python benchmarks/embed_throughput.py [--rounds 5] [--peak-gflops 157] [--models ...]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

import faceverify as fv

#: fp32 peak of a 2-core AVX2+FMA machine (2 cores x 2 FMA units x 8 floats x 2 x ~2.45 GHz).
DEFAULT_PEAK_GFLOPS = 157.0


def _images_per_second(fn: Callable[[], object], count: int) -> float:
    started = time.perf_counter()
    fn()
    return count / (time.perf_counter() - started)


def _alternate(runs: dict[str, Callable[[], object]], count: int, rounds: int) -> dict[str, float]:
    for fn in runs.values():
        fn()  # warm-up: allocator, kernel selection, graph optimisation
    speeds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, fn in runs.items():
            speeds[name].append(_images_per_second(fn, count))
    return {name: statistics.median(values) for name, values in speeds.items()}


def _gflops_per_image(network: torch.nn.Module, size: tuple[int, int]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        network(torch.zeros(1, 3, *size))
    return counter.get_total_flops() / 1e9


def _models(names: list[str], folder: Path) -> list[tuple[str, Any, torch.nn.Module]]:
    """(label, faceverify torch embedder, bare eager network) for each model asked for."""
    from safetensors.torch import save_file

    built = []
    for name in names:
        torch.manual_seed(0)
        if name == "dlib_resnet_v1":
            try:
                model = fv.build_model(name, device="cpu")
            except fv.FaceVerifyError as exc:
                print(f"skipping {name}: {exc}")
                continue
            built.append((name, model, model.backbone))
            continue
        args = {"width": 32} if name == "face_resnet" else None
        size = 64 if name == "face_resnet" else None
        reference = fv.build_model(name, weights="random", model_args=args, input_size=size, device="cpu")
        weights = folder / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in reference.backbone.state_dict().items()}, str(weights))
        model = fv.build_model(name, weights=weights, model_args=args, input_size=size, device="cpu")
        eager = _eager_network(name, weights, args)
        built.append((name, model, eager))
    return built


def _eager_network(name: str, weights: Path, args: dict[str, Any] | None) -> torch.nn.Module:
    """The bare network as a script would create it (timm's model, default memory layout)."""
    import timm
    from safetensors.torch import load_file

    network = timm.create_model(name.split(".")[0], pretrained=False, num_classes=0, **(args or {}))
    network.load_state_dict(load_file(str(weights)))
    return network.eval()


def _random_pngs(folder: Path, count: int, size: int) -> list[Path]:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


HEADER = (
    f"{'model':<22} {'batch':>5} {'runtime':<13} {'img/s':>7} {'x eager':>7} {'of peak':>7} {'agreement':>22}"
)
MODELS = ["convnext_atto.d2_in1k", "face_resnet", "dlib_resnet_v1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=64, help="images per timed round at batch 32")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: cores)")
    parser.add_argument("--peak-gflops", type=float, default=DEFAULT_PEAK_GFLOPS)
    parser.add_argument("--no-int8", action="store_true", help="skip quantisation (it takes a while)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, median of {args.rounds} "
        f"alternating rounds, fp32 peak taken as {args.peak_gflops:g} GFLOP/s"
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for label, model, eager in _models(args.models, folder):
            _measure(label, model, eager, folder, args)


def _runtimes(
    label: str, model: Any, eager: torch.nn.Module, folder: Path, int8: bool
) -> tuple[dict[str, Any], dict[str, str]]:
    """The embedders to time, and how far each one's embeddings are from eager PyTorch's."""
    from faceverify.evaluate.quantize import quantize_model
    from faceverify.runtime.onnx_export import onnx_embedder_for

    size = model.preprocess.input_size
    fp32 = (
        fv.build_model(label, device="cpu", backend="onnxruntime")  # written from dlib's file
        if label == "dlib_resnet_v1"
        else onnx_embedder_for(model)
    )
    runtimes: dict[str, Any] = {"fv torch": model, "fv onnx fp32": fp32}
    if int8:
        images = _random_pngs(folder / f"{label}-calibration", 40, max(size))
        report = quantize_model(model, images, folder / f"{label}-int8.onnx", force=True)
        runtimes["fv onnx int8"] = fv.build_model(weights=report.output)
    probe = torch.randn(16, 3, *size, generator=torch.Generator().manual_seed(1))
    agreement = {"eager": "reference"}
    for name, embedder in runtimes.items():
        agreement[name] = (
            f"mean cos {_mean_cosine(embedder, eager, probe):.4f}"
            if name.endswith("int8")
            else _max_difference(embedder, eager, probe)
        )
    return runtimes, agreement


def _measure(label: str, model: Any, eager: torch.nn.Module, folder: Path, args: argparse.Namespace) -> None:
    size = model.preprocess.input_size
    gflops = _gflops_per_image(eager, size)
    runtimes, agreement = _runtimes(label, model, eager, folder, not args.no_int8)
    print(f"\n{label}: {model.embedding_dim}-dim, input {size[0]}x{size[1]}, {gflops:.2f} GFLOP/image")
    print(HEADER)
    for batch in (1, 32):
        count = args.images if batch == 32 else 16
        x = torch.randn(count, 3, *size)
        runs: dict[str, Callable[[], object]] = {"eager": _eager_run(eager, x, batch)}
        runs.update({name: _embed_run(r, x, batch) for name, r in runtimes.items()})
        speeds = _alternate(runs, count, args.rounds)
        for name, speed in speeds.items():
            peak = speed * gflops / args.peak_gflops
            print(
                f"{label:<22} {batch:>5} {name:<13} {speed:>7.1f} {speed / speeds['eager']:>7.2f} "
                f"{peak:>7.0%} {agreement[name]:>22}"
            )


def _eager_run(network: torch.nn.Module, x: torch.Tensor, batch: int) -> Callable[[], object]:
    def run() -> None:
        with torch.no_grad():
            for i in range(0, len(x), batch):
                network(x[i : i + batch])

    return run


def _embed_run(embedder: Any, x: torch.Tensor, batch: int) -> Callable[[], object]:
    """``compute_embedding`` as users call it with model-ready input: a float tensor (a 4-D
    numpy array would be read as N images), embedded in numpy by every runtime."""

    def run() -> None:
        fv.compute_embedding(embedder, x, batch_size=batch)

    return run


def _eager_and_embedded(
    embedder: Any, eager: torch.nn.Module, probe: torch.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        expected = eager(probe).float().numpy()
    got = embedder.embed(probe.numpy())
    assert got.dtype == np.float32 and got.shape == expected.shape, (got.dtype, got.shape, expected.shape)
    return got, expected


def _max_difference(embedder: Any, eager: torch.nn.Module, probe: torch.Tensor) -> str:
    got, expected = _eager_and_embedded(embedder, eager, probe)
    return f"max |diff| {float(np.abs(got - expected).max()):.1e}"


def _mean_cosine(embedder: Any, eager: torch.nn.Module, probe: torch.Tensor) -> float:
    got, expected = _eager_and_embedded(embedder, eager, probe)
    norms = np.maximum(np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1), 1e-8)
    return float(((got * expected).sum(axis=1) / norms).mean())


if __name__ == "__main__":
    main()
