"""Vector index: build time, memory, query latency and recall@10 of exact, HNSW and quantised+rescored search.

    python benchmarks/bench_index.py --quick                       # a smoke run, seconds
    python benchmarks/bench_index.py                               # 100k and 1M rows, clustered data
    python benchmarks/bench_index.py --sizes 100000 --data clustered,uniform --storages f16,int8,binary
    python benchmarks/bench_index.py --crossover                   # where HNSW overtakes exact search
    python benchmarks/bench_index.py --libraries --sizes 100000    # usearch vs faiss vs hnswlib, raw

Every variant of one run searches the same vectors with the same queries in this one process, and
recall@10 is measured against exact float32 search of the same index. Vectors are synthetic,
unit length, dimension 384: "clustered" draws rows around n/100 random centres (nearest-neighbour
cosine about 0.55, like sentence embeddings of a topical corpus), "uniform" is uniform on the
sphere, the hardest case for a graph index and an unrealistic one. Rows are added in shards of
`--shard-rows`, as `bertkit index build` does. Latency is per call of `VectorIndex.search` (hits
with text and metadata): one query, and batches of 32. Memory: the process's RSS growth over
opening the index, and the saved graph's size. Numbers from a busy machine are noisy; compare
variants within one run.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DIM = 384
K = 10
SINGLE_QUERIES = 200
BATCH = 32
BATCHES = 20


def vectors(kind: str, size: int, n: int, seed: int, first: int = 0) -> np.ndarray:
    """Rows first..first+n of a deterministic data set of `size` rows, so shards can be made one at a time."""
    rng = np.random.default_rng([seed, first])
    x = rng.standard_normal((n, DIM), dtype=np.float32)
    if kind == "clustered":  # the centres depend on the data set, not on the seed of queries or shards
        centres = np.random.default_rng(size).standard_normal((max(10, size // 100), DIM), dtype=np.float32)
        x += centres[rng.integers(0, len(centres), n)]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # not Linux: the peak is the best we have
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10


def percentiles(times: list[float]) -> tuple[float, float]:
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3)


def latency(search, queries: np.ndarray) -> dict:
    single = []
    for i in range(SINGLE_QUERIES):
        start = time.perf_counter()
        search(queries[i: i + 1])
        single.append(time.perf_counter() - start)
    batched = []
    for b in range(BATCHES):
        chunk = queries[(b * BATCH) % (len(queries) - BATCH):][:BATCH]
        start = time.perf_counter()
        search(chunk)
        batched.append(time.perf_counter() - start)
    (p50, p99), (b50, b99) = percentiles(single), percentiles(batched)
    return {"p50_ms": p50, "p99_ms": p99, "batch32_p50_ms": b50, "batch32_p99_ms": b99}


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def build(folder: Path, kind: str, n: int, shard_rows: int, storage: str) -> float:
    from bertkit.index import VectorIndex

    index = VectorIndex.create(folder, DIM, model="synthetic", pooling="mean", normalize=True, storage=storage)
    start = time.perf_counter()
    for first in range(0, n, shard_rows):
        rows = min(shard_rows, n - first)
        index.add([str(i) for i in range(first, first + rows)], vectors(kind, n, rows, 0, first),
                  texts=[f"document {i}" for i in range(first, first + rows)])
    if index.manifest.ann is None:  # below EXACT_BELOW no graph is built on its own
        index.build_ann()
    index.flush()  # the last adds may not have saved the graph; opening should not redo them
    return time.perf_counter() - start


def progress(row: dict) -> dict:
    """A finished row, also to stderr at once: a long run's first numbers need not wait for its end."""
    print(json.dumps(row), file=sys.stderr, flush=True)
    return row


