"""Each face's nearest faces, without a matrix of every pair.

faiss (the ``index`` extra, which galleries use for their index too) searches in batches
with its exact inner-product kernels; without it, blocks of rows are scored with one matrix
product each and only the best ``k`` of each row are kept, so memory stays at one block
(``BLOCK`` rows × all faces) whatever the library's size. Both are exact: grouping depends
on which faces are neighbours, so an approximate search would change groups between runs.
"""

from __future__ import annotations

import numpy as np

from faceverify.extras import INDEX

#: Nearest faces searched per face. Groups are compared when they hold neighbouring
#: faces, so this bounds how many candidates a face brings, not how large a group grows.
DEFAULT_K = 24
#: Rows scored per block without faiss (a block is BLOCK × library floats).
BLOCK = 1024


def nearest(
    vectors: np.ndarray, queries: np.ndarray | None = None, k: int = DEFAULT_K
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` faces of ``vectors`` nearest to each query, best first.

    Args:
        vectors: unit ``[n, d]`` float32 rows searched.
        queries: unit ``[q, d]`` rows; None searches every row of ``vectors`` for its
            neighbours among the others (a face is never its own neighbour).

    Returns:
        ``(positions [q, k], cosines [q, k])``; positions are -1 where fewer faces exist.
    """
    base = np.ascontiguousarray(vectors, dtype=np.float32)
    itself = queries is None
    wanted = base if queries is None else np.ascontiguousarray(queries, dtype=np.float32)
    q, n = len(wanted), len(base)
    positions = np.full((q, k), -1, dtype=np.int64)
    scores = np.full((q, k), -np.inf, dtype=np.float32)
    if q == 0 or n == 0:
        return positions, scores
    take = min(k + int(itself), n)
    found, values = _search(base, wanted, take)
    if itself:
        found, values = _drop_self(found, values, k)
    width = min(k, found.shape[1])
    positions[:, :width], scores[:, :width] = found[:, :width], values[:, :width]
    return positions, scores


def neighbours_of(
    vectors: np.ndarray, rows: np.ndarray, k: int = DEFAULT_K, *, among: np.ndarray | None = None
) -> np.ndarray:
    """``[n, k]`` nearest faces of the faces at ``rows`` among all ``vectors`` (or only the
    positions ``among``), never themselves, best first; every other row is -1. A run adding
    faces searches only for the new faces: the groups already made are compared through them."""
    table = np.full((len(vectors), k), -1, dtype=np.int64)
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size == 0:
        return table
    pool = np.arange(len(vectors)) if among is None else np.asarray(among, dtype=np.int64)
    found, _ = nearest(vectors[pool], vectors[rows], k=k + 1)
    found = np.where(found >= 0, pool[np.maximum(found, 0)], -1)
    found = np.where(found == rows[:, None], -1, found)
    order = np.argsort(found < 0, axis=1, kind="stable")  # the -1s (itself, padding) last
    table[rows] = np.take_along_axis(found, order, axis=1)[:, :k]
    return table


def _search(base: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if INDEX.installed() and len(base) > BLOCK:
        import faiss

        index = faiss.IndexFlatIP(base.shape[1])
        index.add(base)
        values, found = index.search(queries, k)
        return found.astype(np.int64), values
    return _blocks(base, queries, k)


def _blocks(base: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    found = np.empty((len(queries), k), dtype=np.int64)
    values = np.empty((len(queries), k), dtype=np.float32)
    for start in range(0, len(queries), BLOCK):
        scores = queries[start : start + BLOCK] @ base.T
        if k < scores.shape[1]:
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        else:
            top = np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
        best = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-best, axis=1, kind="stable")
        found[start : start + BLOCK] = np.take_along_axis(top, order, axis=1)
        values[start : start + BLOCK] = np.take_along_axis(best, order, axis=1)
    return found, values


def _drop_self(found: np.ndarray, values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row without its own position (wherever ties put it), cut to ``k``."""
    rows = np.arange(len(found))[:, None]
    own = found == rows
    # rows that did not find themselves (ties with duplicates) drop their last entry instead
    missing = ~own.any(axis=1)
    own[missing, -1] = True
    keep = ~own
    width = found.shape[1] - 1
    if width == 0:  # one face: nobody else to be near
        return found[:, :0], values[:, :0]
    return found[keep].reshape(-1, width)[:, :k], values[keep].reshape(-1, width)[:, :k]
