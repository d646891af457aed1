"""What faceverify's ONNX Runtime path costs on top of a bare ``InferenceSession``.

One graph (the one ``build_model(..., backend="onnxruntime")`` caches), one input, five
ways to run it, timed interleaved in one process:

* ``a bare default``: ``onnxruntime.InferenceSession(graph)`` with default options,
  fed the numpy array (``session.run(None, {input: x})``);
* ``b bare fv opts``: a bare session with the SessionOptions faceverify uses
  (``faceverify.runtime.onnx_backend.open_session``);
* ``c embed``: ``model.embed(x)`` on the :class:`OnnxEmbedder`, fed the same numpy array;
* ``d compute_emb``: ``compute_embedding(model, tensor)``: a preprocessed float tensor,
  so no decoding, only the input checks, batching and concatenation;
* ``e embed, spinning``: ``model.embed`` on an embedder built with
  ``FACEVERIFY_ORT_SPINNING=1`` (threads spin while a call runs, not after).

Every round runs each variant once (``--images`` images: ``--images // batch`` calls), in
forward order on even rounds and reversed on odd ones, so drift and one variant's
after-effects (threads still spinning after a call) hit all alike. After a warm-up the
table gives the median and p10/p90 per call and the ratio of medians to ``a``.

``--decoding`` adds a second table: ``embed_images`` on JPEG files (decoding threads
running beside inference, as the service and the CLI do) with faceverify's default
(spinning off), with ``FACEVERIFY_ORT_SPINNING=1``, and with ONNX Runtime's own spinning
(on, never stopped), each on the same graph. ``--busy N`` keeps N busy-looping processes
running throughout, to see each variant on cores shared with other work.

Threads: every session gets the machine's CPU count (``os.sched_getaffinity``) unless
``--threads``; OMP_NUM_THREADS and torch's threads are set to the same number.

Run:  .venv/bin/python benchmarks/ort_overhead.py [--model dlib_resnet_v1] [--rounds 15]
"""

from __future__ import annotations

import os
import sys

_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
for _arg, _next in zip(sys.argv, sys.argv[1:]):
    if _arg == "--threads":
        _CPUS = int(_next)
os.environ.setdefault("OMP_NUM_THREADS", str(_CPUS))  # before torch is imported

import argparse  # noqa: E402
import multiprocessing  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from faceverify.embed import compute_embedding, embed_images  # noqa: E402
from faceverify.runtime import onnx_backend  # noqa: E402
from faceverify.runtime.build import build_model  # noqa: E402

Variant = Callable[[], object]


def _model(name: str, folder: Path) -> Any:
    """The ONNX Runtime embedder: random ConvNeXt-Atto weights, or dlib's installed ones."""
    if name == "dlib_resnet_v1":
        return build_model(name, device="cpu", backend="onnxruntime")
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    network = timm.create_model(name, pretrained=False)
    path = folder / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(path))
    return build_model(weights=path, device="cpu", backend="onnxruntime")


def _bare_session(graph: Path, threads: int | None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(graph), sess_options=options, providers=["CPUExecutionProvider"])


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def _interleaved(
    variants: dict[str, Variant], calls: int, rounds: int, warmup: int
) -> dict[str, list[float]]:
    """Seconds per call of each variant, ``rounds`` samples, order alternating per round."""
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else reversed(names):
            fn = variants[name]
            started = time.perf_counter()
            for _ in range(calls):
                fn()
            samples[name].append((time.perf_counter() - started) / calls)
    return samples


def _table(title: str, samples: dict[str, list[float]], baseline: str, per: str = "call") -> None:
    base = statistics.median(samples[baseline])
    print(f"\n{title}")
    print(f"| variant | median ms/{per} | p10 | p90 | ratio to {baseline.split(' (')[0]} |")
    print("|---|---|---|---|---|")
    for name, values in samples.items():
        median = statistics.median(values)
        p10, p90 = _percentile(values, 10), _percentile(values, 90)
        print(f"| {name} | {median * 1e3:.2f} | {p10 * 1e3:.2f} | {p90 * 1e3:.2f} | {median / base:.3f} |")


def _check_same(model: Any, session: Any, tensor: torch.Tensor) -> float:
    """Largest difference between faceverify's outputs (``embed`` on the array,
    ``compute_embedding`` on the tensor) and a bare session's (expect 0)."""
    array = tensor.numpy()
    (bare,) = session.run(None, {session.get_inputs()[0].name: array})
    embedded = model.embed(array)
    computed = compute_embedding(model, tensor, batch_size=len(tensor))
    return max(float(np.abs(ours - bare).max()) for ours in (embedded, computed))


