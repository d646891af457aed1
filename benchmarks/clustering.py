"""Grouping a photo library by person: quality on real faces, adding photos, and 100k faces.

Three sections (``--sections``; all by default), each on :class:`faceverify.cluster.Library`
with dlib's network (``dlib_resnet_v1``, ONNX Runtime):

* ``quality``: the library of ``../shared/photos-dev/people`` (733 photos of 200 people,
  the folder is the label) scanned and grouped with the default thresholds (from the
  model's verification threshold), scored with :func:`faceverify.evaluate.clusters.cluster_metrics`
  (every photo counted: one without an assigned face is a group of its own). Then the
  grouping threshold is moved around its default, in raw cosine (±0.005, ±0.01) and on the
  library-centred scale ``s = (cos - c) / (1 - c)`` (±0.025, ±0.05), where ``c`` is the
  run's ``common`` (the library's mean cosine between faces); each is a full regrouping of
  the same scanned faces (a change of thresholds forces one). Anchors on the same vectors
  (the faces the library groups, scored the same way): dlib-style chinese whispers at the
  default grouping threshold (the cosine of dlib's clustering distance 0.5), scikit-learn's
  HDBSCAN(min_cluster_size=2), and AgglomerativeClustering(average, cosine) both at the
  default threshold and at the best one found by sweeping against the labels (an oracle: no
  user can tune to labels they do not have).
* ``incremental``: a seeded 80% of photos-dev copied into a temporary tree, scanned and
  grouped; the other 20% copied in, scanned, and grouped by a run adding faces
  (``group()``); then a full run (``group(full=True)``) over the same library. Agreement is
  the BCubed F1 of one labelling against the other over every face (matched by photo path
  and box); each is also scored against the labels. "Kept" is the BCubed F1 of the 80%
  grouping against the same faces after adding: how much an adding run reshuffles.
* ``scale``: ``--faces`` face-like vectors (:mod:`faceverify.gallery.synthetic_vectors`,
  dim 128, ``--per-person`` photos per identity) written straight into a SQLite library's
  tables (one fake photo per face, status ``ok``, quality 1), then ``Library.group(full=True)``
  timed end to end (read, neighbours, grouping, writes), then ``--added`` more faces (half
  new photos of known identities, half new identities) and ``Library.group()`` timed.
  ``--lone-share`` makes that share of the faces people seen once (strangers in the
  background: faces a run leaves alone, which a run adding faces searches again). BCubed
  against the synthetic identities, the wall and CPU seconds of each step (read,
  neighbours, grouping, writes) and the peak resident memory of each run (``VmHWM``, reset
  before it where the kernel allows). Goals: 100k faces in at most 5 minutes, 1,000 added in
  at most 10 s, on 2 cores. ``--profile`` prints where the time goes. On a shared machine
  run it also with ``OMP_NUM_THREADS=1``: faiss's two OpenMP threads took twice as long as
  one while other work held a core.

Run:
    python benchmarks/clustering.py [--sections quality,incremental,scale] [--faces 100000]
        [--added 1000] [--per-person 5] [--lone-share 0.3] [--seed 0] [--profile] [--json FILE]
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import io
import json
import os
import pstats
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np

from faceverify.cluster import Library, Thresholds, open_library
from faceverify.evaluate.clusters import ClusterMetrics, bcubed, cluster_metrics

DEV = Path(__file__).resolve().parents[2] / "shared" / "photos-dev" / "people"
#: Grouping-threshold moves: raw cosine, and on the library-centred scale.
RAW_STEPS = (-0.01, -0.005, 0.005, 0.01)
CENTRED_STEPS = (-0.05, -0.025, 0.025, 0.05)
#: Thresholds the agglomerative anchor is swept over (cosine), against the labels.
ORACLE_SWEEP = np.round(np.arange(0.85, 0.9801, 0.0025), 4)


# ---- measuring ---------------------------------------------------------------------------


def reset_peak() -> None:
    """Reset the kernel's peak-RSS mark of this process (Linux; ignored where refused)."""
    with suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_mib(field: str = "VmHWM") -> float:
    """Peak resident memory of this process since start or :func:`reset_peak` (``VmRSS``:
    the current one), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def profiled(run: Callable[[], Any], show: bool, title: str) -> tuple[Any, dict[str, float]]:
    """Run ``run`` once: wall and CPU seconds, and the wall seconds of the library's stages
    (:func:`stage_times`); with ``show``, under cProfile, printing its top functions."""
    profile = cProfile.Profile() if show else None
    stages: dict[str, float] = {}
    started, cpu = time.perf_counter(), time.process_time()
    with stage_times(stages):
        if profile is not None:
            profile.enable()
        result = run()
        if profile is not None:
            profile.disable()
    stages = {"seconds": time.perf_counter() - started, "cpu_seconds": time.process_time() - cpu, **stages}
    if profile is not None:
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(18)
        print(f"\n  profile of {title} (by own time; profiling slows it down):")
        print("\n".join("    " + line for line in out.getvalue().splitlines()[4:] if line.strip()))
    return result, stages


#: The steps of ``Library.group`` timed by :func:`stage_times`, as the library module names them.
STAGES = {
    "read": ("_State.read",),
    "neighbours": ("nearest", "neighbours_of"),
    "grouping": ("group_faces",),
    "writes": ("_assign_ids",),
    "common": ("_common_level",),
}


@contextmanager
def stage_times(into: dict[str, float]) -> Iterator[None]:
    """Time the library's steps by wrapping the names ``faceverify.cluster.library`` calls
    (a benchmark's look inside; a step renamed there is simply not timed)."""
    from faceverify.cluster import library as module

    saved: list[tuple[Any, str, Any]] = []
    for stage, dotted in ((s, d) for s, names in STAGES.items() for d in names):
        *owner_path, name = dotted.split(".")
        owner: Any = module
        for part in owner_path:
            owner = getattr(owner, part, None)
        if owner is None or name not in vars(owner):
            continue
        original = vars(owner)[name]
        call = getattr(owner, name)

        def timed(*args: Any, _call: Any = call, _stage: str = stage, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return _call(*args, **kwargs)
            finally:
                into[_stage] = into.get(_stage, 0.0) + time.perf_counter() - started

        saved.append((owner, name, original))
        setattr(owner, name, staticmethod(timed) if isinstance(original, classmethod) else timed)
    try:
        yield
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


HEAD = (
    f"  {'run':<42} {'BCubed P':>8} {'R':>6} {'F1':>6}  {'pair P':>6} {'R':>6} {'F1':>6} "
    f"{'groups':>6} {'2+':>4} {'alone':>6}"
)


def scored(name: str, metrics: ClusterMetrics, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Print one table line for a labelled run and return its figures."""
    b, p = metrics.bcubed, metrics.pairwise
    print(
        f"  {name:<42} {b.precision:8.4f} {b.recall:6.4f} {b.f1:6.4f}  {p.precision:6.4f} {p.recall:6.4f} "
        f"{p.f1:6.4f} {metrics.groups:6d} {metrics.groups_of_two_or_more:4d} {metrics.unassigned:6.1%}",
        flush=True,
    )
    return {"run": name, **metrics.to_dict(), **(extra or {})}


# ---- anchors: other clusterings of the same vectors --------------------------------------


def chinese_whispers(
    vectors: np.ndarray, threshold: float, iterations: int = 100, seed: int = 0
) -> np.ndarray:
    """dlib's ``chinese_whispers_clustering``: an edge (weight 1) between faces at least
    ``threshold`` alike, self-loops included; ``iterations × n`` random picks, each node
    taking its neighbours' most common label (the smallest on ties, as dlib's ``std::map``)."""
    alike = vectors @ vectors.T >= threshold
    neighbours = [np.flatnonzero(row) for row in alike]
    labels = np.arange(len(vectors))
    for node in np.random.default_rng(seed).integers(0, len(vectors), iterations * len(vectors)).tolist():
        values, counts = np.unique(labels[neighbours[node]], return_counts=True)
        labels[node] = values[np.argmax(counts)]
    return labels


def agglomerative(vectors: np.ndarray, threshold: float) -> np.ndarray:
    from sklearn.cluster import AgglomerativeClustering

    model = AgglomerativeClustering(
        n_clusters=None, metric="cosine", linkage="average", distance_threshold=1.0 - threshold
    )
    return np.asarray(model.fit_predict(vectors))


def hdbscan(vectors: np.ndarray) -> np.ndarray:
    from sklearn.cluster import HDBSCAN

    return np.asarray(HDBSCAN(min_cluster_size=2, copy=True).fit_predict(vectors))  # -1: noise (alone)


def relabelled(export: dict[str, Any], labels: dict[int, int]) -> dict[str, Any]:
    """The export with each face's group replaced by ``labels`` (face id -> label; faces
    absent or alone in their label are unassigned, -1 is noise)."""
    sizes: dict[int, int] = {}
    for label in labels.values():
        sizes[label] = sizes.get(label, 0) + 1
    out = copy.deepcopy(export)
    for photo in out["photos"]:
        for face in photo["faces"]:
            label = labels.get(face["id"], -1)
            face["group"] = label if label >= 0 and sizes[label] > 1 else None
    return out


def library_vectors(lib: Library) -> tuple[np.ndarray, np.ndarray]:
    """``(face ids, unit vectors)`` of the faces a run groups (quality at least the minimum)."""
    with lib.store.sql_read() as db:
        rows = lib.sql.rows(db, "SELECT id, vector, quality FROM {faces} ORDER BY id")
    keep = [r for r in rows if float(r[2]) >= lib.min_quality]
    ids = np.array([int(r[0]) for r in keep], dtype=np.int64)
    vectors = np.stack([np.frombuffer(bytes(r[1]), dtype="<f4") for r in keep]).astype(np.float32)
    return ids, vectors


def anchors(lib: Library, export: dict[str, Any], root: Path, default: float) -> list[dict[str, Any]]:
    ids, vectors = library_vectors(lib)

    def score(name: str, labels: np.ndarray, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        mapping = dict(zip(ids.tolist(), np.asarray(labels).tolist()))
        return scored(name, cluster_metrics(relabelled(export, mapping), root), extra)

    rows = [score(f"chinese whispers at {default:.4g}", chinese_whispers(vectors, default))]
    try:
        import sklearn  # noqa: F401
    except ImportError:
        print("  (scikit-learn is not installed: its HDBSCAN and agglomerative anchors are left out)")
        return rows
    rows.append(score("HDBSCAN(min_cluster_size=2)", hdbscan(vectors)))
    rows.append(score(f"agglomerative average at {default:.4g}", agglomerative(vectors, default)))
    best: tuple[float, float, np.ndarray] | None = None
    for threshold in ORACLE_SWEEP.tolist():
        labels = agglomerative(vectors, threshold)
        mapping = dict(zip(ids.tolist(), labels.tolist()))
        f1 = cluster_metrics(relabelled(export, mapping), root).bcubed.f1
        if best is None or f1 > best[0]:
            best = (f1, threshold, labels)
    assert best is not None
    swept = f"{ORACLE_SWEEP[0]:.4g}..{ORACLE_SWEEP[-1]:.4g} step 0.0025"
    rows.append(
        score(
            f"agglomerative, best at {best[1]:.4g} (oracle)",
            best[2],
            {"threshold": best[1], "swept": swept},
        )
    )
    return rows


# ---- sections ----------------------------------------------------------------------------


@contextmanager
def library_in(folder: Path, model: Any) -> Iterator[Library]:
    """A new library in ``folder``, its gallery closed at the end."""
    lib = open_library(folder, model)
    try:
        yield lib
    finally:
        lib.gallery.close()


def quality_section(model: Any, args: argparse.Namespace) -> dict[str, Any]:
    print(f"\nquality: {DEV}", flush=True)
    with tempfile.TemporaryDirectory() as tmp, library_in(Path(tmp) / "gallery", model) as lib:
        started = time.perf_counter()
        scan = lib.scan(DEV)
        scan_s = time.perf_counter() - started
        print(f"  scan: {scan.summary()} in {scan_s:.1f} s", flush=True)
        report = lib.group(full=True)
        print(f"  group: {report.summary()}; common {report.common:.4f}\n{HEAD}", flush=True)
        export = lib.export()
        default, common = float(report.thresholds["group"]), report.common
        rows = [
            scored(
                f"library, default {default:.4g}",
                cluster_metrics(export, DEV),
                {"threshold": default, "report": report.to_dict()},
            )
        ]
        centred = (default - common) / (1 - common)
        moves = [("raw", d, default + d) for d in RAW_STEPS]
        moves += [("centred", d, common + (centred + d) * (1 - common)) for d in CENTRED_STEPS]
        for scale, step, raw in sorted(moves, key=lambda m: m[2]):
            moved = Library(lib.gallery, thresholds=Thresholds.from_group(raw))
            regrouped = moved.group(full=True)
            s = (raw - common) / (1 - common)
            rows.append(
                scored(
                    f"library {raw:.4f} ({scale} {step:+g}, s {s:.3f})",
                    cluster_metrics(moved.export(), DEV),
                    {"threshold": raw, "scale": scale, "step": step, "s": s, "report": regrouped.to_dict()},
                )
            )
        print(f"  anchors on the same {len(library_vectors(lib)[0])} vectors:", flush=True)
        rows += anchors(lib, export, DEV, default)
    return {
        "scan": scan.to_dict(),
        "scan_seconds": scan_s,
        "common": common,
        "s_default": centred,
        "runs": rows,
    }


def face_labels(export: dict[str, Any]) -> dict[tuple[str, str], Hashable]:
    """``(photo path relative to its tree, box) -> group`` (alone: a label of its own)."""
    out: dict[tuple[str, str], Hashable] = {}
    for photo in export["photos"]:
        path = "/".join(Path(photo["path"]).parts[-2:])
        for face in photo["faces"]:
            key = (path, json.dumps(face["box"], sort_keys=True))
            out[key] = ("alone", key) if face["group"] is None else face["group"]
    return out


def agreement(a: dict[tuple[str, str], Hashable], b: dict[tuple[str, str], Hashable]) -> float:
    common = sorted(set(a) & set(b))
    return bcubed([a[k] for k in common], [b[k] for k in common]).f1


def incremental_section(model: Any, args: argparse.Namespace) -> dict[str, Any]:
    files = sorted(DEV.glob("*/*.jpg"))
    order = np.random.default_rng(args.seed).permutation(len(files))
    first = sorted(files[i] for i in order[: round(0.8 * len(files))])
    rest = sorted(files[i] for i in order[round(0.8 * len(files)) :])
    counts = Counter(p.parent.name for p in first)
    once = sum(1 for c in counts.values() if c == 1)
    print(
        f"\nincremental: {len(first)} photos ({len(counts)} people, {once} of them in one photo only), "
        f"then {len(rest)} more (seed {args.seed})",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp, library_in(Path(tmp) / "gallery", model) as lib:
        tree = Path(tmp) / "people"
        copy_into(first, tree)
        lib.scan(tree)
        before = lib.group(full=True)
        print(f"  80%: {before.summary()}\n{HEAD}", flush=True)
        grouped_first = face_labels(lib.export())
        rows = [scored("80% only, full run", cluster_metrics(lib.export(), tree))]
        copy_into(rest, tree)
        scan = lib.scan(tree)
        added = lib.group()
        adding = lib.export()
        rows.append(
            scored("+20%, run adding faces", cluster_metrics(adding, tree), {"report": added.to_dict()})
        )
        full = lib.group(full=True)
        whole = lib.export()
        rows.append(scored("all, full run", cluster_metrics(whole, tree), {"report": full.to_dict()}))
    a, b = face_labels(adding), face_labels(whole)
    agree, kept = agreement(a, b), agreement(grouped_first, a)
    print(
        f"  second scan: {scan.summary()}\n"
        f"  adding run {added.seconds:.2f} s, full run {full.seconds:.2f} s; "
        f"agreement (BCubed F1, adding vs full, {len(set(a) & set(b))} faces) {agree:.4f}; "
        f"kept (80% grouping vs the same faces after adding) {kept:.4f}",
        flush=True,
    )
    return {
        "photos": [len(first), len(rest)],
        "people_in_one_photo": once,
        "runs": rows,
        "agreement_f1": agree,
        "kept_f1": kept,
    }


def copy_into(files: list[Path], tree: Path) -> None:
    """Copies: the tree is labelled as photos-dev is, by folder."""
    for path in files:
        target = tree / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)


def insert_faces(lib: Library, vectors: np.ndarray, first_id: int) -> float:
    """One fake photo and one face per vector, ids ``first_id``..., in one transaction;
    returns the seconds taken."""
    ids = range(first_id, first_id + len(vectors))
    box = json.dumps({"left": 40.0, "top": 40.0, "right": 100.0, "bottom": 100.0})
    landmarks = json.dumps({"scheme": "dlib5", "points": []})
    started = time.perf_counter()
    with lib.store.sql_write() as db:
        lib.sql.many(
            db,
            "INSERT INTO {photos} (id, path, sha256, size, mtime, width, height, status, reason, scanned) "
            "VALUES (?, ?, ?, 0, 0, 150, 150, 'ok', '', '-')",
            ((i, f"/synthetic/{i}.jpg", f"{i:064x}") for i in ids),
        )
        lib.sql.many(
            db,
            "INSERT INTO {faces} (id, photo_id, key, box, landmarks, score, quality, vector) "
            "VALUES (?, ?, ?, ?, ?, 1, 1, ?)",
            ((i, i, f"k{i}", box, landmarks, v.astype("<f4").tobytes()) for i, v in zip(ids, vectors)),
        )
    return time.perf_counter() - started


def synthetic_score(lib: Library, identity: np.ndarray) -> dict[str, float]:
    """BCubed of the library's groups against ``identity`` (indexed by face id - 1)."""
    with lib.store.sql_read() as db:
        rows = lib.sql.rows(db, "SELECT id, group_id FROM {faces} ORDER BY id")
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    groups = np.array([-i if r[1] is None else r[1] for i, r in zip(ids.tolist(), rows)], dtype=np.int64)
    return bcubed(groups.tolist(), identity[ids - 1].tolist()).to_dict()


def scale_section(model: Any, args: argparse.Namespace) -> dict[str, Any]:
    from faceverify.gallery.synthetic_vectors import FaceSpace

    per = args.per_person
    people = round(args.faces * (1 - args.lone_share) / per)
    lone = args.faces - people * per  # identities seen once: faces a run leaves alone
    new_people = args.added // (2 * per)
    known = args.added - new_people * per
    space = FaceSpace(128, seed=args.seed)
    centres = space.identities(people + lone + new_people, seed=1)
    identity = np.concatenate([np.repeat(np.arange(people), per), np.arange(people, people + lone)])
    extra = np.concatenate(
        [
            np.random.default_rng(3).integers(0, people, known),
            np.repeat(np.arange(people + lone, people + lone + new_people), per),
        ]
    )
    vectors = space.photos(centres[identity], seed=2)
    more = space.photos(centres[extra], seed=4)
    print(
        f"\nscale: {len(vectors):,} faces ({people:,} identities × {per}, {lone:,} seen once; dim 128), then "
        f"{len(more):,} more ({known} of known identities, {new_people * per} of {new_people} new)",
        flush=True,
    )
    out: dict[str, Any] = {"faces": len(vectors), "identities": people, "seen_once": lone, "added": len(more)}
    with tempfile.TemporaryDirectory() as tmp, library_in(Path(tmp) / "gallery", model) as lib:
        out["insert_seconds"] = insert_faces(lib, vectors, 1)
        for name, run, truth, goal in (
            ("full", lambda: lib.group(full=True), identity, "300 s at 100k faces"),
            ("add", lib.group, np.concatenate([identity, extra]), "10 s for 1,000 added to 100k"),
        ):
            if name == "add":
                insert_faces(lib, more, len(vectors) + 1)
            load, before = os.getloadavg()[0], peak_mib("VmRSS")
            reset_peak()
            report, times = profiled(run, args.profile, f"the {name} run")
            out[name] = {
                **times,
                "load": load,
                "rss_before_mib": before,
                "peak_mib": peak_mib(),
                "report": report.to_dict(),
                "bcubed": synthetic_score(lib, truth),
            }
            steps = ", ".join(f"{k} {times[k]:.1f}" for k in STAGES if k in times)
            print(
                f"  {name} run: {times['seconds']:.1f} s (goal {goal}; "
                f"CPU {times['cpu_seconds']:.1f} s; "
                f"load {load:.1f} on {os.cpu_count()} cores; {steps}), "
                f"peak RSS {out[name]['peak_mib']:.0f} MiB (from {before:.0f})\n    {report.summary()}; "
                f"BCubed {fmt(out[name]['bcubed'])}",
                flush=True,
            )
    return out


def fmt(score: dict[str, float]) -> str:
    return f"P {score['precision']:.4f} R {score['recall']:.4f} F1 {score['f1']:.4f}"


SECTIONS = {"quality": quality_section, "incremental": incremental_section, "scale": scale_section}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sections", default=",".join(SECTIONS), help="comma-separated: " + ", ".join(SECTIONS)
    )
    parser.add_argument("--faces", type=int, default=100_000, help="faces of the scale section")
    parser.add_argument("--added", type=int, default=1_000, help="faces added after the full run")
    parser.add_argument("--per-person", type=int, default=5, help="photos per synthetic identity")
    parser.add_argument(
        "--lone-share", type=float, default=0.0, help="share of the scale faces of people seen once"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true", help="profile the scale section's runs")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    chosen = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    if {"quality", "incremental"} & set(chosen) and not DEV.is_dir():
        parser.error(f"{DEV} is not there; run the scale section alone (--sections scale)")

    import faceverify

    print(
        f"load average at the start: {os.getloadavg()} on {os.cpu_count()} cores; {time.ctime()}", flush=True
    )
    model = faceverify.build_model("dlib_resnet_v1")
    results = {name: SECTIONS[name](model, args) for name in chosen}
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
