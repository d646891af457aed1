"""Verification AUC on held-out synthetic people for each training recipe, in one run.

Every row trains on the same synthetic set (``faceverify.data.synthetic_faces``) and is scored on
the pairs of identities it never saw (``verification_pairs_val.txt``):

* ``softmax``, ``softmax + center``, ``arcface``, ``cosface``: the course ResNet from
  scratch, with the shipped defaults of each head (margin warm-up included);
* ``arcface, no warm-up, scale 30``: the usual ArcFace margin and scale from the first step (with
  the new unit-variance class rows, which no setting turns back), for comparison;
* ``arcface, scale 16 (fixed)``: the warm-up with a fixed scale instead of the automatic
  one (sqrt(2)·ln(identities - 1): 4.2 for 20 identities);
* ``dlib pretrained`` / ``dlib fine-tuned``: dlib's face network as shipped, then after
  ``configs/finetune_dlib.yaml``. Synthetic drawings are not faces: these two rows say that
  fine-tuning adapts the real network to a new domain without breaking it, not how well it
  verifies real people (see ``tests/models`` and the README for real photos).

The face_resnet rows run ``configs/small.yaml`` with its mild augmentation (``--augment
strong`` switches them to the strong profile; ``softmax, strong augmentation`` always uses
it), width 16 (``--width``) and batch 32. AUC is the last epoch's (no choice of the best epoch on the test
pairs). The runs are short and single-seed unless ``--seeds`` says otherwise: compare rows
within one run.

Run:  python benchmarks/train_heads.py [--identities 20 --images 10] [--epochs 6] [--dlib-epochs 3]
      [--seeds 0 1] [--no-dlib] [--skip NAME ...] [--augment strong|mild]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from faceverify.data.synthetic_faces import generate
from faceverify.train.config import load_config
from faceverify.train.loop import train

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

#: base.yaml's (and small.yaml's) mild augmentation, and the strong profile measured against it
MILD_AUGMENT = [
    "data.augment.random_resized_crop=[0.8, 1.0]",
    "data.augment.color_jitter=0.2",
    "data.augment.random_erasing=0",
    "loss.label_smoothing=0",
]
STRONG_AUGMENT = [
    "data.augment.random_resized_crop=[0.6, 1.0]",
    "data.augment.color_jitter=0.3",
    "data.augment.random_erasing=0.25",
    "loss.label_smoothing=0.1",
]
#: name, config file, overrides on top of the common ones
RECIPES: list[tuple[str, str, list[str]]] = [
    ("softmax", "small.yaml", ["loss.head=softmax"]),
    ("softmax + center", "small.yaml", ["loss.head=softmax", "loss.center_weight=0.003"]),
    ("arcface", "small.yaml", ["loss.head=arcface"]),
    ("cosface", "small.yaml", ["loss.head=cosface"]),
    (
        "arcface, no warm-up, scale 30",
        "small.yaml",
        ["loss.head=arcface", "loss.margin_warmup_epochs=0", "loss.scale=30"],
    ),
    ("arcface, scale 16 (fixed)", "small.yaml", ["loss.head=arcface", "loss.scale=16"]),
    ("softmax, strong augmentation", "small.yaml", ["loss.head=softmax", *STRONG_AUGMENT]),
]


def _run(config: str, overrides: list[str], out: Path) -> dict[str, Any]:
    started = time.perf_counter()
    metrics = train(load_config(CONFIGS / config, [*overrides, f"out={out}"]))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {
        "auc": metrics["val_auc"],
        "acc": metrics["train_acc"],
        "epochs": len(rows),
        "seconds": time.perf_counter() - started,
    }


def _pretrained_dlib_auc(root: Path) -> float:
    """dlib's network as shipped, scored like training scores (images as chips)."""
    from faceverify.compare.roc import roc_auc, roc_curve
    from faceverify.evaluate.pairs import read_pairs
    from faceverify.evaluate.scoring import score_pairs
    from faceverify.models.factory import load_network
    from faceverify.train.loop import chip_embedder

    model = chip_embedder(load_network("dlib_resnet_v1"))
    scored = score_pairs(model, read_pairs(root / "verification_pairs_val.txt", root), progress=False)
    return roc_auc(roc_curve(scored.scores, scored.labels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=30)
    parser.add_argument("--images", type=int, default=12, help="training images per identity")
    parser.add_argument("--held-out", type=int, default=12, help="people only in the test pairs")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--width", type=int, default=16, help="course ResNet width (small.yaml: 32)")
    parser.add_argument("--dlib-epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--no-dlib", action="store_true", help="skip the two dlib rows (slow on CPUs)")
    parser.add_argument("--skip", nargs="*", default=[], help="recipe names to leave out")
    parser.add_argument(
        "--augment",
        choices=("strong", "mild"),
        default="mild",
        help="augmentation of the face_resnet rows (the mild-augmentation row always uses mild)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as scratch:
        root = generate(
            Path(scratch) / "synth",
            identities=args.identities,
            images_per_identity=args.images,
            held_out=args.held_out,
            images_per_held_out=4,
            size=args.size,
            seed=1,
        )
        common = [
            f"data.root={root}",
            "data.workers=0",
            f"model.input_size={args.size}",
            f"model.args={{width: {args.width}}}",
            "batch_size=32",
            "early_stop.patience=null",
            *(STRONG_AUGMENT if args.augment == "strong" else MILD_AUGMENT),
        ]
        recipes = [r for r in RECIPES if r[0] not in args.skip]
        if not args.no_dlib:
            dlib = [
                "data.workers=0",
                f"data.root={root}",
                f"epochs={args.dlib_epochs}",
                "early_stop.patience=null",
            ]
            recipes.append(("dlib fine-tuned", "finetune_dlib.yaml", dlib))
        print(
            f"synthetic set: {args.identities} identities x {args.images} images ({args.size} px), "
            f"{args.held_out} held-out people x 4 images, seeds {args.seeds}"
        )
        print("| recipe | config and overrides | AUC held-out | train acc | epochs | s/run |")
        print("|---|---|---|---|---|---|")
        if not args.no_dlib:
            print(f"| dlib pretrained (no training) | - | {_pretrained_dlib_auc(root):.3f} | - | 0 | - |")
        for name, config, extra in recipes:
            is_dlib = config.startswith("finetune_dlib")
            runs = [
                _run(
                    config,
                    [*(extra if is_dlib else [*common, f"epochs={args.epochs}", *extra]), f"seed={seed}"],
                    Path(scratch) / f"{name}-{seed}".replace(" ", "_").replace(",", ""),
                )
                for seed in args.seeds
            ]
            auc = "/".join(f"{r['auc']:.3f}" for r in runs)
            if len(runs) > 1:
                auc += f" (mean {statistics.mean(r['auc'] for r in runs):.3f})"
            acc = statistics.mean(r["acc"] for r in runs)
            seconds = statistics.mean(r["seconds"] for r in runs)
            shown = " ".join(o for o in extra if not o.startswith(("data.", "loss.label")))
            print(f"| {name} | {config} {shown} | {auc} | {acc:.3f} | {runs[0]['epochs']} | {seconds:.0f} |")


if __name__ == "__main__":
    main()
