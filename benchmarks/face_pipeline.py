"""Faces from photos: faceverify's torch port of dlib's network and pipeline against dlib's.

Two measurements in one run, on the shared photos (``../shared/faces``):

1. The embedding step alone, on the same 150×150 chips (cut by ``dlib.get_face_chip``):
   dlib's ``compute_face_descriptor`` one chip at a time and as one list (dlib batches
   16 internally), against faceverify's torch network at batch 1 and 32.
2. Photo to descriptors: decode, detect (HOG, upsample 1), 5 landmarks, align, embed.
   dlib's side is exactly what ``face_recognition.face_encodings(load_image_file(p))``
   does (HOG detector, 5-point predictor, ``compute_face_descriptor`` per face), run
   through dlib directly; ``face_recognition`` itself is timed too when it is installed.
   faceverify's side is ``load_image``, ``detect_faces``, ``align_faces`` and one batch
   per photo. Both run on the photos as they are (0.3-2.9 megapixels) and reduced to a
   longer side of 640 and 320 pixels: HOG's cost grows with the pixels, the
   descriptor's with the faces, so the smaller the photo, the more the descriptor counts.

Each side runs in its own worker process (dlib's and torch's thread pools keep
spinning after a call and slow whatever runs next in the same process), and rounds
alternate between the sides so that machine noise hits both alike. Each row gives the
median and the best round, each with its ratio to the first row: on a shared machine,
other work running at the same time slows torch's two threads far more than dlib's
single one (a parallel region waits for its descheduled thread), so the best round is
the better estimate of what each side can do; the load average is printed too. The
share of the CPU's fp32 peak is printed beside the network's best figures (0.77 GFLOP
per chip; pass --peak-gflops for this machine's peak).

Run:  python benchmarks/face_pipeline.py [--rounds 5] [--threads 2] [--passive-omp]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
from PIL import Image

from faceverify.decode import load_image
from faceverify.faces import dlib_files as files

PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
GFLOP_PER_CHIP = 0.77


EMBEDDING_TASKS = {
    "dlib compute_face_descriptor, 1": ("dlib", "descriptor_one"),
    "dlib compute_face_descriptor, list": ("dlib", "descriptor_list"),
    "faceverify torch net, batch 1": ("faceverify", "net_batch_1"),
    "faceverify torch net, batch 32": ("faceverify", "net_batch_32"),
}
PIPELINE_TASKS = {
    "dlib pipeline (as face_recognition)": ("dlib", "pipeline"),
    "face_recognition package": ("face_recognition", "pipeline"),
    "faceverify pipeline": ("faceverify", "pipeline"),
}


def _dlib_tasks(chips: np.ndarray, threads: int) -> dict[str, Callable[[list[Path]], int]]:
    import dlib

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(files.dlib_model_path(files.HOG_LANDMARKS)))
    recogniser = dlib.face_recognition_model_v1(str(files.dlib_model_path(files.RECOGNITION_NET)))

    def descriptor_one(_: list[Path]) -> int:
        for chip in chips[:8]:
            recogniser.compute_face_descriptor(chip)
        return 8

    def descriptor_list(_: list[Path]) -> int:
        recogniser.compute_face_descriptor(list(chips))
        return len(chips)

    def pipeline(paths: list[Path]) -> int:
        count = 0
        for path in paths:
            image = np.array(Image.open(path).convert("RGB"))  # face_recognition.load_image_file
            for box in detector(image, 1):
                recogniser.compute_face_descriptor(image, predictor(image, box), 1)
                count += 1
        return count

    return {"descriptor_one": descriptor_one, "descriptor_list": descriptor_list, "pipeline": pipeline}


def _faceverify_tasks(chips: np.ndarray, threads: int) -> dict[str, Callable[[list[Path]], int]]:
    import torch

    from faceverify.faces import align_faces, detect_faces
    from faceverify.models.dlib_resnet import chips_to_tensor, load_dlib_face_resnet

    torch.set_num_threads(threads)
    model = load_dlib_face_resnet(files.dlib_model_path(files.RECOGNITION_NET))

    def net(size: int) -> Callable[[list[Path]], int]:
        def run(_: list[Path]) -> int:
            with torch.inference_mode():
                for start in range(0, len(chips), size):
                    model(chips_to_tensor(chips[start : start + size]))
            return len(chips)

        return run

    def pipeline(paths: list[Path]) -> int:
        count = 0
        for path in paths:
            image = np.asarray(load_image(path))
            faces = detect_faces(image, upsample=1)
            if faces:
                with torch.inference_mode():
                    count += len(model(chips_to_tensor(align_faces(image, faces))))
        return count

    return {"net_batch_1": net(1), "net_batch_32": net(32), "pipeline": pipeline}


def _face_recognition_tasks(chips: np.ndarray, threads: int) -> dict[str, Callable[[list[Path]], int]]:
    import face_recognition

    def pipeline(paths: list[Path]) -> int:
        return sum(len(face_recognition.face_encodings(face_recognition.load_image_file(p))) for p in paths)

    return {"pipeline": pipeline}


_SIDES = {"dlib": _dlib_tasks, "faceverify": _faceverify_tasks, "face_recognition": _face_recognition_tasks}


def _serve(conn: Connection, side: str, chips_file: str, threads: int) -> None:
    """A worker: builds one side, then times the tasks it is sent until told to stop."""
    tasks = _SIDES[side](np.load(chips_file), threads)
    conn.send("ready")
    while (message := conn.recv()) is not None:
        task, paths = message
        started = time.perf_counter()
        count = tasks[task](paths)
        conn.send(count / (time.perf_counter() - started))


class _Workers:
    def __init__(self, sides: list[str], chips_file: Path, threads: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.conns: dict[str, Connection] = {}
        self.procs = []
        for side in sides:
            parent, child = context.Pipe()
            proc = context.Process(target=_serve, args=(child, side, str(chips_file), threads), daemon=True)
            proc.start()
            self.conns[side], self.procs = parent, [*self.procs, proc]
        for conn in self.conns.values():
            conn.recv()

    def rate(self, side: str, task: str, paths: list[Path]) -> float:
        self.conns[side].send((task, paths))
        return float(self.conns[side].recv())

    def close(self) -> None:
        for conn in self.conns.values():
            conn.send(None)
        for proc in self.procs:
            proc.join()


def _alternate(
    workers: _Workers, tasks: dict[str, tuple[str, str]], paths: list[Path], rounds: int
) -> dict[str, list[float]]:
    for side, task in tasks.values():  # warm-up: allocator, oneDNN kernel selection
        workers.rate(side, task, paths)
    rates: dict[str, list[float]] = {name: [] for name in tasks}
    for _ in range(rounds):
        for name, (side, task) in tasks.items():
            rates[name].append(workers.rate(side, task, paths))
    return rates


def _table(title: str, rates: dict[str, list[float]], peak: float | None) -> None:
    baseline = next(iter(rates))
    base_median, base_best = statistics.median(rates[baseline]), max(rates[baseline])
    print(f"\n{title}")
    print(f"  {'faces/s':>46} {'ratio':>6} {'best':>7} {'ratio':>6} {'best, % of fp32 peak':>21}")
    for name, values in rates.items():
        median, best = statistics.median(values), max(values)
        share = f"{100 * best * GFLOP_PER_CHIP / peak:.0f}%" if peak and "net" in name else ""
        print(
            f"  {name:36} {median:9.1f} {median / base_median:5.2f}x {best:7.1f} {best / base_best:5.2f}x "
            f"{share:>21}"
        )


def _reduced(photos: list[Path], folder: Path, side: int) -> list[Path]:
    out = []
    for i, path in enumerate(photos):
        image = load_image(path)
        image.thumbnail((side, side), Image.Resampling.LANCZOS)
        out.append(folder / f"{i}.png")  # lossless: both sides decode the same pixels
        image.save(out[-1])
    return out


def _dlib_chips(photos: list[Path]) -> np.ndarray:
    import dlib

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(files.dlib_model_path(files.HOG_LANDMARKS)))
    chips = []
    for path in photos:
        image = np.asarray(load_image(path))
        for box in detector(image, 0):
            chips.append(dlib.get_face_chip(image, predictor(image, box), size=150, padding=0.25))
    return np.stack(chips)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--peak-gflops", type=float, default=157.0, help="fp32 peak of this CPU")
    parser.add_argument(
        "--passive-omp",
        action="store_true",
        help="OMP_WAIT_POLICY=PASSIVE in the workers: idle OpenMP threads sleep instead of "
        "spinning, which halves torch's batch-1 time on a machine shared with other work",
    )
    args = parser.parse_args()
    if args.passive_omp:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"  # read when a spawned worker loads OpenMP

    import dlib
    import torch

    photos = sorted(p for p in PHOTOS.glob("**/*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    faces = _dlib_chips(photos)
    sides = ["dlib", "faceverify"]
    try:
        import face_recognition  # noqa: F401

        sides.insert(1, "face_recognition")
    except ImportError:
        del PIPELINE_TASKS["face_recognition package"]
    print(f"load average at the start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(
        f"{len(photos)} photos with {len(faces)} faces; torch {torch.__version__} with {args.threads} "
        f"threads, dlib {dlib.__version__}; each side in its own process; {args.rounds} rounds; "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'default')}"
    )
    if "face_recognition" not in sides:
        print("face_recognition is not installed: its steps are timed through dlib directly")
    with tempfile.TemporaryDirectory() as tmp:
        chips_file = Path(tmp) / "chips.npy"
        np.save(chips_file, np.concatenate([faces] * 2)[:32])
        sets = [("photos as they are", photos)]
        for side in (640, 320):
            folder = Path(tmp) / str(side)
            folder.mkdir()
            sets.append((f"photos reduced to {side} px", _reduced(photos, folder, side)))
        workers = _Workers(sides, chips_file, args.threads)
        try:
            rates = _alternate(workers, EMBEDDING_TASKS, [], args.rounds)
            _table("Embedding step (32 chips cut by dlib.get_face_chip)", rates, args.peak_gflops)
            for label, paths in sets:
                rates = _alternate(workers, PIPELINE_TASKS, paths, args.rounds)
                _table(f"Photo to descriptors, {label} ({len(paths)} photos, HOG upsample 1)", rates, None)
        finally:
            workers.close()
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f} (figures are noisy when other work runs)")


if __name__ == "__main__":
    main()
