"""Detectors end to end: photos/s, where the time goes and which faces each detector finds.

For each photo set, face_recognition's pipeline (dlib HOG upsample 1 on the full photo,
5-point landmarks, ``compute_face_descriptor`` per face: the "dlib pipeline (as
face_recognition)" of ``face_pipeline.py``) against faceverify's (``load_image``,
``detect_faces``, ``align_faces``, one ONNX Runtime batch of ``dlib_resnet_v1`` per photo)
with each detector setting. Every setting runs in its own worker process (thread pools
of dlib, torch and ONNX Runtime keep spinning after a call and would slow the next
setting in a shared process) and rounds alternate between settings. Each stage is timed
with ``perf_counter`` inside the worker: decode, detect (with the 5 landmarks), align (the
chips), embed (normalisation and the network). ``cnn`` (dlib's own CNN) runs on the first
few photos of each set only.

Sets: ``../shared/faces`` (0.3-2.9 MP), ``../shared/photos-dev/people`` (733 photos,
150×150) and photos of ``../shared/faces`` resized with PIL's LANCZOS filter to 1, 4 and
12 megapixels (aspect kept, saved as JPEG quality 95; most are upscaled).

Faces found: a face counts as found by a setting when one of its boxes overlaps it with
IoU >= 0.3; the faces of a photo are the boxes all settings found there, merged greedily
at the same IoU. 0.3, not the usual 0.5: the detectors draw their boxes differently (HOG's
are about 1.1× as wide as the CNN's and placed otherwise), so on photos-dev the boxes two
detectors put on one face overlap with IoU 0.69 at the median but 0.41 at worst, while
boxes of two different faces hardly overlap at all.

Run:  python benchmarks/detectors.py [--rounds 2] [--sets faces,dev,mp] [--cnn-photos 4]
      [--extra] [--skip "faceverify cnn up0;faceverify mmod up1"] [--json FILE]

``--extra`` adds candidates for goals the plain settings miss: HOG upsample 1 with
``mmod`` upsample 1 only for photos HOG finds nothing in, HOG upsample 0, and ``mmod``
upsample 0 on photos reduced to 800 px. On photos-dev the run also scores the pairs as
``faceverify evaluate`` does (the largest face; cosine; -1 where a photo has no face).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from face_pipeline import PHOTOS

from faceverify.decode import load_image
from faceverify.faces import dlib_files as files

DEV = PHOTOS.parent / "photos-dev" / "people"
IOU = 0.3
FR = "face_recognition (dlib HOG up1)"
#: name: (side, detector, upsample); cnn runs on a subset only
SETTINGS = {
    FR: ("dlib", "hog", 1),
    "faceverify hog up1": ("faceverify", "hog", 1),
    "faceverify mmod up0": ("faceverify", "mmod", 0),
    "faceverify mmod up1": ("faceverify", "mmod", 1),
    "faceverify hog up2": ("faceverify", "hog", 2),  # photos-dev only (goal iii)
    "faceverify cnn up0": ("faceverify", "cnn", 0),
    "faceverify cnn up1": ("faceverify", "cnn", 1),  # photos-dev only: its faces are ~60 px
    # candidates for goals the settings above miss (--extra)
    "faceverify hog up1, else mmod up1": ("faceverify", "hog>mmod", 1),
    "faceverify hog up0": ("faceverify", "hog", 0),
    "faceverify mmod up0, max_side 800": ("faceverify", "mmod", 0, 800),
}
STAGES = ("decode", "detect", "align", "embed")


def _dlib_run(detector_name: str, upsample: int, max_side: int = 0):  # type: ignore[no-untyped-def]
    import dlib

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(files.dlib_model_path(files.HOG_LANDMARKS)))
    recogniser = dlib.face_recognition_model_v1(str(files.dlib_model_path(files.RECOGNITION_NET)))

    def one(path: Path, times: dict[str, float]) -> list[tuple[float, ...]]:
        t0 = time.perf_counter()
        image = np.array(Image.open(path).convert("RGB"))  # face_recognition.load_image_file
        t1 = time.perf_counter()
        rects = detector(image, upsample)
        t2 = time.perf_counter()
        for rect in rects:  # face_recognition.face_encodings: landmarks, chip and net per face
            recogniser.compute_face_descriptor(image, predictor(image, rect), 1)
        t3 = time.perf_counter()
        times["decode"] += t1 - t0
        times["detect"] += t2 - t1
        times["embed"] += t3 - t2  # landmarks, chip and network: one dlib call per face
        return [(r.left(), r.top(), r.right(), r.bottom()) for r in rects], None

    return one


def _faceverify_run(detector_name: str, upsample: int, max_side: int = 1600):  # type: ignore[no-untyped-def]
    import faceverify
    from faceverify.faces import align_faces, detect_faces

    model = faceverify.build_model("dlib_resnet_v1", backend="auto")
    template = model.preprocess.face_template

    def one(path: Path, times: dict[str, float]) -> list[tuple[float, ...]]:
        t0 = time.perf_counter()
        image = np.asarray(load_image(path))
        t1 = time.perf_counter()
        first = detector_name.split(">")[0]
        faces = detect_faces(image, detector=first, upsample=upsample, max_side=max_side)
        if not faces and ">" in detector_name:  # a fallback for photos the first finds nothing in
            faces = detect_faces(
                image, detector=detector_name.split(">")[1], upsample=upsample, max_side=max_side
            )
        t2 = time.perf_counter()
        vector = None
        if faces:
            chips = align_faces(image, faces, template)
            t3 = time.perf_counter()
            batch = np.stack([model.prepare(Image.fromarray(chip)) for chip in chips])
            vector = model.embed(batch)[0]  # the largest face: verification's choice
            t4 = time.perf_counter()
        else:
            t3 = t4 = t2
        times["decode"] += t1 - t0
        times["detect"] += t2 - t1
        times["align"] += t3 - t2
        times["embed"] += t4 - t3
        return [face.box for face in faces], vector

    return one


def _serve(conn: Connection, side: str, *setting: object) -> None:
    """A worker for one setting: times the photo lists it is sent until told to stop."""
    one = (_dlib_run if side == "dlib" else _faceverify_run)(*setting)
    conn.send("ready")
    while (paths := conn.recv()) is not None:
        times = dict.fromkeys(STAGES, 0.0)
        started = time.perf_counter()
        found = [one(Path(p), times) for p in paths]
        conn.send((time.perf_counter() - started, times, [f[0] for f in found], [f[1] for f in found]))


class Workers:
    def __init__(self, names: list[str]) -> None:
        context = multiprocessing.get_context("spawn")
        self.conns: dict[str, Connection] = {}
        self.procs = []
        for name in names:
            parent, child = context.Pipe()
            proc = context.Process(target=_serve, args=(child, *SETTINGS[name]), daemon=True)
            proc.start()
            self.conns[name] = parent
            self.procs.append(proc)
            parent.recv()  # one at a time: loading the models on 2 cores

    def run(self, name: str, paths: list[Path]) -> tuple[float, dict[str, float], list[list[tuple]], list]:
        self.conns[name].send([str(p) for p in paths])
        return self.conns[name].recv()  # type: ignore[no-any-return]

    def close(self) -> None:
        for conn in self.conns.values():
            conn.send(None)
        for proc in self.procs:
            proc.join()


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0]) + 1
    h = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def _found(box: tuple[float, ...], boxes: list[tuple[float, ...]]) -> bool:
    return any(iou(box, other) >= IOU for other in boxes)


def _merged(boxes: list[tuple[float, ...]]) -> list[tuple[float, ...]]:
    """One box per face: the union of boxes, merged greedily at IoU >= IOU."""
    faces: list[tuple[float, ...]] = []
    for box in boxes:
        if not _found(box, faces):
            faces.append(box)
    return faces


def time_set(
    workers: Workers, names: list[str], paths: list[Path], subset: dict[str, int], rounds: int
) -> tuple[
    dict[str, list[float]], dict[str, dict[str, float]], dict[str, list[list[tuple]]], dict[str, list]
]:
    """Alternating rounds; photos/s per round, stage seconds summed over rounds, boxes."""
    rates: dict[str, list[float]] = {n: [] for n in names}
    stages: dict[str, dict[str, float]] = {n: dict.fromkeys(STAGES, 0.0) for n in names}
    boxes: dict[str, list[list[tuple]]] = {}
    vectors: dict[str, list] = {}
    for name in names:  # warm-up (ONNX Runtime's first runs, allocator) on two photos
        workers.run(name, paths[:2])
    for r in range(rounds):
        for name in names:
            use = paths[: subset.get(name, len(paths))]
            if name in subset and r > 0:
                continue  # the slow cnn: one round
            wall, times, found, found_vectors = workers.run(name, use)
            rates[name].append(len(use) / wall)
            for stage in STAGES:
                stages[name][stage] += times[stage]
            boxes[name], vectors[name] = found, found_vectors
    return rates, stages, boxes, vectors


def speed_table(title: str, names: list[str], rates, stages, counts: dict[str, int]) -> list[str]:  # type: ignore[no-untyped-def]
    base = statistics.median(rates[FR]) if FR in rates else None
    lines = [
        f"**{title}**",
        "",
        "| pipeline | photos | photos/s median | × face_recognition | best "
        "| decode | detect | align | embed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        median, best = statistics.median(rates[name]), max(rates[name])
        total = sum(stages[name].values()) or 1.0
        share = [f"{100 * stages[name][s] / total:.0f}%" for s in STAGES]
        if name == FR:
            share[3] = f"{share[3]} (landmarks+chip+net)"
            share[2] = "-"
        ratio = f"{median / base:.2f}" if base else "-"
        lines.append(
            f"| {name} | {counts[name]} | {median:.2f} | {ratio} | {best:.2f} | " + " | ".join(share) + " |"
        )
    return lines


def coverage(
    names: list[str], boxes: dict[str, list[list[tuple]]], subset: dict[str, int]
) -> tuple[list[str], dict[str, dict[str, int]]]:
    """Photos with a face, faces, and faces another setting found that this one missed."""
    lines = [
        "| detector | photos | photos with a face | faces | missed (found by another, IoU >= 0.3) |",
        "|---|---:|---:|---:|---:|",
    ]
    out: dict[str, dict[str, int]] = {}
    for name in names:
        n = len(boxes[name])
        photos = sum(1 for b in boxes[name] if b)
        faces = sum(len(b) for b in boxes[name])
        missed = 0
        for i in range(n):
            others = [b for o in names if o != name and i < len(boxes[o]) for b in boxes[o][i]]
            missed += sum(1 for face in _merged(others) if not _found(face, boxes[name][i]))
        out[name] = {"photos": n, "with_face": photos, "faces": faces, "missed": missed}
        lines.append(f"| {name} | {n} | {photos} | {faces} | {missed} |")
    return lines, out


def _centre_face(boxes: list[tuple[float, ...]], size: tuple[int, int]) -> tuple[float, ...] | None:
    """The labelled face of an LFW photo: the box holding the photo's centre (nearest)."""
    cx, cy = size[0] / 2, size[1] / 2
    holding = [b for b in boxes if b[0] <= cx <= b[2] and b[1] <= cy <= b[3]]
    if not holding:
        return None
    return min(holding, key=lambda b: ((b[0] + b[2]) / 2 - cx) ** 2 + ((b[1] + b[3]) / 2 - cy) ** 2)


