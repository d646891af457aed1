"""Gallery search at 10k, 100k and 1M faces: every index kind against numpy brute force.

The faces are face-like vectors (:mod:`faceverify.gallery.synthetic_vectors`: one shared mean
direction, impostors at cosine ~0.84, two photos of one person at ~0.95), one photo per
person. Probes are *another* photo of an enrolled person (fresh photo noise), the hard
case: on random or well-separated vectors every index looks perfect. Lines per size:

* ``numpy``: ``argmax(V @ q)``, the exact reference (recall@1 is measured against it);
* ``exact``: the embedded gallery's exact index (used below 20,000 faces);
* ``pq``: 4-bit codes scanned in one shard per core, top candidates re-scored exactly
  (the default from 20,000 faces); ``pq 1 shard``: the same in one thread, as each of
  several concurrent searches gets on a busy machine;
* ``ivf 1/8``...: the IVF index scanning that share of its lists;
* ``hnsw``: faiss HNSW (only up to ``--hnsw-max`` faces: its build is the slow one);
* ``sqlite``: ``SQLiteStore`` with its automatic index: ``reindex`` time, search through
  the store, cold start (open + first search with the saved index), enrolment of
  ``--enrol`` people one transaction each into the already large gallery, and the
  catch-up (appending them to the index) of the next search;
* ``pg ef=N``: ``PostgresStore`` (pgvector HNSW on pgserver) at ``hnsw.ef_search`` N.

Columns: build seconds, single-query p50/p95 ms, recall@1 against numpy, mate@1 (the
probe's own person ranked first: identification accuracy, which near-ties among
impostors cap for exact search too), and memory of the index in MiB.

Run (one size at a time keeps the peak memory down; 1M × 512 needs about 6 GB):
    python benchmarks/gallery_search.py --sizes 10000 100000 --dims 320
    python benchmarks/gallery_search.py --sizes 1000000 --dims 128 320 512 --pg-max 0
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from faceverify.gallery.base import StoredFace
from faceverify.gallery.index import IVF_PROBE_SHARE, FaceIndex
from faceverify.gallery.synthetic_vectors import FaceSpace

MIB = 2**20


def manifest(dim: int) -> dict[str, Any]:
    return {"model": "bench", "embedding_dim": dim, "preprocess_fingerprint": "-", "weights_sha256": "-"}


def timed(search: Callable[[np.ndarray], int], queries: np.ndarray) -> tuple[float, float, np.ndarray]:
    """p50 and p95 latency (ms) of single-query searches, and each query's answer."""
    search(queries[0])  # warm caches
    latencies, answers = [], []
    for q in queries:
        started = time.perf_counter()
        answers.append(search(q))
        latencies.append((time.perf_counter() - started) * 1000)
    latencies.sort()
    return statistics.median(latencies), latencies[int(0.95 * (len(latencies) - 1))], np.array(answers)


class Table:
    """Prints one line per index: build s, p50/p95 ms, recall@1 vs numpy, mate@1, MiB."""

    def __init__(self, truth: np.ndarray, mates: np.ndarray) -> None:
        self.truth, self.mates = truth, mates
        print(
            f"  {'index':<11} {'build s':>8} {'p50 ms':>8} {'p95 ms':>8} {'recall@1':>8} {'mate@1':>7} "
            f"{'MiB':>7}  notes",
            flush=True,
        )

    def line(
        self,
        name: str,
        build: float | None,
        stats: tuple[float, float, np.ndarray],
        mib: float,
        note: str = "",
    ) -> None:
        p50, p95, answers = stats
        recall, mate = np.mean(answers == self.truth), np.mean(answers == self.mates)
        built = "-" if build is None else f"{build:.1f}"
        print(
            f"  {name:<11} {built:>8} {p50:8.2f} {p95:8.2f} {recall:8.3f} {mate:7.3f} {mib:7.0f}  {note}",
            flush=True,
        )