def _spinning_embedder(model: Any) -> Any:
    """The same graph in an embedder built the users' way with FACEVERIFY_ORT_SPINNING=1."""
    previous = os.environ.get("FACEVERIFY_ORT_SPINNING")
    os.environ["FACEVERIFY_ORT_SPINNING"] = "1"
    try:
        return onnx_backend.load_onnx_embedder(model.graph_file, threads=model.threads)
    finally:
        if previous is None:
            del os.environ["FACEVERIFY_ORT_SPINNING"]
        else:
            os.environ["FACEVERIFY_ORT_SPINNING"] = previous


def run_overhead(model: Any, args: argparse.Namespace) -> None:
    graph = model.graph_file
    spinning = _spinning_embedder(model)
    bare_default = _bare_session(graph, None)
    bare_fv = onnx_backend.open_session(graph, model.threads)
    name = bare_default.get_inputs()[0].name
    height, width = model.preprocess.input_size
    for batch in args.batches:
        tensor = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(batch))
        array = tensor.numpy()
        print(
            f"\nbatch {batch}: largest |faceverify - bare| = {_check_same(model, bare_default, tensor):.3g}"
        )
        variants: dict[str, Variant] = {
            "a bare default": partial(bare_default.run, None, {name: array}),
            "b bare fv opts": partial(bare_fv.run, None, {name: array}),
            "c embed": partial(model.embed, array),
            "d compute_emb": partial(compute_embedding, model, tensor, batch_size=batch),
            "e embed, spinning": partial(spinning.embed, array),
        }
        calls = max(1, args.images // batch)
        samples = _interleaved(variants, calls, args.rounds, args.warmup)
        _table(
            f"{model.name}, batch {batch} ({calls} calls per sample, {args.rounds} rounds)",
            samples,
            "a bare default",
        )


def _spin_on_session(graph: Path, threads: int) -> Any:
    """faceverify's options, but with ONNX Runtime's own spinning (on, never stopped)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    options.log_severity_level = 3
    return ort.InferenceSession(str(graph), sess_options=options, providers=["CPUExecutionProvider"])


def run_decoding(model: Any, args: argparse.Namespace, folder: Path) -> None:
    """embed_images on JPEG files, decoding threads beside inference, per spinning policy."""
    import copy

    from PIL import Image

    from faceverify.photos import FaceOptions

    rng = np.random.default_rng(0)
    files = []
    for i in range(args.files):
        # smooth noise compresses like a photo; 640x480 makes decoding + resizing real work
        small = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((640, 480), Image.Resampling.BILINEAR)
        path = folder / f"photo{i:03d}.jpg"
        image.save(path, quality=90)
        files.append(path)
    spin_on = copy.copy(model)
    spin_on._session = _spin_on_session(model.graph_file, model.threads)
    embedders = {
        "default (spinning off)": model,
        "FACEVERIFY_ORT_SPINNING=1": _spinning_embedder(model),
        "spin on, never stopped": spin_on,
    }
    options = FaceOptions(detect=False)
    for batch in args.decode_batches:
        variants: dict[str, Variant] = {
            label: partial(embed_images, m, files, batch_size=batch, faces=options)
            for label, m in embedders.items()
        }
        samples = _interleaved(variants, 1, args.decode_rounds, 1)
        per_image = {k: [v / len(files) for v in vs] for k, vs in samples.items()}
        _table(
            f"embed_images on {len(files)} JPEG files (640x480), batch {batch}, {args.decode_rounds} rounds",
            per_image,
            "default (spinning off)",
            per="image",
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default="convnext_atto", help="a timm name (random weights) or dlib_resnet_v1"
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--images", type=int, default=32, help="images per sample (calls = images // batch)")
    parser.add_argument(
        "--threads", type=int, default=_CPUS, help="threads for every runtime (default: CPUs)"
    )
    parser.add_argument(
        "--decoding", action="store_true", help="also time embed_images on files per spinning policy"
    )
    parser.add_argument("--files", type=int, default=64)
    parser.add_argument("--decode-batches", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--decode-rounds", type=int, default=7)
    parser.add_argument("--busy", type=int, default=0, help="busy-looping processes to run alongside")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    hogs = [multiprocessing.Process(target=_busy, daemon=True) for _ in range(args.busy)]
    for hog in hogs:
        hog.start()
    try:
        _run(args)
    finally:
        for hog in hogs:
            hog.terminate()
            hog.join()


def _busy() -> None:
    while True:
        pass


def _run(args: argparse.Namespace) -> None:
    import onnxruntime as ort

    print(
        f"onnxruntime {ort.__version__}, torch {torch.__version__}, {_CPUS} CPUs, threads {args.threads}, "
        f"{args.busy} busy processes alongside"
    )
    with tempfile.TemporaryDirectory() as tmp:
        model = _model(args.model, Path(tmp))
        print(f"graph: {model.graph_file}, faceverify's threads: {model.threads}")
        run_overhead(model, args)
        if args.decoding:
            run_decoding(model, args, Path(tmp))


if __name__ == "__main__":
    main()
