"""Embedding throughput: faceverify against plain timm eager inference, in one run.

Both sides use the same architecture, the same (random) weights and the same inputs:

* ``timm eager``: ``timm.create_model(..., num_classes=0).eval()`` called on an NCHW
  float tensor under ``torch.no_grad()``, the way most scripts run it;
* ``faceverify``: ``compute_embedding(model, tensor)``: inference mode, channels-last,
  batching.

Also timed: the end-to-end path from PNG files (decode + preprocess + embed), which is
what ``faceverify embed`` does, against a script that decodes, transforms with timm's
own transform and runs the same model one step after the other. Rounds alternate between the two sides so that
machine noise hits both alike; the medians are reported, with their ratio.

Run:  python benchmarks/embed_throughput.py [--model NAME] [--rounds 5] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image

import faceverify as fv


def _images_per_second(fn: Callable[[], object], count: int) -> float:
    started = time.perf_counter()
    fn()
    return count / (time.perf_counter() - started)


def _alternate(
    a: Callable[[], object], b: Callable[[], object], count: int, rounds: int
) -> tuple[float, float]:
    a(), b()  # warm-up: allocator, oneDNN kernel selection
    speeds_a, speeds_b = [], []
    for _ in range(rounds):
        speeds_a.append(_images_per_second(a, count))
        speeds_b.append(_images_per_second(b, count))
    return statistics.median(speeds_a), statistics.median(speeds_b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="convnext_atto.d2_in1k")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=64, help="images per timed round at batch 32")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: all)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    reference = timm.create_model(args.model, pretrained=False, num_classes=0).eval()
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "w.safetensors"
        from safetensors.torch import save_file

        save_file(reference.state_dict(), str(weights))
        model = fv.build_model(args.model, weights=weights, device="cpu")
        size = model.preprocess.input_size
        print(
            f"model {args.model} ({model.embedding_dim}-dim), input {size[0]}x{size[1]}, "
            f"{torch.get_num_threads()} threads, torch {torch.__version__}, median of {args.rounds} rounds"
        )
        print(f"{'batch':>5}  {'timm eager img/s':>16}  {'faceverify img/s':>16}  {'ratio':>5}")
        for batch in (1, 32):
            count = batch if batch > 1 else 8
            count = args.images if batch == 32 else count
            x = torch.randn(count, 3, *size)

            def eager(x: torch.Tensor = x, batch: int = batch) -> None:
                with torch.no_grad():
                    for i in range(0, len(x), batch):
                        reference(x[i : i + batch])

            def ours(x: torch.Tensor = x, batch: int = batch) -> None:
                fv.compute_embedding(model, x, batch_size=batch)

            base, fast = _alternate(eager, ours, count, args.rounds)
            print(f"{batch:>5}  {base:>16.1f}  {fast:>16.1f}  {fast / base:>5.2f}")

        paths = _write_pngs(Path(tmp), count=args.images)
        transform = timm.data.create_transform(**model.preprocess.to_timm(), is_training=False)

        def naive_files() -> None:
            # what a typical script does: decode, transform, then run, one after the other
            with torch.no_grad():
                for i in range(0, len(paths), 32):
                    batch = [transform(Image.open(p).convert("RGB")) for p in paths[i : i + 32]]
                    reference(torch.stack(batch))

        def ours_files() -> None:
            fv.compute_embedding(model, paths, batch_size=32)

        base, fast = _alternate(naive_files, ours_files, len(paths), args.rounds)
        print(
            f"files   {base:>16.1f}  {fast:>16.1f}  {fast / base:>5.2f}   "
            "(64x64 PNGs: decode + preprocess + embed, batch 32)"
        )


def _write_pngs(folder: Path, count: int) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


if __name__ == "__main__":
    main()
