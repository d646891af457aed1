"""Clustering metrics: hand-computed cases, known limits, brute force and sklearn, and the
rules that turn a library export into scored photos."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import pair_confusion_matrix

from faceverify.errors import MetricsError
from faceverify.evaluate.clusters import ClusterScore, bcubed, central_face, cluster_metrics, pairwise


def _approx(score: ClusterScore, precision: float, recall: float, f1: float) -> None:
    assert score.precision == pytest.approx(precision, abs=1e-12)
    assert score.recall == pytest.approx(recall, abs=1e-12)
    assert score.f1 == pytest.approx(f1, abs=1e-12)


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def test_hand_computed_example() -> None:
    # group 1 = {a, a, b, b}, group 2 = {b}; label a has 2 items, b has 3
    truth, pred = ["a", "a", "b", "b", "b"], [1, 1, 1, 1, 2]
    # precision: four items see 2/4 of their group share their label, the lone b sees 1/1
    # recall: a's see 2/2, the two grouped b's 2/3, the lone b 1/3
    p, r = Fraction(4 * 1, 2 * 5) + Fraction(1, 5), (2 + Fraction(4, 3) + Fraction(1, 3)) / 5
    assert (p, r) == (Fraction(3, 5), Fraction(11, 15))
    _approx(bcubed(pred, truth), 0.6, 11 / 15, 0.66)
    # pairs: TP = a-a + b-b = 2; predicted = C(4,2) = 6; true = C(2,2) + C(3,2) = 4
    _approx(pairwise(pred, truth), 1 / 3, 1 / 2, 0.4)


def test_symmetric_example_and_label_types() -> None:
    truth, pred = ["a", "a", "a", "b", "b", "c"], [1, 1, 2, 2, 2, 3]
    # precision: 1 + 1 + 1/3 + 2/3 + 2/3 + 1 = 14/3; recall: 2/3 + 2/3 + 1/3 + 1 + 1 + 1 = 14/3
    _approx(bcubed(pred, truth), 7 / 9, 7 / 9, 7 / 9)
    # TP = 1 (a-a) + 1 (b-b) = 2; predicted = 1 + 3 = 4; true = 3 + 1 = 4
    _approx(pairwise(pred, truth), 0.5, 0.5, 0.5)
    # any hashable names the same groups: tuples, None, mixed types, numpy arrays
    odd = [("x", 1), ("x", 1), None, None, None, 3.5]
    assert bcubed(odd, truth) == bcubed(pred, truth)
    assert pairwise(np.array(pred), np.array(truth)) == pairwise(pred, truth)
    assert bcubed(np.array(pred), np.array([0, 0, 0, 7, 7, 9])) == bcubed(pred, truth)


def test_perfect_one_group_and_all_singletons() -> None:
    truth = ["a", "a", "a", "b", "b", "c"]  # sizes 3, 2, 1 of N = 6
    renamed = [10, 10, 10, "z", "z", None]
    _approx(bcubed(renamed, truth), 1.0, 1.0, 1.0)
    _approx(pairwise(renamed, truth), 1.0, 1.0, 1.0)
    # one group: precision = sum (n_c / N)^2 = (9 + 4 + 1) / 36; recall 1
    p = 14 / 36
    _approx(bcubed([0] * 6, truth), p, 1.0, _f1(p, 1.0))
    # pairs: (C(3,2) + C(2,2)) / C(6,2) = 4 / 15
    _approx(pairwise([0] * 6, truth), 4 / 15, 1.0, _f1(4 / 15, 1.0))
    # singletons: precision 1; recall = labels / N = 3 / 6; no predicted pairs -> precision 1
    _approx(bcubed(range(6), truth), 1.0, 0.5, _f1(1.0, 0.5))
    _approx(pairwise(list(range(6)), truth), 1.0, 0.0, 0.0)
    # no true pairs and no predicted pairs at all: nothing claimed, nothing missed
    _approx(pairwise([1, 2, 3], ["a", "b", "c"]), 1.0, 1.0, 1.0)
    # predicted pairs but no true ones: every claim wrong, nothing missed
    _approx(pairwise([1, 1, 1], ["a", "b", "c"]), 0.0, 1.0, 0.0)


def _slow_bcubed(pred: list[int], truth: list[int]) -> tuple[float, float]:
    precisions, recalls = [], []
    for i in range(len(pred)):
        group = [j for j in range(len(pred)) if pred[j] == pred[i]]
        label = [j for j in range(len(pred)) if truth[j] == truth[i]]
        both = [j for j in group if truth[j] == truth[i]]
        precisions.append(len(both) / len(group))
        recalls.append(len(both) / len(label))
    return sum(precisions) / len(pred), sum(recalls) / len(pred)


def test_random_labelings_match_brute_force_and_sklearn() -> None:
    rng = np.random.default_rng(3)
    for _ in range(40):
        n = int(rng.integers(2, 120))
        truth = rng.integers(0, rng.integers(1, 15), n).tolist()
        pred = rng.integers(0, rng.integers(1, 15), n).tolist()
        p, r = _slow_bcubed(pred, truth)
        _approx(bcubed(pred, truth), p, r, _f1(p, r))
        # sklearn counts ordered pairs: [[tn, fp], [fn, tp]], each twice
        (_, fp), (fn, tp) = pair_confusion_matrix(truth, pred)
        score = pairwise(pred, truth)
        assert score.precision == pytest.approx(tp / (tp + fp) if tp + fp else 1.0, abs=1e-12)
        assert score.recall == pytest.approx(tp / (tp + fn) if tp + fn else 1.0, abs=1e-12)
        if tp + fp and tp + fn:
            assert score.f1 == pytest.approx(2 * tp / (2 * tp + fp + fn), abs=1e-12)


def test_large_labelings() -> None:
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 5_000, 100_000)
    pred = np.where(rng.random(100_000) < 0.9, truth, rng.integers(0, 100_000, 100_000))
    (_, fp), (fn, tp) = pair_confusion_matrix(truth, pred)
    score = pairwise(pred, truth)
    assert score.f1 == pytest.approx(2 * tp / (2 * tp + fp + fn), rel=1e-12)
    # strings and the dict path give the same numbers as integer arrays
    score = bcubed(pred, truth)
    other = bcubed(pred.astype(str), truth.tolist())
    assert other.to_dict() == pytest.approx(score.to_dict(), rel=1e-12)
    assert 0.85 < score.precision < 1.0


def test_bad_sequences() -> None:
    with pytest.raises(MetricsError, match="3 predicted groups for 2 labels"):
        bcubed([1, 2, 3], ["a", "b"])
    with pytest.raises(MetricsError, match="no items"):
        pairwise([], [])


def _photo(
    path: Path | str, *groups: Any, status: str = "ok", boxes: list[Any] | None = None
) -> dict[str, Any]:
    boxes = boxes or [(50, 50, 100, 100)] * len(groups)
    faces = [
        {"id": i, "box": dict(zip(("left", "top", "right", "bottom"), box)), "quality": 0.8, "group": g}
        for i, (g, box) in enumerate(zip(groups, boxes))
    ]
    return {"path": str(path), "width": 150, "height": 150, "status": status, "faces": faces}


def _library(root: Path) -> dict[str, Any]:
    return {
        "photos": [
            # the large face first is a bystander (centre 30, 30); the central one is scored
            _photo(root / "Alice/a1.jpg", 7, 1, boxes=[(0, 0, 60, 60), (55, 50, 95, 100)]),
            _photo(root / "Alice/a2.jpg", 1),
            _photo(root / "Bob/b1.jpg", 2),
            _photo(root / "Bob/b2.jpg", 2),
            _photo(root / "Bob/b3.jpg", status="no_face"),
            _photo(root / "Carol/c1.jpg", None),  # unassigned
            _photo(root / "Carol/c2.jpg", 2),
            _photo(root / "Dan/d1.jpg", status="failed"),
            _photo(root / "loose.jpg", 1),  # no label
            _photo(root.parent / "other/x.jpg", 1),  # outside the root
        ]
    }


def test_export_rules_and_hand_computed_metrics(tmp_path: Path) -> None:
    root = tmp_path / "people"
    metrics = cluster_metrics(_library(root), root)
    # scored: A A B B B C C D in groups 1 1 2 2 * * 2 * (* = a group of its own)
    # BCubed precision: 1 + 1 + 2/3 + 2/3 + 1/3 (c2 in group 2) + 1 + 1 + 1 = 20/3 over 8
    # recall: 1 + 1 + 2/3 + 2/3 + 1/3 + 1/2 + 1/2 + 1 = 17/3 over 8
    p, r = 5 / 6, 17 / 24
    # pairs: TP = A-A + B-B = 2; predicted = 1 + C(3,2) = 4; true = 1 + 3 + 1 = 5
    assert metrics.to_dict() == {
        "bcubed": {"precision": pytest.approx(p), "recall": pytest.approx(r), "f1": pytest.approx(85 / 111)},
        "pairwise": {"precision": 0.5, "recall": 0.4, "f1": pytest.approx(4 / 9)},
        "groups": 5,
        "groups_of_two_or_more": 2,
        "unassigned": 3 / 8,
        "photos": 10,
        "scored": 8,
        "labels": 4,
        "unlabelled": 1,
        "outside_root": 1,
        "no_face": 1,
        "failed": 1,
        "several_faces": 1,
    }
    assert metrics.bcubed == bcubed(
        [1, 1, 2, 2, "b3", "c1", 2, "d1"], ["A", "A", "B", "B", "B", "C", "C", "D"]
    )
    line = metrics.describe()
    assert line.startswith("BCubed F1 0.7658 (P 0.8333, R 0.7083); pairwise F1 0.4444 (P 0.5000, R 0.4000)")
    assert "8 photos of 4 people in 5 groups (2 of 2+); 37.5% unassigned; 2 photos" in line


def test_photos_without_a_face_are_groups_of_their_own(tmp_path: Path) -> None:
    # three photos of one person none of which was grouped: three groups, not one
    export = {
        "photos": [
            _photo(tmp_path / "Eve/1.jpg", status="no_face"),
            _photo(tmp_path / "Eve/2.jpg", None),
            {**_photo(tmp_path / "Eve/3.jpg"), "faces": []},
            _photo(tmp_path / "Eve/4.jpg", 4),
            _photo(tmp_path / "Eve/5.jpg", 4),
        ]
    }
    metrics = cluster_metrics(export, tmp_path)
    assert (metrics.groups, metrics.groups_of_two_or_more, metrics.no_face) == (4, 1, 2)
    assert metrics.unassigned == 0.6
    _approx(metrics.pairwise, 1.0, 0.1, _f1(1.0, 0.1))  # 1 of C(5,2) = 10 pairs found
    _approx(metrics.bcubed, 1.0, (3 * 0.2 + 2 * 0.4) / 5, _f1(1.0, 0.28))


def test_central_face() -> None:
    def face(left: float, top: float, right: float, bottom: float) -> dict[str, Any]:
        return {"box": {"left": left, "top": top, "right": right, "bottom": bottom}}

    big_corner, small_centre, off = face(0, 0, 120, 120), face(140, 90, 170, 120), face(200, 0, 300, 80)
    # photo 300 x 200: centre (150, 100); the small face's centre (155, 105) is nearest
    assert central_face([big_corner, small_centre, off], 300, 200) == 1
    assert central_face([off, big_corner], 300, 200) == 1
    assert central_face([small_centre, small_centre], 300, 200) == 0  # ties: the first
    with pytest.raises(MetricsError):
        central_face([], 300, 200)


def test_relative_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    export = {
        "photos": [_photo("people/A/1.jpg", 1), _photo("people/A/2.jpg", 1), _photo("people/B/1.jpg", 2)]
    }
    relative = cluster_metrics(export, "people")
    assert relative == cluster_metrics(export, tmp_path / "people")
    assert (relative.scored, relative.labels, relative.bcubed.f1) == (3, 2, 1.0)


def test_bad_exports(tmp_path: Path) -> None:
    with pytest.raises(MetricsError, match='no "photos" list'):
        cluster_metrics({"faces": []}, tmp_path)
    with pytest.raises(MetricsError, match="status 'lost' is not one of ok, duplicate, no_face, failed"):
        cluster_metrics({"photos": [_photo(tmp_path / "A/1.jpg", status="lost")]}, tmp_path)
    with pytest.raises(MetricsError, match="none of the 2 exported photos is in a person folder"):
        cluster_metrics(
            {"photos": [_photo(tmp_path / "1.jpg", 1), _photo("/elsewhere/A/1.jpg", 1)]}, tmp_path
        )
    no_group = _photo(tmp_path / "A/1.jpg", 1)
    del no_group["faces"][0]["group"]
    with pytest.raises(MetricsError, match="malformed record"):
        cluster_metrics({"photos": [no_group]}, tmp_path)
