"""Evaluation runs: failed pairs counted in the headline, figures per group of a CSV column.

Every number is checked against one computed here by hand from embeddings made with
``embed_images`` directly, or against evaluating a group's rows on their own.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from faceverify import embed_images
from faceverify.errors import ConfigError
from faceverify.evaluate.pairs import read_pairs
from faceverify.evaluate.run import calibrate, evaluate
from faceverify.photos import FaceOptions

GROUPS = ("low", "high", "only_genuine")


def _pairwise_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """P(genuine scores above impostor) + half P(tie), over every genuine-impostor pair."""
    genuine, impostor = scores[labels == 1][:, None], scores[labels == 0][None, :]
    return float(((genuine > impostor) + 0.5 * (genuine == impostor)).mean())


def _hand_scores(model: Any, root: Path, rows: list[tuple[str, str, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Cosines of the rows from embed_images itself; -1.0 where an image did not embed."""
    images = sorted({p for a, b, _ in rows for p in (a, b)})
    result = embed_images(model, [str(root / p) for p in images], normalize=True)
    vectors = {images[i]: v for i, v in zip(result.indices, result.embeddings.astype(np.float64))}
    scores = [float(vectors[a] @ vectors[b]) if a in vectors and b in vectors else -1.0 for a, b, _ in rows]
    return np.array(scores), np.array([label for _, _, label in rows])


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG not really")
    return path


@pytest.fixture
def with_failures(identity_data: Path, broken: Path, tmp_path: Path) -> list[tuple[str, str, int]]:
    """The 55 generated pairs, then a genuine and an impostor pair with an unreadable image."""
    rows = [(a, b, int(y)) for a, b, y in (line.split() for line in (identity_data / "pairs.txt").open())]
    return [*rows, ("probes/p0/0.png", str(broken), 1), (str(broken), "probes/p3/1.png", 0)]


def _course_file(path: Path, rows: list[tuple[str, str, int]]) -> Path:
    path.write_text("".join(f"{a} {b} {y}\n" for a, b, y in rows))
    return path


def test_headline_counts_failed_pairs_as_non_matches(
    atto_model: Any, identity_data: Path, with_failures: list[tuple[str, str, int]], tmp_path: Path
) -> None:
    pairs = read_pairs(_course_file(tmp_path / "pairs.txt", with_failures), identity_data)
    report, scored = evaluate(atto_model, pairs=pairs, threshold=0.9)
    headline, usable = report["verification"], report["verification_usable"]
    assert (headline["pairs"], headline["genuine"], headline["impostor"], headline["failed"]) == (
        57,
        11,
        46,
        2,
    )
    assert (usable["pairs"], usable["genuine"], usable["impostor"]) == (55, 10, 45)
    assert report["failed_pairs"] == {"total": 2, "by_kind": {"unreadable": 2}, "score": -1.0}
    scores, labels = _hand_scores(atto_model, identity_data, with_failures)
    assert headline["roc_auc"] == pytest.approx(_pairwise_auc(scores, labels), abs=1e-9)
    assert usable["roc_auc"] == pytest.approx(_pairwise_auc(scores[:55], labels[:55]), abs=1e-9)
    assert headline["roc_auc"] < usable["roc_auc"]
    # the failed genuine pair is a false reject at any threshold, the failed impostor a true reject
    point = headline["operating_point"]
    assert point["frr"] == pytest.approx(((scores < 0.9) & (labels == 1)).sum() / 11)
    assert point["far"] == pytest.approx(((scores >= 0.9) & (labels == 0)).sum() / 46)
    assert point["frr"] > usable["operating_point"]["frr"]
    # the usable block is what an evaluation without those lines reports
    clean, _ = evaluate(
        atto_model, pairs=read_pairs(identity_data / "pairs.txt", identity_data), threshold=0.9
    )
    assert usable == {k: v for k, v in clean["verification"].items() if k != "failed"}
    assert clean["failed_pairs"] == {"total": 0, "by_kind": {}, "score": -1.0}
    assert scored is not None and len(scored.failed) == 2


def test_failures_by_kind_and_a_usable_block_with_nothing_left(
    atto_model: Any, identity_data: Path, with_failures: list[tuple[str, str, int]], tmp_path: Path
) -> None:
    """With detection on, the generated noise people have no face: every pair fails."""
    pairs = read_pairs(_course_file(tmp_path / "pairs.txt", with_failures), identity_data)
    report, _ = evaluate(atto_model, pairs=pairs, faces=FaceOptions(detect=True))
    # a pair is counted once, under the kind of its first failed image
    assert report["failed_pairs"]["by_kind"] == {"no_face": 56, "unreadable": 1}
    assert report["failed_pairs"]["total"] == report["verification"]["failed"] == 57
    assert report["verification"]["roc_auc"] == 0.5  # every pair tied at -1
    assert report["verification"]["operating_point"]["frr"] == 1.0
    usable = report["verification_usable"]
    assert (usable["pairs"], usable["roc_auc"], usable["eer"], usable["tar_at_far"]) == (0, None, None, None)
    assert usable["unmeasured"]["roc_auc"] == "no pairs"
    assert usable["operating_point"]["far"] is None and usable["operating_point"]["frr"] is None


