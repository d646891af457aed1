"""Identification (1:N) evaluation on folder-per-person gallery and probe sets.

People are scored for each probe by the embedded gallery's own exact search code
(:mod:`faceverify.gallery.index`), in either of its matching modes: ``best`` (a
person's best single image) or ``centroid`` (the mean direction of their images). So
the numbers measure the search the product runs, not a re-implementation of it.
Closed-set numbers (rank-k accuracy, the CMC curve) use probes of people who are in the
gallery; open-set numbers add probes of people who are not, who should be rejected by
the threshold.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from faceverify.decode import iter_image_paths
from faceverify.errors import FaceVerifyError
from faceverify.gallery.base import check_match
from faceverify.gallery.index import FaceIndex, unit_centroids

if TYPE_CHECKING:
    from faceverify.photos import FaceOptions
    from faceverify.runtime.base import Embedder

RANKS = (1, 5)
MATCHING = {"best": "best single match per person", "centroid": "centroid of each person's images"}


def read_people(folder: str | Path, what: str) -> list[tuple[str, Path]]:
    """``(person, image)`` for every image under ``folder/<person>/``."""
    root = Path(folder)
    if not root.is_dir():
        raise FaceVerifyError(f"{what} folder '{root}' not found")
    people = sorted(p for p in root.iterdir() if p.is_dir())
    items = [(person.name, path) for person in people for path in iter_image_paths([person])]
    if not items:
        raise FaceVerifyError(
            f"{what} folder '{root}' holds no person folders with images (<{what}>/<person>/*.jpg)"
        )
    return items


def identification_metrics(
    model: Embedder,
    gallery: str | Path,
    probes: str | Path,
    *,
    threshold: float,
    match: str = "best",
    batch_size: int = 32,
    progress: bool | None = None,
    faces: FaceOptions | None = None,
) -> dict[str, Any]:
    """Rank-1/5 accuracy, the CMC curve and open-set error rates, JSON-ready.

    Args:
        match: how a person's images meet a probe, as in the gallery: ``best`` or ``centroid``.
        faces: how faces are found in the photos, as for :func:`faceverify.embed_images`.
    """
    check_match(match)
    gallery_items = read_people(gallery, "gallery")
    probe_items = read_people(probes, "probes")
    problems: list[str] = []
    g_names, g_vectors = _embed(model, gallery_items, "gallery", batch_size, progress, problems, faces)
    p_names, p_vectors = _embed(model, probe_items, "probe", batch_size, progress, problems, faces)
    people = sorted(set(g_names))
    owners = np.array([people.index(n) for n in g_names], dtype=np.int64)
    per_person = _person_scores(owners, g_vectors, p_vectors, match)
    known = np.array([name in people for name in p_names])
    return {
        "gallery": {"people": len(people), "images": len(g_names), "folder": str(gallery)},
        "probes": {"known": int(known.sum()), "unknown": int((~known).sum()), "folder": str(probes)},
        "matching": MATCHING[match],
        **_closed_set(per_person[known], [people.index(n) for n in np.array(p_names)[known]], len(people)),
        "open_set": _open_set(
            per_person, known, [people.index(n) if n in people else -1 for n in p_names], threshold
        ),
        "problems": problems,
    }


def _person_scores(owners: np.ndarray, vectors: np.ndarray, probes: np.ndarray, match: str) -> np.ndarray:
    """``[probes, people]`` scores; people are the owners 0..K-1, as the gallery scores them."""
    if match == "centroid":
        _, centroids = unit_centroids(owners, vectors)
        scores: np.ndarray = probes @ centroids.T
        return scores
    index = FaceIndex(vectors.shape[1], "exact")  # as galleries below INDEX_MIN_FACES
    index.add(np.arange(1, len(owners) + 1), owners, vectors)
    return index.best_per_owner(probes)[1]


def _embed(
    model: Embedder,
    items: list[tuple[str, Path]],
    what: str,
    batch_size: int,
    progress: bool | None,
    problems: list[str],
    faces: FaceOptions | None,
) -> tuple[list[str], np.ndarray]:
    from faceverify.embed import embed_images

    paths = [str(p) for _, p in items]
    result = embed_images(model, paths, batch_size=batch_size, normalize=True, progress=progress, faces=faces)
    problems.extend(f"{f.source}: {f.reason}" for f in result.failures)
    if not result.indices:
        first = result.failures[0]
        raise FaceVerifyError(f"none of the {len(items)} {what} images could be embedded; first: {first}")
    return [items[i][0] for i in result.indices], result.embeddings


def _closed_set(scores: np.ndarray, truth: list[int], people: int) -> dict[str, Any]:
    if not truth:
        return {"rank_accuracy": {}, "cmc": [], "note": "no probe person is in the gallery"}
    true_scores = scores[np.arange(len(truth)), truth]
    # rank 1 + number of people scoring strictly higher than the true person
    ranks = 1 + (scores > true_scores[:, None]).sum(axis=1)
    cmc = [float((ranks <= k).mean()) for k in range(1, people + 1)]
    rank_accuracy: dict[str, Any] = {}
    for k in RANKS:
        rank_accuracy[f"rank_{k}"] = (
            cmc[k - 1] if k <= people else {"unmeasured": f"needs at least {k} gallery people, have {people}"}
        )
    return {"rank_accuracy": rank_accuracy, "cmc": cmc}


def _open_set(scores: np.ndarray, known: np.ndarray, truth: list[int], threshold: float) -> dict[str, Any]:
    best = scores.argmax(axis=1)
    top = scores.max(axis=1)
    accepted = top >= threshold
    result: dict[str, Any] = {"threshold": threshold}
    if (~known).any():
        # an unknown person is wrongly accepted when anyone in the gallery matches well enough
        result["unknown_accept_rate"] = float(accepted[~known].mean())
    if known.any():
        correct = np.array([b == t for b, t in zip(best, truth)])
        # detection and identification rate: right person at rank 1 and above the threshold
        result["known_identified_rate"] = float((correct & accepted)[known].mean())
        result["known_rejected_rate"] = float((~accepted[known]).mean())
    return result
