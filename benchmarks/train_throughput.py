"""Training throughput of the course ResNet: faceverify's optimised step against a plain
fp32 NCHW loop, on the same model, data and optimizer, in one run.

* ``plain``: fp32, NCHW, ``loss.backward(); optimizer.step()``: the usual first script;
* ``faceverify``: the same step as ``faceverify train``: channels-last, autocast in the
  chosen precision with the gradient scaler (fp16 on CUDA), ``zero_grad(set_to_none)``;
  optionally ``torch.compile``.

Both sides alternate rounds on identical random batches; medians are reported. On a GPU
machine: ``python benchmarks/train_throughput.py --device cuda --batch 256 --precision auto``.

Run:  python benchmarks/train_throughput.py [--device cpu] [--batch 64] [--size 64] [--width 64]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import timm
import torch
import torch.nn.functional as F

import faceverify.models.face_resnet  # noqa: F401  (registers face_resnet with timm)
from faceverify.device import resolve_device
from faceverify.train.setup import precision


def _model(width: int, classes: int, device: torch.device, channels_last: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    model = timm.create_model("face_resnet", num_classes=classes, width=width).to(device).train()
    return model.to(memory_format=torch.channels_last) if channels_last else model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--width", type=int, default=64, help="64 is the course network")
    parser.add_argument("--classes", type=int, default=4000)
    parser.add_argument("--steps", type=int, default=5, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"))
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    device = resolve_device(args.device)
    dtype, scaled = precision(args.precision, device)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, args.classes, (args.batch,), device=device)

    plain_model = _model(args.width, args.classes, device, channels_last=False)
    plain_opt = torch.optim.SGD(plain_model.parameters(), lr=0.1, momentum=0.9)

    def plain() -> None:
        plain_opt.zero_grad()
        F.cross_entropy(plain_model(x), y).backward()
        plain_opt.step()

    fast_model = _model(args.width, args.classes, device, channels_last=True)
    runner = torch.compile(fast_model) if args.compile else fast_model
    fast_opt = torch.optim.SGD(fast_model.parameters(), lr=0.1, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=scaled)
    x_cl = x.contiguous(memory_format=torch.channels_last)

    def fast() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = runner(x_cl)
        loss = F.cross_entropy(logits.float(), y)
        fast_opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(fast_opt)
        scaler.update()

    def rate(step: Callable[[], None]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(args.steps):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return args.steps * args.batch / (time.perf_counter() - started)

    for step in (plain, fast):  # warm-up: kernel selection, compilation
        step()
    plains, fasts = [], []
    for _ in range(args.rounds):
        plains.append(rate(plain))
        fasts.append(rate(fast))
    base, ours = statistics.median(plains), statistics.median(fasts)
    params = sum(p.numel() for p in plain_model.parameters()) / 1e6
    label = "fp32" if dtype is None else str(dtype).removeprefix("torch.")
    print(
        f"face_resnet width {args.width} ({params:.1f}M params), {args.size}x{args.size}, "
        f"batch {args.batch}, "
        f"{device}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print(f"plain fp32 NCHW       {base:8.1f} img/s")
    print(f"faceverify ({label}, channels-last{', compiled' if args.compile else ''}) {ours:8.1f} img/s")
    print(f"ratio                 {ours / base:8.2f}")


if __name__ == "__main__":
    main()