def test_faceless_photos_lower_the_headline_on_real_faces(
    atto_model: Any, shared_faces: Path, tmp_path: Path
) -> None:
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((200, 200, 3), 200, dtype=np.uint8)).save(blank)
    people = {p.name: sorted(str(f) for f in p.iterdir()) for p in (shared_faces / "gallery").iterdir()}
    firsts = [photos[0] for photos in people.values()]
    rows = [(p[0], p[1], 1) for p in people.values() if len(p) > 1]
    rows += [(a, b, 0) for i, a in enumerate(firsts) for b in firsts[i + 1 :]]
    rows += [(firsts[0], str(blank), 1), (str(blank), firsts[1], 0)]
    pairs = read_pairs(_course_file(tmp_path / "pairs.txt", rows), "/")
    faces = FaceOptions(detect=True)
    report, _ = evaluate(atto_model, pairs=pairs, faces=faces)
    assert report["failed_pairs"]["by_kind"] == {"no_face": 2}
    images = sorted({p for a, b, _ in rows for p in (a, b)})
    result = embed_images(atto_model, images, normalize=True, faces=faces)
    vectors = {images[i]: v for i, v in zip(result.indices, result.embeddings.astype(np.float64))}
    scores = np.array([vectors[a] @ vectors[b] if str(blank) not in (a, b) else -1.0 for a, b, _ in rows])
    labels = np.array([y for _, _, y in rows])
    assert report["verification"]["roc_auc"] == pytest.approx(_pairwise_auc(scores, labels), abs=1e-9)
    assert report["verification"]["roc_auc"] < report["verification_usable"]["roc_auc"]


def test_calibration_chooses_on_usable_pairs_only(
    atto_model: Any, identity_data: Path, with_failures: list[tuple[str, str, int]], tmp_path: Path
) -> None:
    pairs = read_pairs(_course_file(tmp_path / "pairs.txt", with_failures), identity_data)
    clean = read_pairs(identity_data / "pairs.txt", identity_data)
    for far in (None, 0.1):
        with_failed, problems = calibrate(atto_model, pairs, far=far)
        without, _ = calibrate(atto_model, clean, far=far)
        assert (with_failed.threshold, with_failed.far, with_failed.frr) == (
            without.threshold,
            without.far,
            without.frr,
        )
    assert len(problems) == 2


def _group_of(a: str, b: str, label: int) -> str:
    """By the person of the first probe image: p0-p3 low, p4-p9 high, but p8's and p9's
    genuine pairs alone in a group of one class."""
    person = int(next(p for p in (a, b) if p.startswith("probes/")).split("/")[1][1:])
    if label == 1 and person >= 8:
        return "only_genuine"
    return "low" if person < 4 else "high"


def _group_csv(path: Path, rows: list[tuple[str, str, int]]) -> Path:
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["a", "b", "label", "group", "note"])
        writer.writerows([a, b, y, _group_of(a, b, y), "x"] for a, b, y in rows)
    return path


def test_figures_per_group_equal_each_group_evaluated_alone(
    atto_model: Any, identity_data: Path, with_failures: list[tuple[str, str, int]], tmp_path: Path
) -> None:
    pairs = read_pairs(_group_csv(tmp_path / "pairs.csv", with_failures), identity_data)
    report, _ = evaluate(atto_model, pairs=pairs, threshold=0.9, by=["group", "group"])
    groups = report["by"]["group"]
    assert list(report["by"]) == ["group"] and sorted(groups) == sorted(GROUPS)
    for key in ("pairs", "genuine", "impostor", "failed"):
        assert sum(g[key] for g in groups.values()) == report["verification"][key]
    assert groups["low"]["failed"] == 2  # both broken pairs start with p0 or the broken file
    for value in ("low", "high"):
        alone = [row for row in with_failures if _group_of(*row) == value]
        file = _group_csv(tmp_path / f"{value}.csv", alone)
        single, _ = evaluate(atto_model, pairs=read_pairs(file, identity_data), threshold=0.9)
        assert groups[value] == single["verification"]
    one_class = groups["only_genuine"]
    assert (one_class["genuine"], one_class["impostor"]) == (2, 0)
    assert one_class["roc_auc"] is None and one_class["accuracy_10fold"] is None
    reason = "needs both genuine and impostor pairs; has 2 genuine and 0 impostor"
    assert one_class["unmeasured"]["roc_auc"] == reason
    assert one_class["operating_point"]["far"] is None
    assert one_class["unmeasured"]["operating_point.far"] == "no impostor pairs to accept"
    scores, _ = _hand_scores(
        atto_model, identity_data, [r for r in with_failures if _group_of(*r) == "only_genuine"]
    )
    assert one_class["operating_point"]["frr"] == pytest.approx(float((scores < 0.9).mean()))


def test_grouping_by_a_column_the_file_lacks(
    atto_model: Any, identity_data: Path, with_failures: list[tuple[str, str, int]], tmp_path: Path
) -> None:
    pairs = read_pairs(_group_csv(tmp_path / "pairs.csv", with_failures), identity_data)
    with pytest.raises(ConfigError) as info:
        evaluate(atto_model, pairs=pairs, by=["age"])
    assert (
        str(info.value) == f"cannot group by 'age': no such column in '{pairs.source}'; columns: group, note"
    )
    course = read_pairs(identity_data / "pairs.txt", identity_data)
    with pytest.raises(ConfigError, match=r"'group': .* is a course pairs file, which has no extra columns"):
        evaluate(atto_model, pairs=course, by=["group"])
