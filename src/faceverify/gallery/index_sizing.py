"""The embedded gallery index's sizes and knobs: which kind a gallery gets, how much of an
approximate index a search scans, and when an index has drifted far enough to rebuild.

Each number says why it is what it is; the measurements behind them are in
``docs/benchmarks.md`` (``benchmarks/gallery_search.py`` reproduces them).
"""

from __future__ import annotations

import math

from faceverify.errors import GalleryError

KINDS = ("exact", "pq", "ivf", "hnsw")
#: Galleries with at least this many faces get the ``pq`` index; below it exact search is
#: already fast and costs nothing to build.
INDEX_MIN_FACES = 20_000
#: ``pq``: candidates re-scored exactly per search, beyond twice the faces asked for.
RERANK_EXTRA = 32
#: Share of the IVF lists scanned per query (at least :data:`IVF_MIN_PROBES` lists): on
#: crowded face-like vectors recall follows the share scanned, and half of the lists is
#: what it takes to find the exact best face nearly always.
IVF_PROBE_SHARE, IVF_MIN_PROBES = 1 / 2, 8
#: Training points per IVF list (the sample, not the gallery, sets the training time).
IVF_TRAIN_PER_LIST, IVF_TRAIN_ITERATIONS = 32, 10
#: HNSW graph degree and build/search breadth (used when ``hnsw`` is asked for).
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 100, 128
#: Rebuild once this share of the indexed faces has been removed...
REBUILD_TOMBSTONE_SHARE = 0.2
#: ...or once the gallery holds this many times the faces its codebooks or centroids were
#: trained on (a ``pq`` index then also gets the shards its new size calls for).
REBUILD_GROWTH = 4.0


def choose_kind(count: int, min_faces: int = INDEX_MIN_FACES) -> str:
    """The index kind for a gallery of ``count`` faces: ``exact`` below ``min_faces``, else ``pq``."""
    return "exact" if count < min_faces else "pq"


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise GalleryError(f"unknown index kind {kind!r}; choose one of {', '.join(KINDS)} (or auto)")
    return kind


def ivf_lists(count: int) -> int:
    """IVF list count for ``count`` faces: the power of two nearest √count (at most 4096),
    and never so many that a list would hold fewer than 8 faces on average.

    On face-like vectors the recall depends on the *share* of lists scanned, not on their
    number, and the query cost on the share of faces scanned; fewer lists make the build
    (k-means training and assignment, both ∝ lists) cheaper at no cost per query."""
    wanted = 2 ** round(math.log2(max(math.sqrt(max(count, 1)), 1)))
    return int(max(1, min(4096, wanted, count // 8)))


def ivf_probes(lists: int, share: float = IVF_PROBE_SHARE) -> int:
    """Lists scanned per query for an IVF index of ``lists`` lists."""
    return int(min(lists, max(IVF_MIN_PROBES, math.ceil(share * lists))))


def rerank_candidates(k: int, tombstone_share: float, faces: int) -> int:
    """Candidates a ``pq`` search re-scores for ``k`` faces: twice ``k`` plus
    :data:`RERANK_EXTRA`, scaled up for the share of removed faces among them (tombstones
    are spread evenly over the codes; counting them one by one would ask faiss for 200,000
    candidates after 20% of a million faces were removed)."""
    live_share = max(1.0 - tombstone_share, 0.05)
    return min(faces, math.ceil((2 * k + RERANK_EXTRA) / live_share))


def tombstone_fetch(k: int, faces: int, dead: int) -> int:
    """Faces an IVF or HNSW search asks faiss for, so that ``k`` live ones remain once the
    ``dead`` (tombstoned) faces among them are dropped: ``k`` more than the tombstones, and
    ``4 k`` more once they outnumber ``4 k``."""
    return min(faces, k + dead if dead < 4 * k else 4 * k + dead)