def dev_against_hog(names: list[str], boxes, paths: list[Path]) -> list[str]:  # type: ignore[no-untyped-def]
    hog, hog2 = boxes["faceverify hog up1"], boxes.get("faceverify hog up2")
    either = sum(1 for i in range(len(paths)) if hog[i] or (hog2 and hog2[i]))
    lines = [
        f"HOG up1 or up2 finds a face in {either} of {len(paths)} photos.",
        "",
        "| detector | photos | HOG up1 finds a face, it none | it finds a face, HOG up1 none | "
        "HOG up1 finds the labelled (centre) face, it misses it |",
        "|---|---:|---:|---:|---:|",
    ]
    for name in names:
        if name == "faceverify hog up1":
            continue
        n = len(boxes[name])
        only_hog = sum(1 for i in range(n) if hog[i] and not boxes[name][i])
        only_it = sum(1 for i in range(n) if boxes[name][i] and not hog[i])
        missed = 0
        for i in range(n):
            centre = _centre_face(hog[i], Image.open(paths[i]).size)
            if centre is not None and not _found(centre, boxes[name][i]):
                missed += 1
        lines.append(f"| {name} | {n} | {only_hog} | {only_it} | {missed} |")
    return lines


def verification(names: list[str], vectors: dict[str, list], paths: list[Path]) -> list[str]:
    """photos-dev pairs scored as ``faceverify evaluate`` does: the largest face's cosine,
    -1 for a pair with a photo without a face (headline), or those pairs left out (usable)."""
    import csv

    from faceverify.evaluate.metrics import verification_metrics

    index = {str(p.relative_to(DEV)): i for i, p in enumerate(paths)}
    with open(DEV.parent / "pairs.csv", newline="") as f:
        rows = [
            (index[r["file_x"]], index[r["file_y"]], int(r["Decision"] == "Yes")) for r in csv.DictReader(f)
        ]
    lines = [
        "| detector | pairs | failed | AUC | AUC usable | TAR@FAR=1e-2 | TAR@FAR=1e-2 usable |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        if len(vectors.get(name) or []) != len(paths):  # cnn: a subset
            continue
        v = vectors[name]
        scores, ok = [], []
        for a, b, _ in rows:
            if v[a] is None or v[b] is None:
                scores.append(-1.0)
                ok.append(False)
            else:
                scores.append(float(v[a] @ v[b] / np.linalg.norm(v[a]) / np.linalg.norm(v[b])))
                ok.append(True)
        labels = np.array([r[2] for r in rows])
        head = verification_metrics(np.array(scores), labels)
        usable = verification_metrics(np.array(scores)[ok], labels[ok])
        lines.append(
            f"| {name} | {len(rows)} | {len(rows) - sum(ok)} | {head['roc_auc']:.5f} "
            f"| {usable['roc_auc']:.5f} | "
            f"{head['tar_at_far']['0.01']['tar']:.4f} | {usable['tar_at_far']['0.01']['tar']:.4f} |"
        )
    return lines


def _resized(photos: list[Path], folder: Path, megapixels: float) -> list[Path]:
    out = []
    for i, path in enumerate(photos):
        image = load_image(path)
        scale = (megapixels * 1e6 / (image.width * image.height)) ** 0.5
        size = (round(image.width * scale), round(image.height * scale))
        out.append(folder / f"{megapixels:g}mp_{i}.jpg")
        image.resize(size, Image.Resampling.LANCZOS).save(out[-1], quality=95)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sets", default="faces,dev,mp")
    parser.add_argument("--cnn-photos", type=int, default=4, help="photos per set for dlib's cnn")
    parser.add_argument("--dev-cnn-photos", type=int, default=60)
    parser.add_argument("--mp", default="1:6,4:6,12:3", help="megapixels:photos of the resized sets")
    parser.add_argument("--extra", action="store_true", help="also the candidate settings for missed goals")
    parser.add_argument("--skip", default="", help="settings to leave out, exact names separated by ';'")
    parser.add_argument("--json", type=Path, help="also write the figures and boxes here")
    args = parser.parse_args()

    photos = sorted(p for p in PHOTOS.glob("**/*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    dev = sorted(DEV.glob("*/*.jpg"))
    print(f"load average at the start: {os.getloadavg()} on {os.cpu_count()} cores; {time.ctime()}")
    main_names = [FR, "faceverify hog up1", "faceverify mmod up0", "faceverify mmod up1"]
    big_extra = ["faceverify hog up0", "faceverify mmod up0, max_side 800"] if args.extra else []
    dev_extra = ["faceverify hog up1, else mmod up1"] if args.extra else []
    report: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        sets: list[tuple[str, list[Path], list[str], dict[str, int]]] = []
        cnn = {"faceverify cnn up0": args.cnn_photos}
        if "faces" in args.sets.split(","):
            sets.append(
                ("../shared/faces as they are", photos, [*main_names, *big_extra, "faceverify cnn up0"], cnn)
            )
        if "dev" in args.sets.split(","):
            names = [*main_names, "faceverify hog up2", *dev_extra, "faceverify cnn up1"]
            sets.append(("photos-dev (150×150)", dev, names, {"faceverify cnn up1": args.dev_cnn_photos}))
        if "mp" in args.sets.split(","):
            for spec in args.mp.split(","):
                mp, count = float(spec.split(":")[0]), int(spec.split(":")[1])
                pick = [photos[round(i * len(photos) / count)] for i in range(count)]
                paths = _resized(pick, Path(tmp), mp)
                sets.append(
                    (
                        f"../shared/faces resized to {mp:g} MP",
                        paths,
                        [*main_names, *big_extra, "faceverify cnn up0"],
                        {"faceverify cnn up0": min(args.cnn_photos, 2)},
                    )
                )
        skip = set(args.skip.split(";")) - {""}
        sets = [(t, p, [n for n in names if n not in skip], sub) for t, p, names, sub in sets]
        needed = list(dict.fromkeys(n for s in sets for n in s[2]))
        workers = Workers(needed)
        try:
            for title, paths, names, subset in sets:
                load = os.getloadavg()[0]
                rates, stages, boxes, vectors = time_set(workers, names, paths, subset, args.rounds)
                counts = {n: min(len(paths), subset.get(n, len(paths))) for n in names}
                print()
                print(
                    "\n".join(
                        speed_table(
                            f"{title}: {len(paths)} photos, {args.rounds} rounds (cnn 1), load {load:.1f} -> "
                            f"{os.getloadavg()[0]:.1f}",
                            names,
                            rates,
                            stages,
                            counts,
                        )
                    )
                )
                print()
                lines, found = coverage(names, boxes, subset)
                print("\n".join(lines))
                if title.startswith("photos-dev"):
                    print()
                    print("\n".join(dev_against_hog(names, boxes, paths)))
                    print()
                    print("\n".join(verification(names[1:], vectors, paths)))
                report[title] = {
                    "rates": rates,
                    "stages": stages,
                    "found": found,
                    "boxes": {n: [[list(map(float, b)) for b in bs] for bs in v] for n, v in boxes.items()},
                    "paths": [str(p) for p in paths],
                }
        finally:
            workers.close()
    if args.json:
        args.json.write_text(json.dumps(report))
    print(f"\nload average at the end: {os.getloadavg()} ({time.ctime()})")


if __name__ == "__main__":
    main()