def bench_size(kind: str, n: int, storages: list[str], shard_rows: int, n_queries: int, workdir: Path) -> list[dict]:
    from bertkit.index import RESCORE_FACTOR, VectorIndex

    queries = vectors(kind, n, n_queries, 1)  # another seed: queries are new points of the same distribution
    folder = workdir / f"{kind}-{n}"
    rows: list[dict] = []
    build_s = build(folder, kind, n, shard_rows, storages[0])
    gc.collect()
    before = rss_mb()
    start = time.perf_counter()
    index = VectorIndex.open(folder)
    open_s = time.perf_counter() - start
    opened_mb = rss_mb() - before
    truth, _ = index.search_rows(queries, K, exact=True)
    base = {"data": kind, "rows": n}
    rows.append(progress({**base, "variant": "exact float32", "build_s": None, "open_s": open_s, "rss_mb": opened_mb,
                 "graph_mb": None, "recall@10": 1.0, **latency(lambda q: index.search(q, K, exact=True), queries)}))
    for i, storage in enumerate(storages):
        seconds = build_s
        if i > 0:
            start = time.perf_counter()
            index.build_ann(storage)
            seconds = time.perf_counter() - start
        graph_mb = (folder / index.manifest.ann.file).stat().st_size / 2**20
        factors = sorted({1, RESCORE_FACTOR[storage]})
        for factor in factors:
            found, _ = index.search_rows(queries, K, exact=False, rescore_factor=factor)
            label = f"HNSW {storage}" + (f" + rescore x{factor}" if factor > 1 else "")
            timing = latency(lambda q, f=factor: index.search(q, K, exact=False, rescore_factor=f), queries)
            rows.append(progress({**base, "variant": label, "build_s": seconds if factor == factors[0] else None,
                                  "open_s": None, "rss_mb": None, "graph_mb": graph_mb,
                                  "recall@10": recall(found, truth), **timing}))
    return rows


def crossover(sizes: list[int], storage: str, workdir: Path) -> list[dict]:
    """Exact against HNSW latency on growing indexes: below the crossing, exact search wins."""
    from bertkit.index import VectorIndex

    rows = []
    for n in sizes:
        queries = vectors("clustered", n, 1000, 1)
        index = VectorIndex.create(workdir / f"cross-{n}", DIM, model="synthetic", pooling="mean", normalize=True,
                                   storage=storage)
        index.add([str(i) for i in range(n)], vectors("clustered", n, n, 0))
        start = time.perf_counter()
        index.build_ann()
        built = time.perf_counter() - start
        exact = latency(lambda q, i=index: i.search_rows(q, K, exact=True), queries)
        ann = latency(lambda q, i=index: i.search_rows(q, K, exact=False), queries)
        truth, _ = index.search_rows(queries, K, exact=True)
        found, _ = index.search_rows(queries, K, exact=False)
        rows.append(progress({"rows": n, "exact_p50_ms": exact["p50_ms"], "hnsw_p50_ms": ann["p50_ms"],
                              "exact_batch32_ms": exact["batch32_p50_ms"], "hnsw_batch32_ms": ann["batch32_p50_ms"],
                              "hnsw_build_s": built, "hnsw_recall@10": recall(found, truth)}))
    return rows


