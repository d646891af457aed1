"""Bulk enrolment against enrolling one person at a time, in one run.

A folder of generated people (``--people`` sub-folders of ``--images`` random photos each)
is enrolled into a fresh embedded gallery twice per round: once by calling
``Gallery.enroll`` for each person (one embedding call per person, so batches as small as
a person's photos), once by ``Gallery.enroll_many`` (batches filled across people, one
transaction per person). Rounds alternate the two so that machine noise hits both alike;
the medians of people per second and their ratio are printed, with the forward passes
each made.

Run:  python benchmarks/bulk_enroll.py [--people 32] [--images 2] [--rounds 3] [--backend torch]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

import faceverify as fv
from faceverify.gallery.gallery import Gallery
from faceverify.gallery.sqlite import SQLiteStore


def _people(root: Path, people: int, images: int) -> Path:
    rng = np.random.default_rng(0)
    for person in range(people):
        folder = root / "people" / f"person{person:05d}"
        folder.mkdir(parents=True)
        for k in range(images):
            Image.fromarray(rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)).save(folder / f"{k}.png")
    return root / "people"


def _one_at_a_time(gallery: Gallery, folder: Path) -> None:
    for person in sorted(folder.iterdir()):
        gallery.enroll(person.name, sorted(person.iterdir()))


def _bulk(gallery: Gallery, folder: Path) -> None:
    gallery.enroll_many(folder, progress=False)


def _timed(model: Any, enrol: Any, folder: Path, gallery_dir: Path, people: int) -> tuple[float, int]:
    """People per second into a fresh gallery, and the forward passes made (0: not counted)."""
    passes: list[int] = []
    # ONNX Runtime's calls cannot be hooked; PyTorch modules' can
    hook = (
        model.register_forward_hook(lambda *_: passes.append(1))
        if isinstance(model, torch.nn.Module)
        else None
    )
    with SQLiteStore(gallery_dir) as store:
        started = time.perf_counter()
        enrol(Gallery(store, model), folder)
        rate = people / (time.perf_counter() - started)
        assert len(store.people()) == people
    if hook is not None:
        hook.remove()
    return rate, len(passes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=32)
    parser.add_argument("--images", type=int, default=2, help="photos per person")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", default="torch", choices=("torch", "onnxruntime"))
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        weights = root / "atto.safetensors"
        from safetensors.torch import save_file
        from timm import create_model

        save_file(create_model("convnext_atto", pretrained=False).state_dict(), str(weights))
        model: Any = fv.build_model(weights=weights, device="cpu", backend=args.backend)
        folder = _people(root, args.people, args.images)
        ways = {"one at a time": _one_at_a_time, "enroll_many": _bulk}
        timings: dict[str, list[float]] = {name: [] for name in ways}
        passes: dict[str, int] = {}
        for round_ in range(args.rounds):
            for name, enrol in ways.items():
                rate, passes[name] = _timed(model, enrol, folder, root / f"g{round_}-{name}", args.people)
                timings[name].append(rate)
        base = statistics.median(timings["one at a time"])
        print(f"{args.people} people x {args.images} photos, convnext_atto 224, {args.backend}, CPU")
        print("| way | people/s (median) | images/s | forward passes | ratio |")
        print("|---|---|---|---|---|")
        for name, values in timings.items():
            rate = statistics.median(values)
            counted = passes[name] or "-"
            print(f"| {name} | {rate:.2f} | {rate * args.images:.1f} | {counted} | {rate / base:.2f}x |")


if __name__ == "__main__":
    main()
