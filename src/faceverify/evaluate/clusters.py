"""How well a clustering of a labelled photo library agrees with its labels.

The library is labelled by folder (``<root>/<person>/*.jpg``) and its clustering comes as
the library export: every photo with its status and faces, each face with the ``group``
it was put in (None when it was left unassigned). Each labelled photo is one scored item:

* its label is its folder, relative to ``root`` (a photo directly in ``root`` has no
  label and is left out, counted as ``unlabelled``; one outside ``root`` is counted as
  ``outside_root``);
* of several faces, the one whose box centre is nearest the photo's centre is scored
  (the labelled person of LFW-style sets); the others are left out;
* a photo without a face (``no_face``, ``failed``, or ``ok`` with no faces), or whose
  scored face is unassigned, is a predicted group of its own.

Two standard views of agreement are reported. BCubed (Amigó et al., 2009) averages, over
items, the share of an item's predicted group that carries its label (precision) and the
share of its label that is in its predicted group (recall). Pairwise counts pairs of
items: a pair put in one group is a predicted positive, a pair of one label a true one.
Both are computed from the contingency table of (group, label) counts, so 100,000 items
take milliseconds.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from faceverify.errors import MetricsError

#: A photo's ``status`` in the export; ``ok`` and ``duplicate`` photos (the same bytes as
#: another photo, whose faces they show) have faces to score.
STATUSES = ("ok", "duplicate", "no_face", "failed")


@dataclass(frozen=True)
class ClusterScore:
    """Precision, recall and their harmonic mean (F1), each in [0, 1]."""

    precision: float
    recall: float
    f1: float

    def to_dict(self) -> dict[str, float]:
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1}


@dataclass(frozen=True)
class ClusterMetrics:
    """A clustering scored against folder labels (see the module docstring).

    Attributes:
        bcubed: per-item precision/recall averages.
        pairwise: precision/recall over pairs of scored items.
        groups: distinct predicted groups among the scored items, singletons included.
        groups_of_two_or_more: those of them holding at least two scored items.
        unassigned: share of scored photos whose scored face is unassigned or missing.
        photos: photos in the export.
        scored: photos scored (labelled ones).
        labels: distinct labels (people) among the scored photos.
        unlabelled: photos directly in ``root``, left out.
        outside_root: photos outside ``root``, left out.
        no_face: scored photos without a face (status ``no_face``, or ``ok`` with none).
        failed: scored photos whose processing failed.
        several_faces: scored photos with several faces, of which the central was scored.
    """

    bcubed: ClusterScore
    pairwise: ClusterScore
    groups: int
    groups_of_two_or_more: int
    unassigned: float
    photos: int
    scored: int
    labels: int
    unlabelled: int
    outside_root: int
    no_face: int
    failed: int
    several_faces: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "bcubed": self.bcubed.to_dict(),
            "pairwise": self.pairwise.to_dict(),
            "groups": self.groups,
            "groups_of_two_or_more": self.groups_of_two_or_more,
            "unassigned": self.unassigned,
            "photos": self.photos,
            "scored": self.scored,
            "labels": self.labels,
            "unlabelled": self.unlabelled,
            "outside_root": self.outside_root,
            "no_face": self.no_face,
            "failed": self.failed,
            "several_faces": self.several_faces,
        }

    def describe(self) -> str:
        """One line for the CLI: both F1s first, then the counts behind them."""
        b, p = self.bcubed, self.pairwise
        left_out = self.unlabelled + self.outside_root
        return (
            f"BCubed F1 {b.f1:.4f} (P {b.precision:.4f}, R {b.recall:.4f}); "
            f"pairwise F1 {p.f1:.4f} (P {p.precision:.4f}, R {p.recall:.4f}); "
            f"{self.scored} photos of {self.labels} people in {self.groups} groups "
            f"({self.groups_of_two_or_more} of 2+); {self.unassigned:.1%} unassigned"
            + (f"; {left_out} photos without a label left out" if left_out else "")
        )


def bcubed(pred: Sequence[Hashable], truth: Sequence[Hashable]) -> ClusterScore:
    """BCubed precision, recall and F1 of predicted groups ``pred`` against labels ``truth``.

    Precision averages, over items, the share of the item's group that shares its label;
    recall, the share of the item's label that shares its group. F1 is their harmonic
    mean (Amigó et al.'s F with alpha = 0.5). All singletons give precision 1; one group
    gives recall 1.

    Raises:
        MetricsError: the sequences are empty or differ in length.
    """
    table = _Contingency(pred, truth)
    n = table.cells.astype(np.float64)
    # item-wise shares summed per cell: n_ij items each see n_ij of their group or label
    precision = float(np.sum(n * n / table.group_sizes[table.group_of_cell]) / table.items)
    recall = float(np.sum(n * n / table.label_sizes[table.label_of_cell]) / table.items)
    return ClusterScore(precision, recall, _f1(precision, recall))


def pairwise(pred: Sequence[Hashable], truth: Sequence[Hashable]) -> ClusterScore:
    """Pairwise precision, recall and F1 over the unordered pairs of items.

    A pair in one predicted group is a predicted positive; a pair with one label, a true
    one. Degenerate cases follow "nothing claimed, nothing wrong": without predicted
    positive pairs (all singletons) precision is 1.0; without true pairs (every label
    once) recall is 1.0; F1 is 0.0 where both precision and recall are 0. So F1 always
    equals ``2 TP / (predicted pairs + true pairs)``, and 1.0 when there are no pairs at all.

    Raises:
        MetricsError: the sequences are empty or differ in length.
    """
    table = _Contingency(pred, truth)
    both = _pairs(table.cells)
    predicted, true = _pairs(table.group_sizes), _pairs(table.label_sizes)
    precision = both / predicted if predicted else 1.0
    recall = both / true if true else 1.0
    return ClusterScore(precision, recall, _f1(precision, recall))


def cluster_metrics(export: dict[str, Any], root: str | Path) -> ClusterMetrics:
    """Score the clustering in a library export against the folder labels under ``root``.

    Args:
        export: the library export, ``{"photos": [{"path", "width", "height", "status",
            "faces": [{"box", "group", ...}]}]}``. Relative paths are taken as written,
            relative to the current directory, like ``root``.
        root: the folder whose sub-folders are the labels (``<root>/<person>/*.jpg``).

    Raises:
        MetricsError: the export is malformed, or no photo has a label under ``root``.
    """
    photos = export.get("photos") if isinstance(export, dict) else None
    if not isinstance(photos, list):
        raise MetricsError('the library export has no "photos" list; is it a library export?')
    base = Path(root)
    pred: list[Hashable] = []
    truth: list[str] = []
    counts = {"unlabelled": 0, "outside_root": 0, "no_face": 0, "failed": 0, "several_faces": 0}
    unassigned = 0
    for index, photo in enumerate(photos):
        label = _label(photo, base, index)
        if label is None:
            counts["outside_root"] += 1
            continue
        if label == ".":
            counts["unlabelled"] += 1
            continue
        status, group, several = _scored_group(photo)
        if status != "ok":
            counts[status] += 1
        counts["several_faces"] += several
        unassigned += group is None
        # a photo without an assigned face is a group of its own, never another's
        pred.append(("alone", index) if group is None else ("group", group))
        truth.append(label)
    if not truth:
        raise MetricsError(
            f"none of the {len(photos)} exported photos is in a person folder under '{base}' "
            "(<root>/<person>/*.jpg); is the root right?"
        )
    sizes = np.bincount(_codes(pred))
    return ClusterMetrics(
        bcubed=bcubed(pred, truth),
        pairwise=pairwise(pred, truth),
        groups=int(sizes.size),
        groups_of_two_or_more=int((sizes >= 2).sum()),
        unassigned=unassigned / len(truth),
        photos=len(photos),
        scored=len(truth),
        labels=len(set(truth)),
        **counts,
    )


def central_face(faces: Sequence[dict[str, Any]], width: float, height: float) -> int:
    """The index of the face whose box centre is nearest the photo's centre (first on ties)."""
    if not faces:
        raise MetricsError("a photo without faces has no central face")
    boxes = np.array(
        [[f["box"]["left"], f["box"]["top"], f["box"]["right"], f["box"]["bottom"]] for f in faces],
        dtype=np.float64,
    )
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    distances = np.sum((centres - [width / 2, height / 2]) ** 2, axis=1)
    return int(np.argmin(distances))


class _Contingency:
    """Non-zero cells of the (group, label) count table, with group and label sizes."""

    def __init__(self, pred: Sequence[Hashable], truth: Sequence[Hashable]) -> None:
        if len(pred) != len(truth):
            raise MetricsError(f"{len(pred)} predicted groups for {len(truth)} labels; need one per item")
        if not len(pred):
            raise MetricsError("no items to score; need at least one")
        groups, labels = _codes(pred), _codes(truth)
        n_labels = int(labels.max()) + 1
        cells, self.cells = np.unique(groups * n_labels + labels, return_counts=True)
        self.group_of_cell, self.label_of_cell = np.divmod(cells, n_labels)
        self.group_sizes = np.bincount(groups).astype(np.float64)
        self.label_sizes = np.bincount(labels).astype(np.float64)
        self.items = groups.size


def _codes(values: Iterable[Hashable]) -> np.ndarray:
    """Integer codes 0..K-1 for any hashable values (equal values, equal codes)."""
    if isinstance(values, np.ndarray) and values.ndim == 1 and values.dtype.kind in "biuUS":
        return np.unique(values, return_inverse=True)[1].astype(np.int64)
    # tuples, None and mixed types defeat np.unique's sorting; a dict needs only hashing
    seen: dict[Hashable, int] = {}
    return np.fromiter((seen.setdefault(v, len(seen)) for v in values), dtype=np.int64)


def _pairs(counts: np.ndarray) -> float:
    """Unordered pairs within each count, summed (exact as a float below 2**53)."""
    n = counts.astype(np.float64)
    return float(np.sum(n * (n - 1)) / 2)


def _f1(precision: float, recall: float) -> float:
    total = precision + recall
    return 2 * precision * recall / total if total else 0.0


def _label(photo: Any, root: Path, index: int) -> str | None:
    """The photo's folder relative to ``root`` ("." directly in it), None outside it."""
    if not isinstance(photo, dict) or not isinstance(photo.get("path"), str):
        raise MetricsError(f'exported photo #{index} has no "path"; is this a library export?')
    path = Path(photo["path"])
    for inside, base in ((path, root), (path.resolve(), root.resolve())):
        try:
            return inside.parent.relative_to(base).as_posix()
        except ValueError:
            continue
    return None


def _scored_group(photo: dict[str, Any]) -> tuple[str, Hashable | None, bool]:
    """``(status, group of the scored face or None, several faces?)`` of one photo."""
    status = photo.get("status")
    if status not in STATUSES:
        raise MetricsError(f"{photo['path']}: status {status!r} is not one of {', '.join(STATUSES)}")
    status = "ok" if status == "duplicate" else status
    faces = photo.get("faces") or []
    if status != "ok" or not faces:
        return ("failed" if status == "failed" else "no_face"), None, False
    try:
        face = faces[central_face(faces, photo["width"], photo["height"])] if len(faces) > 1 else faces[0]
        return "ok", face["group"], len(faces) > 1
    except (KeyError, TypeError) as error:
        raise MetricsError(
            f"{photo['path']}: malformed record ({error!r}); faces need a box and a group, "
            "photos with several faces a width and height"
        ) from None