def run_size(size: int, dim: int, args: argparse.Namespace, pg_url: str | None, workdir: Path) -> None:
    space = FaceSpace(dim, seed=size)
    centres = space.identities(size, seed=1)
    vectors = space.photos(centres, seed=2)
    mates = np.random.default_rng(3).choice(size, args.queries, replace=False)
    queries = space.photos(centres[mates], seed=4)  # another photo of an enrolled person
    del centres
    ids, owners = np.arange(1, size + 1), np.arange(size)
    print(
        f"\n{size:,} faces x {dim} dims, {args.queries} probes (another photo each), one at a time",
        flush=True,
    )
    brute = timed(lambda q: int(np.argmax(vectors @ q)), queries)
    table = Table(brute[2], mates)
    table.line("numpy", None, brute, vectors.nbytes / MIB)

    kinds = [k for k in args.kinds if k != "hnsw" or size <= args.hnsw_max]
    for kind in kinds:
        index_lines(table, kind, dim, (ids, owners, vectors), queries, args.probe_shares)

    if size <= args.sqlite_max:
        sqlite_store(table, dim, vectors, queries, workdir / f"sqlite-{size}-{dim}", args.enrol)
    if pg_url is not None:
        postgres_store(table, dim, vectors, queries, pg_url, args)


def index_lines(
    table: Table,
    kind: str,
    dim: int,
    faces: tuple[np.ndarray, np.ndarray, np.ndarray],
    queries: np.ndarray,
    probe_shares: list[float],
) -> None:
    """Build one index kind in memory and measure it: pq with one shard per core and with
    one shard, IVF once per probe share, the others once."""
    if kind == "pq":
        for shards, name in ((None, "pq*"), (1, "pq 1 shard")):
            index, build = _built(dim, kind, faces, shards)
            stats = timed(lambda q, index=index: int(index.search(q, 1)[0][0]), queries)
            shards_used = index._codes.shards if index._codes is not None else 0
            table.line(name, build, stats, index.memory_bytes() / MIB, f"{shards_used} shard(s)")
        return
    index, build = _built(dim, kind, faces, None)
    for share in probe_shares if kind == "ivf" else [IVF_PROBE_SHARE]:
        index.probe_share = share
        stats = timed(lambda q: int(index.search(q, 1)[0][0]), queries)
        name = f"ivf 1/{round(1 / share)}" if kind == "ivf" else kind
        table.line(name, build, stats, index.memory_bytes() / MIB)


def _built(
    dim: int, kind: str, faces: tuple[np.ndarray, np.ndarray, np.ndarray], shards: int | None
) -> tuple[FaceIndex, float]:
    started = time.perf_counter()
    index = FaceIndex.build(dim, kind, *faces, shards=shards)
    return index, time.perf_counter() - started


def sqlite_store(
    table: Table, dim: int, vectors: np.ndarray, queries: np.ndarray, folder: Path, enrol: int
) -> None:
    from faceverify.gallery.sqlite import SQLiteStore

    store = SQLiteStore(folder)
    store.bind(manifest(dim))
    _bulk_insert_sqlite(folder / "gallery.db", vectors)
    started = time.perf_counter()
    index = store.reindex()  # reads every face from SQLite, builds, saves
    build = time.perf_counter() - started
    store.close()

    started = time.perf_counter()
    store = SQLiteStore(folder)
    store.search(queries[0], 1, "best")  # loads the saved index
    cold = time.perf_counter() - started
    stats = timed(lambda q: int(store.search(q, 1, "best")[0].name[1:]), queries)
    extra = np.random.default_rng(5).normal(size=(enrol, dim)).astype(np.float32)
    started = time.perf_counter()
    for i, vector in enumerate(extra):
        store.add(f"new{i}", [StoredFace(vector, f"new{i}", "bench")], None)
    rate = enrol / (time.perf_counter() - started)
    started = time.perf_counter()
    store.search(queries[0], 1, "best")
    catch_up = time.perf_counter() - started
    table.line(
        f"sqlite {index.kind}",
        build,
        stats,
        index.memory_bytes() / MIB,
        f"cold start {cold:.1f} s; enrol {rate:,.0f} people/s into it, next search {catch_up * 1000:.0f} ms",
    )
    store.close()


def _bulk_insert_sqlite(path: Path, vectors: np.ndarray) -> None:
    """People p0..pN-1 with one face each, in one transaction (a benchmark shortcut:
    enrolment through the store is measured separately)."""
    import sqlite3

    db = sqlite3.connect(path)
    with db:
        db.executemany(
            "INSERT INTO people (id, name, created) VALUES (?, ?, '-')",
            ((i + 1, f"p{i}") for i in range(len(vectors))),
        )
        db.executemany(
            "INSERT INTO faces (person_id, image_sha256, source, vector, created) "
            "VALUES (?, ?, 'bench', ?, '-')",
            ((i + 1, f"h{i}", v.astype("<f4").tobytes()) for i, v in enumerate(vectors)),
        )
        db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
    db.close()