def libraries(n: int, kind: str, n_queries: int) -> list[dict]:
    """The candidate libraries side by side on the same vectors, with our HNSW settings (M, efConstruction, efSearch)."""
    from bertkit.index import ann as ours

    data = vectors(kind, n, n, 0)
    queries = vectors(kind, n, n_queries, 1)
    truth = np.argsort(-(queries @ data.T), axis=1)[:, :K]
    M, EF_ADD, EF = ours.CONNECTIVITY, ours.EXPANSION_ADD, ours.EXPANSION_SEARCH
    threads = os.cpu_count() or 1

    def usearch_(dtype):
        from usearch.index import Index
        index = Index(ndim=DIM, metric="ip", dtype=dtype, connectivity=M, expansion_add=EF_ADD, expansion_search=EF)
        index.add(np.arange(n, dtype=np.uint64), data, threads=threads)
        return index, lambda q: np.atleast_2d(index.search(q, K, threads=threads).keys)

    def faiss_(fp16: bool):
        import faiss
        faiss.omp_set_num_threads(threads)
        index = (faiss.IndexHNSWSQ(DIM, faiss.ScalarQuantizer.QT_fp16, M, faiss.METRIC_INNER_PRODUCT) if fp16
                 else faiss.IndexHNSWFlat(DIM, M, faiss.METRIC_INNER_PRODUCT))
        index.hnsw.efConstruction = EF_ADD
        if fp16:
            index.train(data[:1])  # fp16 needs no statistics, but faiss wants the call
        index.add(data)
        index.hnsw.efSearch = EF
        return index, lambda q: index.search(q, K)[1]

    def hnswlib_():
        import hnswlib
        index = hnswlib.Index(space="ip", dim=DIM)
        index.init_index(max_elements=n, M=M, ef_construction=EF_ADD)
        index.set_num_threads(threads)
        index.add_items(data, np.arange(n))
        index.set_ef(EF)
        return index, lambda q: index.knn_query(q, K)[0]

    candidates = {"usearch f32": lambda: usearch_("f32"), "usearch f16": lambda: usearch_("f16"),
                  "faiss HNSWFlat": lambda: faiss_(False), "faiss HNSWSQ fp16": lambda: faiss_(True), "hnswlib": hnswlib_}
    rows = []
    for name, make in candidates.items():
        gc.collect()
        before = rss_mb()
        start = time.perf_counter()
        try:
            index, search = make()
        except ImportError as e:
            print(f"  {name}: not installed ({e})", file=sys.stderr)
            continue
        built = time.perf_counter() - start
        grown = rss_mb() - before
        rows.append(progress({"library": name, "rows": n, "build_s": built, "rss_mb": grown,
                              "recall@10": recall(search(queries), truth), **latency(search, queries)}))
        del index, search
    return rows


def markdown(rows: list[dict]) -> str:
    if not rows:
        return ""
    keys = list(dict.fromkeys(k for row in rows for k in row))

    def cell(v):
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) < 1 and v != 0 else f"{v:,.2f}" if v < 100 else f"{v:,.0f}"
        return f"{v:,}" if isinstance(v, int) else str(v)

    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(cell(row.get(k)) for k in keys) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="rows per index, comma-separated (default: 100000,1000000)")
    parser.add_argument("--data", default="clustered", help="clustered, uniform or both, comma-separated (default: clustered)")
    parser.add_argument("--storages", default="f16,f32,int8,binary", help="graph storages; the first is built while adding")
    parser.add_argument("--queries", type=int, default=1000, help="queries for recall@10 (default: 1000)")
    parser.add_argument("--shard-rows", type=int, default=100_000, help="rows per add() call (default: 100000)")
    parser.add_argument("--crossover", action="store_true", help="exact against HNSW latency over growing sizes")
    parser.add_argument("--libraries", action="store_true", help="usearch, faiss and hnswlib (those installed) side by side")
    parser.add_argument("--quick", action="store_true", help="a small smoke run: 5,000 rows, 200 queries")
    parser.add_argument("--workdir", default=None, help="where index folders go (default: a temporary folder)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    sizes = [int(s) for s in args.sizes.split(",")]
    if args.quick:
        sizes, args.queries, args.shard_rows = [5000], 200, 2000
    machine = {"cpus": os.cpu_count(), "load_average": os.getloadavg()}
    print(f"machine: {machine}", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        workdir = Path(tmp)
        if args.libraries:
            results = [row for n in sizes for kind in args.data.split(",") for row in libraries(n, kind, args.queries)]
        elif args.crossover:
            steps = [1000, 5000] if args.quick else [1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000]
            results = crossover(steps, args.storages.split(",")[0], workdir)
        else:
            results = [row for kind in args.data.split(",") for n in sizes
                       for row in bench_size(kind, n, args.storages.split(","), args.shard_rows, args.queries, workdir)]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    if args.json:
        print(json.dumps({"machine": machine, "peak_rss_mb": peak, "results": results}, indent=2))
    else:
        print(markdown(results))
        print(f"\npeak RSS of the process: {peak:,.0f} MB; machine: {machine}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
