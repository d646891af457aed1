"""How faces are grouped by person: average linkage on cosine, its thresholds from the model.

The method was chosen by measurement on real faces (``benchmarks/clustering.py``, figures in
``docs/clustering.md``): average-linkage agglomeration, then a second pass in which a face left
alone joins the group of its nearest face when it passes the model's verification threshold
against that group on average. Faces from one photo are never grouped together (a photo shows
a person once), and the user's corrections constrain every merge (:class:`Constraints`).

**Why average linkage.** The average cosine between two groups is the dot product of their
mean vectors, so it is exact with no pairwise matrix, and it does not chain: single-linkage
methods (chinese whispers, connected components) merge two people through one look-alike pair.

**Why two thresholds, both from the model.** Grouping compares every face with the whole
library, so it must be stricter than verification, which compares one pair: dlib's authors
verify at a descriptor distance of 0.6 and cluster at 0.5. :class:`Thresholds` keeps that
ratio for every model: ``1 - group = (1 - verify) * (0.5 / 0.6)²`` in cosine, which gives
0.938 for dlib's published 0.911 and 0.51 for an ArcFace model verified at 0.3 (Immich's
clustering default for such models is 0.5). The second pass then uses the verification
threshold itself, so a lone face is put where a verification would put it.

Neighbours come from a k-nearest-neighbour search (:mod:`faceverify.cluster.neighbours`);
only groups that hold neighbouring faces are compared, so 100k faces need no 100k² matrix.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from faceverify.checks import check_threshold

if TYPE_CHECKING:
    from faceverify.runtime.threshold import Threshold

#: dlib's clustering distance over its verification distance, squared: the ratio of
#: ``1 - cosine`` between the grouping and the verification thresholds.
STRICTER = (0.5 / 0.6) ** 2


@dataclass(frozen=True)
class Thresholds:
    """The two cosine thresholds of a clustering run and where they came from.

    Attributes:
        group: two groups merge while their faces are, on average, at least this alike.
        attach: a face left alone joins its nearest face's group at this average similarity.
        source: how they were chosen, for people (e.g. ``from the model's published 0.911``).
    """

    group: float
    attach: float
    source: str = ""

    def __post_init__(self) -> None:
        check_threshold(self.group)
        check_threshold(self.attach)

    @classmethod
    def from_model(cls, threshold: Threshold) -> Thresholds:
        """The thresholds for a model whose verification threshold is ``threshold``."""
        verify = float(threshold)
        group = 1.0 - (1.0 - verify) * STRICTER
        source = f"from the model's {threshold.source.value} threshold {verify:.4g}"
        return cls(round(group, 6), verify, source)

    @classmethod
    def from_group(cls, group: float) -> Thresholds:
        """Thresholds chosen by their grouping value (``--threshold``); attach follows it."""
        check_threshold(group)
        attach = 1.0 - (1.0 - group) / STRICTER
        return cls(group, round(max(attach, -1.0), 6), f"given {group:.4g}")

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "attach": self.attach, "source": self.source}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Thresholds:
        return cls(float(data["group"]), float(data["attach"]), str(data.get("source", "")))


@dataclass
class Constraints:
    """What a run must respect, by face position (0..n-1).

    Attributes:
        photos: each face's photo id: faces of one photo never share a group.
        seeds: groups that exist before the run (the user's pinned faces, or, when adding
            faces to a library, its current groups): ``{key: positions}``; each starts as
            one group. Keys are the caller's (stored group ids).
        anchored: seed keys the user has touched: two of them never merge by themselves.
        forbidden: ``{position: {seed keys}}``: "not this person": the face never joins those.
        apart: pairs of seed keys the user split or kept apart.
    """

    photos: np.ndarray
    seeds: dict[int, np.ndarray] = field(default_factory=dict)
    anchored: set[int] = field(default_factory=set)
    forbidden: dict[int, set[int]] = field(default_factory=dict)
    apart: set[frozenset[int]] = field(default_factory=set)


@dataclass
class _Group:
    """A group during agglomeration: its members' vector sum and what constrains it."""

    total: np.ndarray
    size: int
    photos: set[int]
    seeds: set[int]
    forbidden: set[int]


class Grouping(NamedTuple):
    """A run's result: a label per face (0..G-1, one per group, singletons included; the
    seeds' faces in their seed's group), and which faces the second pass attached (a run
    adding faces places those again: they joined a group on one face's evidence)."""

    labels: np.ndarray
    attached: np.ndarray


def group_faces(
    vectors: np.ndarray,
    neighbours: np.ndarray,
    thresholds: Thresholds,
    constraints: Constraints,
) -> Grouping:
    """Group unit ``vectors`` (``[n, d]``).

    Args:
        neighbours: ``[n, k]`` positions of each face's nearest faces (-1 pads); only
            groups holding neighbouring faces are compared.
    """
    n = len(vectors)
    groups, owner = _initial(vectors, constraints)
    links = _candidate_links(neighbours, owner)
    _agglomerate(groups, owner, links, thresholds.group, constraints)
    attached = _attach_lone(vectors, neighbours, groups, owner, thresholds.attach, constraints)
    _, labels = np.unique(_roots(owner, n), return_inverse=True)
    mask = np.zeros(n, dtype=bool)
    mask[attached] = True
    return Grouping(labels.astype(np.int64), mask)


def _initial(vectors: np.ndarray, c: Constraints) -> tuple[dict[int, _Group], np.ndarray]:
    owner = np.arange(len(vectors), dtype=np.int64)
    groups: dict[int, _Group] = {}
    seeded = np.zeros(len(vectors), dtype=bool)
    for key, members in c.seeds.items():
        members = np.asarray(members, dtype=np.int64)
        if members.size == 0:
            continue
        head = int(members[0])
        owner[members] = head
        seeded[members] = True
        groups[head] = _Group(
            vectors[members].sum(axis=0, dtype=np.float64),
            int(members.size),
            {int(p) for p in c.photos[members]},
            {key},
            set().union(*(c.forbidden.get(int(m), set()) for m in members)),
        )
    for i in np.flatnonzero(~seeded).tolist():
        groups[i] = _Group(
            vectors[i].astype(np.float64), 1, {int(c.photos[i])}, set(), set(c.forbidden.get(i, ()))
        )
    return groups, owner


def _candidate_links(neighbours: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """``[m, 2]`` pairs of starting groups that hold neighbouring faces (each pair once)."""
    rows = np.repeat(np.arange(len(neighbours)), neighbours.shape[1])
    cols = neighbours.reshape(-1)
    keep = cols >= 0
    a, b = owner[rows[keep]], owner[cols[keep]]
    pairs = np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1)
    return np.unique(pairs[pairs[:, 0] != pairs[:, 1]], axis=0)


def _link(a: _Group, b: _Group) -> float:
    """The average cosine between the faces of two groups (exact: a dot of their sums)."""
    return float(a.total @ b.total) / (a.size * b.size)


def _allowed(a: _Group, b: _Group, c: Constraints) -> bool:
    if not a.photos.isdisjoint(b.photos):
        return False  # one photo shows a person once
    if a.seeds & b.forbidden or b.seeds & a.forbidden:
        return False  # "not this person"
    touched_a, touched_b = a.seeds & c.anchored, b.seeds & c.anchored
    if touched_a and touched_b:
        return False  # groups the user shaped merge only when the user merges them
    return not any(frozenset((x, y)) in c.apart for x in a.seeds for y in b.seeds)


def _merge(groups: dict[int, _Group], owner: np.ndarray, a: int, b: int) -> int:
    """Merge group ``b`` into ``a`` (the larger keeps its id); returns the survivor."""
    if groups[a].size < groups[b].size:
        a, b = b, a
    ga, gb = groups[a], groups.pop(b)
    ga.total += gb.total
    ga.size += gb.size
    ga.photos |= gb.photos
    ga.seeds |= gb.seeds
    ga.forbidden |= gb.forbidden
    owner[b] = a  # a union-find parent link; _find follows it
    return a


def _find(owner: np.ndarray, i: int) -> int:
    root = i
    while owner[root] != root:
        root = int(owner[root])
    while owner[i] != root:  # path compression
        owner[i], i = root, int(owner[i])
    return root


def _roots(owner: np.ndarray, n: int) -> np.ndarray:
    return np.array([_find(owner, i) for i in range(n)], dtype=np.int64)


def _agglomerate(
    groups: dict[int, _Group],
    owner: np.ndarray,
    links: np.ndarray,
    threshold: float,
    c: Constraints,
) -> None:
    """Merge the most alike pair of neighbouring groups while it reaches ``threshold``."""
    adjacent: dict[int, set[int]] = {g: set() for g in groups}
    for a, b in links.tolist():
        adjacent[a].add(b)
        adjacent[b].add(a)
    heap = _first_links(groups, links, threshold)
    heapq.heapify(heap)
    while heap:
        _, a, b, size_a, size_b = heapq.heappop(heap)
        if a not in groups or b not in groups or groups[a].size != size_a or groups[b].size != size_b:
            continue  # stale: one of them has changed since this entry was pushed
        if not _allowed(groups[a], groups[b], c):
            continue
        kept = _merge(groups, owner, a, b)
        gone = b if kept == a else a
        near = (adjacent.pop(gone) | adjacent[kept]) - {a, b}
        adjacent[kept] = near
        for other in near:
            adjacent[other].discard(gone)
            adjacent[other].add(kept)
        _push_links(heap, groups, kept, near, threshold)


def _first_links(
    groups: dict[int, _Group], links: np.ndarray, threshold: float
) -> list[tuple[float, int, int, int, int]]:
    """Heap entries of the starting pairs that reach ``threshold``, scored in blocks (one
    row-wise product per block, not a call per pair)."""
    if len(links) == 0:
        return []
    heads = np.unique(links)
    where = {int(h): i for i, h in enumerate(heads.tolist())}
    totals = np.stack([groups[int(h)].total for h in heads.tolist()])
    sizes = np.array([groups[int(h)].size for h in heads.tolist()], dtype=np.float64)
    left = np.fromiter((where[a] for a in links[:, 0].tolist()), np.int64, len(links))
    right = np.fromiter((where[b] for b in links[:, 1].tolist()), np.int64, len(links))
    entries: list[tuple[float, int, int, int, int]] = []
    for start in range(0, len(links), 65536):
        i, j = left[start : start + 65536], right[start : start + 65536]
        values = np.einsum("ij,ij->i", totals[i], totals[j]) / (sizes[i] * sizes[j])
        for k in np.flatnonzero(values >= threshold).tolist():
            a, b = int(heads[i[k]]), int(heads[j[k]])
            entries.append((-float(values[k]), a, b, int(sizes[i[k]]), int(sizes[j[k]])))
    return entries


def _push_links(
    heap: list[tuple[float, int, int, int, int]],
    groups: dict[int, _Group],
    kept: int,
    near: set[int],
    threshold: float,
) -> None:
    if not near:
        return
    others = list(near)
    group = groups[kept]
    totals = np.stack([groups[o].total for o in others])
    sizes = np.array([groups[o].size for o in others], dtype=np.float64)
    values = (totals @ group.total) / (sizes * group.size)
    for other, value in zip(others, values.tolist()):
        if value >= threshold:
            heapq.heappush(heap, (-value, kept, other, group.size, groups[other].size))


def _attach_lone(
    vectors: np.ndarray,
    neighbours: np.ndarray,
    groups: dict[int, _Group],
    owner: np.ndarray,
    threshold: float,
    c: Constraints,
) -> list[int]:
    """A face still alone joins the group of its nearest allowed face when their average
    similarity reaches ``threshold`` (the model's verification threshold); returns them."""
    attached: list[int] = []
    for i in range(len(vectors)):
        root = _find(owner, i)
        if groups[root].size != 1 or groups[root].seeds:
            continue
        for j in neighbours[i].tolist():
            if j < 0:
                break
            other = _find(owner, j)
            if other == root:
                continue
            if _link(groups[root], groups[other]) >= threshold and _allowed(groups[root], groups[other], c):
                if groups[other].size == 1 and not groups[other].seeds:
                    attached.append(other)  # a pair made by this pass: both on one face's evidence
                _merge(groups, owner, other, root)
                attached.append(i)
            break  # only the nearest face's group is considered, as a verification would
    return attached
