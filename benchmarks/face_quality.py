"""Calibrate and check ``faceverify.faces.quality`` on ../shared/photos-dev.

For each photo, the labelled face (the box holding the photo's centre) is found with
``find_faces(pixels, FaceOptions())``. Then, with dlib's network (``dlib_resnet_v1``) and
its 0.6 distance threshold, each photo is degraded (Gaussian blur of several radii; the
photo shrunk so that the face's shorter side is 12-48 pixels, box and landmarks scaled
with it) and compared with the undegraded other photo of every genuine pair of
``pairs.csv``. The share of genuine matches kept (TAR under the degradation / TAR of the
sharp photos) is what the size and sharpness factors should say; the script fits their
pivots to it (least squares over a grid), then reports the score on the sharp faces and
on the degraded ones, with the module's pivots as they are.

Run:  python benchmarks/face_quality.py [--root ../shared/photos-dev]
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from faceverify.faces import quality as q
from faceverify.faces.align import align_landmarks
from faceverify.faces.detect import Face
from faceverify.photos import FaceOptions, find_faces

BLURS = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 6.0)
SIZES = (48, 40, 32, 28, 24, 20, 16, 12)


def centre_face(faces: list[Face], size: tuple[int, int]) -> Face | None:
    cx, cy = size[0] / 2, size[1] / 2
    holding = [f for f in faces if f.box[0] <= cx <= f.box[2] and f.box[1] <= cy <= f.box[3]]
    return (
        min(
            holding,
            key=lambda f: ((f.box[0] + f.box[2]) / 2 - cx) ** 2 + ((f.box[1] + f.box[3]) / 2 - cy) ** 2,
        )
        if holding
        else None
    )


def shrunk(image: Image.Image, face: Face, side: float) -> tuple[np.ndarray, Face]:
    """The photo reduced so that the face's shorter side is ``side`` pixels, and the face with it."""
    s = side / min(face.width, face.height)
    w, h = max(1, round(image.width * s)), max(1, round(image.height * s))
    sx, sy = w / image.width, h / image.height
    left, top, right, bottom = face.box
    box = (left * sx, top * sy, (right + 1) * sx - 1, (bottom + 1) * sy - 1)
    marks = (np.asarray(face.landmarks) + 0.5) * [sx, sy] - 0.5
    small = Face(box, face.score, marks, face.landmark_scheme, face.detector)
    return np.asarray(image.resize((w, h), Image.Resampling.BILINEAR)), small


def turned(face: Face, degrees: float) -> Face:
    """The face's landmarks with the head turned ``degrees`` further the way it already
    faces, in its own frame (roll undone, then redone): a rough head whose outer eye
    corners lie 0.6 half eye distances behind the inner ones and whose nose base stands
    one half eye distance in front of them."""
    marks = np.asarray(face.landmarks, dtype=np.float64)
    left, right = marks[2:4].mean(0), marks[0:2].mean(0)
    centre, axis = (left + right) / 2, right - left
    half = float(np.linalg.norm(axis)) / 2
    c, s = axis / (2 * half)
    frame = (marks - centre) @ np.array([[c, -s], [s, c]])  # x along the eye line
    depth = np.array([-0.6, 0.0, -0.6, 0.0, 1.0]) * half
    a = math.radians(degrees) * (1 if frame[4, 0] >= 0 else -1)
    frame[:, 0] = frame[:, 0] * math.cos(a) + depth * math.sin(a)
    back = frame @ np.array([[c, s], [-s, c]]) + centre
    return Face(face.box, face.score, back, face.landmark_scheme, face.detector)


def embed(net, rows: list[tuple[np.ndarray, Face]]) -> np.ndarray:  # type: ignore[no-untyped-def]
    import torch

    from faceverify.models.dlib_resnet import chips_to_tensor

    chips = np.stack([align_landmarks(px, np.asarray(f.landmarks)[None], "dlib150")[0] for px, f in rows])
    with torch.inference_mode():
        return torch.cat(
            [net(chips_to_tensor(chips[i : i + 128])) for i in range(0, len(chips), 128)]
        ).numpy()


