"""Compressed face codes for large galleries: 4-bit product-quantisation codes scanned in
full, in one shard per core, then the best candidates re-ranked exactly.

Why this design (measured with ``benchmarks/gallery_search.py`` on face-like vectors, see
:mod:`faceverify.gallery.synthetic_vectors`; figures in ``docs/benchmarks.md``): the probes of a
face gallery are another photo of an enrolled person, close to one face and about equally
far from all the others. Indexes that skip most of the gallery lose that face: an IVF
index must scan about half of its lists to keep it, and an HNSW graph misses it for a
large share of probes. Scanning every face is what keeps recall, so the scan is made
cheap instead. A 320-dim face (1,280 bytes of float32) becomes 20 bytes
of code, 4 bits for each group of 8 dimensions (smaller embeddings get more bits per
dimension, see :data:`DIMS_PER_CODE`), scanned with faiss's SIMD "fast scan" kernels,
which rank the true nearest face among the first few candidates; the top candidates are
then scored exactly on the float32 vectors, so the scores returned are exact cosines.
Codes train on a sample of fixed size, so even a million faces index quickly; new faces
are encoded with the same codebooks.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from faceverify.paths import atomic_path, open_private

#: Dimensions per 4-bit sub-quantiser: the coarsest code that still ranks the exact best
#: face among the first candidates. Face-like vectors of fewer dimensions are more crowded
#: (their nearest stranger is closer), so they need more bits per dimension: at 128
#: dimensions 4 per code lost probes far down the ranking that 2 per code kept.
DIMS_PER_CODE, DIMS_PER_CODE_SMALL, SMALL_DIMS = 8, 2, 256
#: Faces sampled to train the codebooks (16 centroids per sub-quantiser).
TRAIN_SAMPLE = 65_536
#: One shard per core, but no shard smaller than this (threads cost more than they save).
SHARD_MIN_FACES = 100_000
MAX_SHARDS = 8
#: Batches of at least this many faces per shard are split over every shard.
SPLIT_BATCH = 1_000


def subquantizers(dim: int) -> int:
    """Sub-quantisers for ``dim`` dimensions: the divisor of ``dim`` nearest ``dim / 8``
    (``dim / 2`` below 256 dimensions); faiss needs an exact split, and ties go to the
    larger, more accurate code."""
    target = dim / (DIMS_PER_CODE if dim >= SMALL_DIMS else DIMS_PER_CODE_SMALL)
    divisors = [m for m in range(1, dim + 1) if dim % m == 0]
    return min(divisors, key=lambda m: (abs(m - target), -m))


def shard_count(faces: int) -> int:
    """Shards searched in parallel for ``faces``: one per available core, each of at least
    :data:`SHARD_MIN_FACES` faces."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, MAX_SHARDS, math.ceil(faces / SHARD_MIN_FACES)))


class Rows:
    """A float32 matrix that grows by appending, in amortised O(rows added) time.

    ``np.concatenate`` copies the whole matrix on every append, which at a million faces
    is a gigabyte per enrolment; this keeps a quarter of spare capacity instead.
    """

    def __init__(self, dim: int, capacity: int = 0) -> None:
        self._data = np.empty((capacity, dim), dtype=np.float32)
        self.count = 0

    @property
    def view(self) -> np.ndarray:
        return self._data[: self.count]

    def append(self, rows: np.ndarray) -> None:
        needed = self.count + len(rows)
        if needed > len(self._data):
            grown = np.empty((needed + _spare(self.count), self._data.shape[1]), np.float32)
            grown[: self.count] = self._data[: self.count]
            self._data = grown
        self._data[self.count : needed] = rows
        self.count = needed

    def zero(self, positions: np.ndarray) -> None:
        """Overwrite rows with zeros: removed faces leave no vector in memory or in a save."""
        self._data[positions] = 0.0

    def save(self, path: Path) -> None:
        with open_private(path) as stream:
            np.save(stream, self.view)

    @classmethod
    def load(cls, path: Path, dim: int) -> Rows:
        """Rows saved by :meth:`save`, read straight into a buffer with spare capacity (so
        the first enrolment after a start does not copy them all again). Raises ValueError
        or OSError when the file is not a float32 matrix of ``dim`` columns."""
        with open(path, "rb") as file:
            version = np.lib.format.read_magic(file)
            if version != (1, 0):
                raise ValueError(f"{path.name}: unexpected .npy version {version}")
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(file)
            if fortran or dtype != np.float32 or len(shape) != 2 or shape[1] != dim:
                raise ValueError(f"{path.name}: not a float32 matrix of {dim} columns")
            rows = cls(dim, shape[0] + _spare(shape[0]))
            if file.readinto(rows._data[: shape[0]].data.cast("B")) != shape[0] * dim * 4:
                raise ValueError(f"{path.name}: truncated")
        rows.count = shape[0]
        return rows