def postgres_store(
    table: Table, dim: int, vectors: np.ndarray, queries: np.ndarray, url: str, args: argparse.Namespace
) -> None:
    from faceverify.gallery import postgres

    store = postgres.PostgresStore(url)
    store.drop()
    store.bind(manifest(dim))
    started = time.perf_counter()
    _bulk_load_postgres(store, vectors)
    build = time.perf_counter() - started
    with store.connection() as db:
        mib = db.execute("SELECT pg_relation_size('faceverify_faces_hnsw')").fetchone()[0] / MIB
    default = postgres.PG_EF_SEARCH
    for ef in args.ef_search:
        postgres.PG_EF_SEARCH = ef
        stats = timed(lambda q: int(store.search(q, 1, "best")[0].name[1:]), queries)
        mark = "*" if ef == default else ""
        table.line(
            f"pg ef={ef}{mark}", build, stats, mib, f"pgvector {'.'.join(map(str, store.pgvector_version))}"
        )
    postgres.PG_EF_SEARCH = default
    extra = np.random.default_rng(5).normal(size=(args.enrol, dim)).astype(np.float32)
    started = time.perf_counter()
    for i, vector in enumerate(extra):
        store.add(f"new{i}", [StoredFace(vector, f"new{i}", "bench")], None)
    print(
        f"  pgvector: enrol {args.enrol / (time.perf_counter() - started):,.0f} people/s into it", flush=True
    )
    store.drop()
    store.close()


def _bulk_load_postgres(store: Any, vectors: np.ndarray) -> None:
    """COPY people and faces, then build the HNSW index once (as the README advises)."""
    from faceverify.gallery import postgres

    with store.connection() as db:
        db.execute("SET statement_timeout = 0")  # building the graph of a million faces takes minutes
        db.execute("DROP INDEX IF EXISTS faceverify_faces_hnsw")
        with db.transaction(), db.cursor() as cursor:
            with cursor.copy("COPY faceverify_people (id, name) FROM STDIN") as copy:
                for i in range(len(vectors)):
                    copy.write_row((i + 1, f"p{i}"))
            with cursor.copy(
                "COPY faceverify_faces (person_id, image_sha256, source, embedding) FROM STDIN"
            ) as copy:
                for i, vector in enumerate(vectors):
                    copy.write_row((i + 1, f"h{i}", "bench", "[" + ",".join(map(str, vector.tolist())) + "]"))
        db.execute("SELECT setval('faceverify_people_id_seq', %s)", (len(vectors),))
        db.execute("SET maintenance_work_mem = '2GB'")
        db.execute("SET max_parallel_maintenance_workers = 1")
        db.execute(postgres.hnsw_index_sql())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument(
        "--dims", type=int, nargs="+", default=[320], help="embedding sizes (320; 128 512 too)"
    )
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--kinds", nargs="+", default=["exact", "pq", "ivf", "hnsw"], help="index kinds to measure"
    )
    parser.add_argument("--enrol", type=int, default=300, help="people enrolled into each large gallery")
    parser.add_argument(
        "--probe-shares", type=float, nargs="+", default=[1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2]
    )
    parser.add_argument("--ef-search", type=int, nargs="+", default=[40, 100, 200, 400])
    parser.add_argument(
        "--pg-max", type=int, default=100_000, help="largest size also run on pgvector (0: none)"
    )
    parser.add_argument("--hnsw-max", type=int, default=100_000, help="largest size also run on HNSW")
    parser.add_argument(
        "--sqlite-max", type=int, default=10**9, help="largest size also run through SQLiteStore"
    )
    args = parser.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        server = None
        if args.pg_max and min(args.sizes) <= args.pg_max:
            import pgserver

            server = pgserver.get_server(Path(tmp) / "pg", cleanup_mode="stop")
        try:
            for size in args.sizes:
                for dim in args.dims:
                    url = server.get_uri() if server is not None and size <= args.pg_max else None
                    run_size(size, dim, args, url, Path(tmp))
        finally:
            if server is not None:
                server.cleanup()


if __name__ == "__main__":
    main()