def kept_share(emb: np.ndarray, sharp: np.ndarray, genuine: list[tuple[int, int]], base: float) -> float:
    d = [np.linalg.norm(emb[a] - sharp[b]) for a, b in genuine] + [
        np.linalg.norm(sharp[a] - emb[b]) for a, b in genuine
    ]
    return float(np.mean(np.array(d) < 0.6)) / base


def ramp(value: float, low: float, high: float) -> float:
    """The module's size and sharpness mapping: 0 at low, 1 at high, linear in the logarithm."""
    if value <= low:
        return 0.0
    return min(max(math.log(value / low) / math.log(high / low), 0.0), 1.0)


def fit(
    values: dict[object, np.ndarray], target: dict[object, float], lows, highs
) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
    best = (math.inf, 0.0, 0.0)
    for lo, hi in itertools.product(lows, highs):
        if hi <= lo:
            continue
        err = sum((np.mean([ramp(v, lo, hi) for v in values[k]]) - target[k]) ** 2 for k in target)
        best = min(best, (err, lo, hi))
    return best[1], best[2], math.sqrt(best[0] / len(target))


def pct(values, ps=(1, 5, 50, 95, 99)) -> str:  # type: ignore[no-untyped-def]
    return " ".join(f"p{p} {np.percentile(values, p):.3g}" for p in ps)