def _spare(count: int) -> int:
    return max(count // 4, 1024)  # a quarter more: amortised appends without doubling RAM


class CodeShards:
    """Faces as 4-bit PQ fast-scan codes in shards searched in parallel threads.

    Faiss labels are the faces' positions in the owning :class:`FaceIndex` (each shard maps
    its own rows to them), so a hit needs no translation.

    Args:
        dim: embedding dimension.
        shards: number of shards (one per core; see :func:`shard_count`).
    """

    def __init__(self, dim: int, shards: int) -> None:
        self.dim, self.shards = dim, max(1, shards)
        self._parts: list[Any] = []
        self._union: Any = None

    def train(self, vectors: np.ndarray) -> None:
        """Train the codebooks on a fixed sample (the same gallery trains the same codes)."""
        import faiss

        sample = vectors
        if len(vectors) > TRAIN_SAMPLE:
            picked = np.random.default_rng(0).choice(len(vectors), TRAIN_SAMPLE, replace=False)
            sample = vectors[np.sort(picked)]
        codes = faiss.IndexPQFastScan(self.dim, subquantizers(self.dim), 4)
        codes.pq.cp.min_points_per_centroid = 1  # small galleries train on fewer points, quietly
        codes.pq.cp.seed = 1234
        codes.train(np.ascontiguousarray(sample, dtype=np.float32))
        self._parts = [faiss.IndexIDMap(faiss.clone_index(codes)) for _ in range(self.shards)]
        self._join()

    def add(self, vectors: np.ndarray, positions: np.ndarray) -> None:
        """Encode faces: a large batch (a build) is split evenly over the shards, a small
        one (an enrolment) goes to the smallest shard, so the shards stay level."""
        if len(vectors) >= SPLIT_BATCH * len(self._parts):
            count = len(self._parts)
            pieces = zip(np.array_split(vectors, count), np.array_split(positions, count), strict=True)
            for part, (rows, labels) in zip(self._parts, pieces, strict=True):
                part.add_with_ids(rows, labels)
        else:
            min(self._parts, key=lambda part: part.ntotal).add_with_ids(vectors, positions)
        self._union.syncWithSubIndexes()

    def search(self, query: np.ndarray, candidates: int) -> np.ndarray:
        """Positions of about ``candidates`` faces nearest ``query`` by their codes, best first."""
        _, labels = self._union.search(query.reshape(1, -1), candidates)
        found: np.ndarray = labels[0]
        return found[found >= 0]

    def drop(self, positions: np.ndarray, vectors: np.ndarray) -> None:
        """Remove faces' codes for good: every shard holding some is encoded again from its
        remaining faces' ``vectors`` (rows by position). Faiss's own removal compacts the
        codes but leaves the last block's padding, removed codes included, in the file."""
        import faiss

        for part in self._parts:
            labels = faiss.vector_to_array(part.id_map)
            gone = np.isin(labels, positions)
            if not gone.any():
                continue
            kept = labels[~gone]
            part.reset()
            if kept.size:
                part.add_with_ids(np.ascontiguousarray(vectors[kept], dtype=np.float32), kept)
        self._union.syncWithSubIndexes()

    def sizes(self) -> list[int]:
        return [int(part.ntotal) for part in self._parts]

    def code_bytes(self) -> int:
        """Bytes of code per face (4 bits per sub-quantiser), plus 8 for its faiss label."""
        return math.ceil(subquantizers(self.dim) / 2) + 8

    def save(self, stem: Path) -> list[Path]:
        """Write each shard as ``<stem>-<i>.faiss`` (owner-only, each replaced atomically, so
        a reader sees the old shard or the new one); returns the files written."""
        import faiss

        files = [_shard_file(stem, i) for i in range(len(self._parts))]
        for part, path in zip(self._parts, files, strict=True):
            # created owner-only first: faiss keeps the mode of the file it truncates
            with atomic_path(path, private=True) as temporary:
                faiss.write_index(part, str(temporary))
        return files

    @classmethod
    def load(cls, stem: Path, dim: int, shards: int) -> CodeShards:
        """The shards saved by :meth:`save`. Raises RuntimeError or OSError when unreadable."""
        import faiss

        codes = cls(dim, shards)
        files = [_shard_file(stem, i) for i in range(shards)]
        codes._parts = [faiss.read_index(str(path)) for path in files]
        if any(part.d != dim for part in codes._parts):
            raise ValueError("saved codes are of another dimension")
        codes._join()
        return codes

    def _join(self) -> None:
        import faiss

        # threaded: one worker thread per shard, so one query uses every core
        union = faiss.IndexShards(self.dim, True, False)  # type: ignore[call-arg]  # stubs lag faiss
        for part in self._parts:
            union.add_shard(part)
        self._union = union


def _shard_file(stem: Path, shard: int) -> Path:
    return stem.with_name(f"{stem.name}-{shard}.faiss")
