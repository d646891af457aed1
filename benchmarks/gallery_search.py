"""Gallery search: latency and recall@1 of each index against brute-force numpy, in one run.

For each gallery size, N random unit 320-dim vectors (one face per person) are searched
with noisy copies of stored faces (as real probes are), one query at a time:

* ``numpy``: ``argmax(V @ q)``, the exact reference every other line is compared with;
* ``exact``: the embedded gallery's exact index (used below 50,000 faces);
* ``hnsw``: the embedded gallery's faiss HNSW index (used from 50,000 faces on);
* ``sqlite``: a full ``SQLiteStore.search`` (index plus the database round trip);
* ``pgvector``: ``PostgresStore.search`` on a pgserver PostgreSQL with an HNSW index.

Enrolment throughput is measured through ``SQLiteStore.add`` and ``PostgresStore.add``.

Run:  python benchmarks/gallery_search.py [--sizes 10000 100000 1000000] [--pg-max 100000] [--hnsw-max N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from faceverify.gallery.base import Face
from faceverify.gallery.index import FaceIndex

DIM = 320
MANIFEST = {"model": "bench", "embedding_dim": DIM, "preprocess_fingerprint": "-", "weights_sha256": "-"}


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def timed(
    search: Callable[[np.ndarray], int], queries: np.ndarray, truth: np.ndarray
) -> tuple[float, float, float]:
    """Median and p95 latency (ms) of single-query searches, and recall@1."""
    search(queries[0])
    latencies, hits = [], 0
    for q, expected in zip(queries, truth):
        started = time.perf_counter()
        found = search(q)
        latencies.append((time.perf_counter() - started) * 1000)
        hits += found == expected
    latencies.sort()
    return statistics.median(latencies), latencies[int(0.95 * (len(latencies) - 1))], hits / len(queries)


def report(name: str, stats: tuple[float, float, float], reference: float, extra: str = "") -> None:
    median, p95, recall = stats
    print(
        f"  {name:<9} {median:9.3f} {p95:9.3f} {recall:9.3f} {reference / median:9.2f}  {extra}", flush=True
    )


def run_size(size: int, queries_count: int, pg_url: str | None, workdir: Path, hnsw: bool) -> None:
    rng = np.random.default_rng(size)
    vectors = unit(rng.normal(size=(size, DIM)))
    picks = rng.integers(0, size, queries_count)
    queries = unit(vectors[picks] + rng.normal(0, 0.03, (queries_count, DIM)))
    truth = np.argmax(queries @ vectors.T, axis=1)
    ids, owners = np.arange(1, size + 1), np.arange(size)
    print(f"\n{size:,} faces, {queries_count} queries, one at a time")
    print(f"  {'index':<9} {'median ms':>9} {'p95 ms':>9} {'recall@1':>9} {'speed-up':>9}  (vs numpy)")
    brute = timed(lambda q: int(np.argmax(vectors @ q)), queries, truth)
    report("numpy", brute, brute[0])

    exact = FaceIndex(DIM, hnsw=False)
    exact.add(ids, owners, vectors)
    report("exact", timed(lambda q: int(exact.search(q, 1)[0][0]), queries, truth), brute[0])

    if hnsw:
        started = time.perf_counter()
        graph = FaceIndex(DIM, hnsw=True)
        graph.add(ids, owners, vectors)
        build = time.perf_counter() - started
        stats = timed(lambda q: int(graph.search(q, 1)[0][0]), queries, truth)
        report("hnsw", stats, brute[0], f"built in {build:.1f} s")

    if size <= 100_000:
        sqlite_store(size, vectors, queries, truth, brute[0], workdir)
    if pg_url is not None:
        postgres_store(pg_url, vectors, queries, truth, brute[0])


def sqlite_store(
    size: int, vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray, ref: float, workdir: Path
) -> None:
    from faceverify.gallery.sqlite import SQLiteStore

    store = SQLiteStore(workdir / f"sqlite-{size}")
    store.bind(MANIFEST)
    started = time.perf_counter()
    for i, vector in enumerate(vectors):
        store.add(f"p{i}", [Face(vector, f"h{i}", "bench")], None)
    rate = size / (time.perf_counter() - started)
    started = time.perf_counter()
    store.search(queries[0], 1, "best")  # first search builds the index from SQLite
    sync = time.perf_counter() - started
    stats = timed(lambda q: int(store.search(q, 1, "best")[0].name[1:]), queries, truth)
    report(
        "sqlite", stats, ref, f"enrol {rate:,.0f} people/s (one transaction each); index load {sync:.1f} s"
    )
    store.close()


def postgres_store(url: str, vectors: np.ndarray, queries: np.ndarray, truth: np.ndarray, ref: float) -> None:
    from faceverify.gallery.postgres import PostgresStore

    store = PostgresStore(url)
    store.drop()
    store.bind(MANIFEST)
    count = min(2000, len(vectors))
    started = time.perf_counter()
    for i in range(count):
        store.add(f"p{i}", [Face(vectors[i], f"h{i}", "bench")], None)
    rate = count / (time.perf_counter() - started)
    started = time.perf_counter()
    _bulk_load(store, vectors, start=count)
    load = time.perf_counter() - started
    stats = timed(lambda q: int(store.search(q, 1, "best")[0].name[1:]), queries, truth)
    report(
        "pgvector",
        stats,
        ref,
        f"enrol {rate:,.0f} people/s (one transaction each); bulk load + HNSW build {load:.0f} s",
    )
    store.drop()
    store.close()


def _bulk_load(store: object, vectors: np.ndarray, start: int) -> None:
    """COPY the remaining people and faces, then build the HNSW index once."""
    db = store._db  # type: ignore[attr-defined]  # benchmark-only shortcut
    db.execute("DROP INDEX IF EXISTS faceverify_faces_hnsw")
    with db.transaction(), db.cursor() as cursor:
        with cursor.copy("COPY faceverify_people (id, name) FROM STDIN") as copy:
            for i in range(start, len(vectors)):
                copy.write_row((i + 1_000_000, f"p{i}"))
        with cursor.copy(
            "COPY faceverify_faces (person_id, image_sha256, source, embedding) FROM STDIN"
        ) as copy:
            for i in range(start, len(vectors)):
                copy.write_row((i + 1_000_000, f"h{i}", "bench", "[" + ",".join(map(str, vectors[i])) + "]"))
    db.execute("SET maintenance_work_mem = '1GB'")
    db.execute(
        "CREATE INDEX faceverify_faces_hnsw ON faceverify_faces USING hnsw (embedding vector_cosine_ops)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--pg-max", type=int, default=100_000, help="largest size also run on pgvector (0: none)"
    )
    parser.add_argument(
        "--hnsw-max", type=int, default=None, help="largest size also run on HNSW (default: all)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = None
        if args.pg_max:
            import pgserver

            server = pgserver.get_server(Path(tmp) / "pg", cleanup_mode="stop")
        try:
            for size in args.sizes:
                url = server.get_uri() if server is not None and size <= args.pg_max else None
                hnsw = args.hnsw_max is None or size <= args.hnsw_max
                run_size(size, args.queries, url, Path(tmp), hnsw)
        finally:
            if server is not None:
                server.cleanup()


if __name__ == "__main__":
    main()
