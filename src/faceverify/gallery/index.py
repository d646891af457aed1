"""The embedded gallery's vector index: exact search for small galleries, compressed codes above.

Import indexes from here: :class:`FaceIndex` (``FaceIndex(dim, kind)`` makes one of any
kind), with the shared bookkeeping in :mod:`~faceverify.gallery.index_base` and one
class per kind in :mod:`~faceverify.gallery.index_kinds`.

Kinds (``FaceIndex.kind``, one class each in :mod:`faceverify.gallery.index_kinds`),
chosen by :func:`choose_kind` from the gallery's size:

* ``exact``: a matrix product over every face. Exact, nothing to build, and fast enough
  below :data:`INDEX_MIN_FACES` faces.
* ``pq`` (the default from :data:`INDEX_MIN_FACES` faces on): every face as a 4-bit
  product-quantisation code, all scanned in one shard per core, the best candidates
  re-scored exactly on the float32 vectors (:mod:`faceverify.gallery.codes` says why).
  It found the exact best face for every probe measured and answers tens of times faster
  than exact search at a million faces (``docs/benchmarks.md``); its codes train on a sample.
  The scores are exact cosines. Memory per face: 4 bytes × dims of vectors, 20 bytes of
  code at 320 dims, 33 of ids.
* ``ivf``, only when asked for: faiss ``IndexIVFFlat`` (L2 on unit vectors, which ranks
  like cosine; L2 k-means does not care that face embeddings share one mean direction). Its
  :func:`ivf_lists` centroids are trained on a sample, so a million faces index in
  minutes, where an HNSW graph takes far longer; new faces are appended to their lists
  without retraining. :data:`IVF_PROBE_SHARE` of the lists are scanned per query: on
  crowded face-like vectors (:mod:`faceverify.gallery.synthetic_vectors`, probes that are another
  photo of an enrolled person) recall follows the share of lists scanned, and half of them
  is what finding the exact best face nearly always takes, so it buys recall first and
  only a modest speed-up over exact search; a store can trade recall for speed with
  ``probe_share``. Vectors are kept in float32 (4 bytes × dims per face, plus 25 bytes of
  ids) so the scores are exact.
* ``hnsw``: faiss HNSW graph, only when asked for: it did not earn the default, being far
  slower to build than IVF on face-like vectors and still missing the exact nearest face
  for a large share of probes.

``pq`` and ``ivf`` train on the gallery they are built from (codebooks, centroids); new
faces are encoded with what was trained, until the gallery outgrows it.

The index is a cache: SQLite stays the source of truth (:mod:`faceverify.gallery.index_cache`
keeps a process's index in step with it). :class:`FaceIndex` holds what every kind shares:
face ids, owners and tombstones. Removed faces are tombstoned at once (never returned
again) and erased: their vectors zeroed and their codes dropped, in memory and in the
saved files (:func:`scrub_saved`); their slots go at the next rebuild. :meth:`FaceIndex.drift`
says when a rebuild pays (many tombstones, or codes trained on a far smaller gallery).
Saved indexes are written beside the database (:mod:`faceverify.gallery.index_files`).
"""

from __future__ import annotations

from faceverify.gallery.index_base import (
    FaceIndex,
    Progress,
    first_per_owner,
    index_class,
    live_positions,
    register_kind,
    scrub_saved,
    top_k,
    unit_centroids,
)
from faceverify.gallery.index_files import INDEX_ARRAYS
from faceverify.gallery.index_kinds import KIND_CLASSES, ExactIndex, HNSWIndex, IVFIndex, PQIndex
from faceverify.gallery.index_sizing import (
    INDEX_MIN_FACES,
    IVF_PROBE_SHARE,
    KINDS,
    check_kind,
    choose_kind,
    ivf_lists,
    ivf_probes,
    rerank_candidates,
)

__all__ = [
    "INDEX_ARRAYS",
    "INDEX_MIN_FACES",
    "IVF_PROBE_SHARE",
    "KINDS",
    "KIND_CLASSES",
    "ExactIndex",
    "FaceIndex",
    "HNSWIndex",
    "IVFIndex",
    "PQIndex",
    "Progress",
    "check_kind",
    "choose_kind",
    "first_per_owner",
    "index_class",
    "ivf_lists",
    "ivf_probes",
    "live_positions",
    "register_kind",
    "rerank_candidates",
    "scrub_saved",
    "top_k",
    "unit_centroids",
]