def timing(rows: list[tuple[np.ndarray, Face]], shared_faces: Path) -> None:
    """Microseconds per face_quality call: photos-dev faces, and ../shared/faces (large faces)."""
    import time

    large = []
    for path in sorted(shared_faces.glob("*/*/*.jp*g")):
        pixels = np.asarray(Image.open(path).convert("RGB"))
        large += [(pixels, f) for f in find_faces(pixels, FaceOptions())]
    for name, sample in (("photos-dev", rows), ("shared/faces", large)):
        if not sample:
            continue
        start = time.perf_counter()
        for _ in range(3):
            for px, f in sample:
                q.face_quality(px, f)
        per = (time.perf_counter() - start) / (3 * len(sample)) * 1e6
        sides = np.median([min(f.width, f.height) for _, f in sample])
        print(
            f"face_quality on {name}: {per:.0f} us per face ({len(sample)} faces, median side {sides:.0f} px)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "photos-dev"
    )
    parser.add_argument(
        "--faces", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "faces"
    )
    args = parser.parse_args()
    from faceverify.faces.dlib_files import RECOGNITION_NET, dlib_model_path
    from faceverify.models.dlib_resnet import load_dlib_face_resnet

    paths = sorted((args.root / "people").glob("*/*.jpg"))
    images = [Image.open(p).convert("RGB") for p in paths]
    options = FaceOptions()
    found = [centre_face(find_faces(np.asarray(im), options), im.size) for im in images]
    keep = [i for i, f in enumerate(found) if f is not None]
    print(f"photos {len(paths)}, central face found in {len(keep)}")
    images = [images[i] for i in keep]
    faces: list[Face] = [found[i] for i in keep]  # type: ignore[misc]
    index = {str(paths[i].relative_to(args.root / "people")): k for k, i in enumerate(keep)}
    with open(args.root / "pairs.csv", newline="") as table:
        genuine = [
            (index[a], index[b])
            for a, b, same in itertools.islice(csv.reader(table), 1, None)
            if same == "Yes" and a in index and b in index
        ]
    net = load_dlib_face_resnet(dlib_model_path(RECOGNITION_NET)).eval()

    sharp_rows = [(np.asarray(im), f) for im, f in zip(images, faces)]
    sharp_emb = embed(net, sharp_rows)
    base = kept_share(sharp_emb, sharp_emb, genuine, 1.0)
    print(f"genuine pairs {len(genuine)}, TAR of the sharp photos at 0.6: {base:.3f}")
    conditions: dict[object, list[tuple[np.ndarray, Face]]] = {("blur", 0.0): sharp_rows}
    for r in BLURS:
        conditions[("blur", r)] = [
            (np.asarray(im.filter(ImageFilter.GaussianBlur(r))), f) for im, f in zip(images, faces)
        ]
    for n in SIZES:
        conditions[("size", n)] = [shrunk(im, f, n) for im, f in zip(images, faces)]
    share, qual = {}, {}
    for cond, rows in conditions.items():
        share[cond] = kept_share(embed(net, rows), sharp_emb, genuine, base)
        qual[cond] = [q.face_quality(px, f) for px, f in rows]

    print(
        "\n| condition | matches kept | size p50 | sharpness p5 / p50 / p95 | score p1 / p50 / p99 ", end=""
    )
    print("| passing |")
    print("|---|---|---|---|---|---|")
    for cond, qs in qual.items():
        s = np.array([x.score for x in qs])
        sh = np.array([x.sharpness for x in qs])
        print(
            f"| {cond[0]} {cond[1]:g} | {share[cond]:.3f} | {np.median([x.size for x in qs]):.0f} | "
            f"{np.percentile(sh, 5):.3g} / {np.median(sh):.3g} / {np.percentile(sh, 95):.3g} | "
            f"{np.percentile(s, 1):.2f} / {np.median(s):.2f} / {np.percentile(s, 99):.2f} | "
            f"{np.mean(s >= q.MIN_QUALITY):.1%} |"
        )

    blur = {c: np.array([x.sharpness for x in qual[c]]) for c in qual if c[0] == "blur"}
    size = {c: np.array([x.size for x in qual[c]]) for c in qual if c[0] == "size"}
    size[("size", "sharp")] = np.array([x.size for x in qual[("blur", 0.0)]])
    share[("size", "sharp")] = 1.0
    lo, hi, rms = fit(
        blur, {c: min(share[c], 1.0) for c in blur}, np.geomspace(0.25, 4, 33), np.geomspace(4, 64, 33)
    )
    print(
        f"\nsharpness pivots fitted: ({lo:.3g}, {hi:.3g}), rms error {rms:.3f}; module: {q.SHARPNESS_PIVOTS}"
    )
    lo, hi, rms = fit(
        size, {c: min(share[c], 1.0) for c in size}, np.arange(4, 16.5, 0.5), np.arange(16, 48.5, 1)
    )
    print(f"size pivots fitted: ({lo:.3g}, {hi:.3g}), rms error {rms:.3f}; module: {q.SIZE_PIVOTS}")

    sharp_q = qual[("blur", 0.0)]
    scores = np.array([x.score for x in sharp_q])
    print(
        f"\nsharp central faces: {np.mean(scores >= q.MIN_QUALITY):.1%} of {len(scores)} reach MIN_QUALITY "
        f"{q.MIN_QUALITY}; score {pct(scores)}"
    )
    for name in ("size", "sharpness", "detector", "yaw"):
        print(f"  {name}: {pct([getattr(x, name) for x in sharp_q])}")
    for deg in (30, 45, 60, 75, 90):
        more = [q.face_quality(px, turned(f, deg)) for px, f in sharp_rows]
        print(
            f"landmarks turned {deg} deg more: yaw {pct([x.yaw for x in more], (5, 50, 95))}, "
            f"passing {np.mean([x.score >= q.MIN_QUALITY for x in more]):.1%}"
        )
    for r in (2.0, 4.0, 6.0):
        again = [find_faces(np.asarray(im.filter(ImageFilter.GaussianBlur(r))), options) for im in images]
        redetected = [
            (np.asarray(im.filter(ImageFilter.GaussianBlur(r))), centre_face(fs, im.size))
            for im, fs in zip(images, again)
        ]
        s = np.array([q.face_quality(px, f).score for px, f in redetected if f is not None])
        print(
            f"blur {r:g} detected again: {len(s)} central faces found, "
            f"passing {np.mean(s >= q.MIN_QUALITY):.1%}, score {pct(s)}"
        )
    mono_blur = np.mean(
        [all(np.diff([blur[("blur", r)][i] for r in (0.0, *BLURS)]) < 0) for i in range(len(faces))]
    )
    mono_size = np.mean(
        [
            all(np.diff([ramp(size[("size", n)][i], *q.SIZE_PIVOTS) for n in SIZES[::-1]]) >= 0)
            for i in range(len(faces))
        ]
    )
    timing(sharp_rows, args.faces)
    print(
        f"sharpness falls with every blur step for {mono_blur:.1%} of faces; "
        f"the size factor never falls as faces grow for {mono_size:.1%}"
    )


if __name__ == "__main__":
    main()
