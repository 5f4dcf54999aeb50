"""Nearest-neighbour search: exact (numpy, float32) and approximate (a usearch HNSW graph) behind one small interface."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bertkit.index.quantize import Quantizer, top_rows

# Below this many live rows, exact search is used and no graph is built: it is as fast, and exact.
# `benchmarks/bench_index.py --crossover`, two runs (384-d, 2 CPU cores shared with other work, efSearch
# 256), median single-query latency, exact against the graph: 0.14-0.15 against 0.32-0.35 ms at 2,000
# rows, 0.47-0.48 against 0.53-0.59 ms at 10,000, 0.76-0.79 against 0.66-0.78 ms at 20,000 (a tie),
# 1.9-2.8 against 1.0-1.1 ms at 50,000; batches of 32 are faster exact up to 20,000 (5.6-6.3 against
# 7.1-8.5 ms). So the line is at 10,000 (an earlier run at efSearch 64 on a busier machine put it at 2,000).
EXACT_BELOW = 10_000
# HNSW parameters (the paper's M, efConstruction, efSearch). Real sentence embeddings are harder
# than clustered synthetic data: on 5,000 MiniLM vectors of rotten-tomatoes snippets, the share of
# queries whose top-10 equals exact search's was 95.5% at efSearch 64, 98% at 128 and 100% at 256,
# still well under a millisecond a query (tests/test_search.py holds it to 99% on real text).
CONNECTIVITY = 16
EXPANSION_ADD = 128
EXPANSION_SEARCH = 256
# The first rows go into the graph one at a time: threads inserting into a graph of a few hundred
# nodes link it poorly (measured: top-10 equal to exact for 97-100% of queries at 4,000 rows,
# varying run to run, against 100% every run serially). Serial insertion of this many costs a few
# seconds at most, and makes small graphs, like the tests', reproducible.
SERIAL_ROWS = 4096
# Exact search scores the rows in blocks so the [queries, rows] score matrix stays near 64 MB.
SCORE_BLOCK_BYTES = 64 << 20


def exact_search(matrix: np.ndarray, queries: np.ndarray, top_k: int,
                 dead: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The `top_k` rows of `matrix` with the highest inner product with each query, best first.

    `dead` is a sorted array of row numbers to skip (rows replaced by newer versions). Returns rows
    and scores [q, top_k]; slots beyond the number of live rows hold row -1 and score -inf.
    """
    q = len(queries)
    best_rows = np.zeros((q, 0), np.int64)
    best_scores = np.zeros((q, 0), np.float32)
    block = max(4096, SCORE_BLOCK_BYTES // (4 * max(q, 1)))
    dead = np.zeros(0, np.int64) if dead is None else dead
    for start in range(0, len(matrix), block):
        end = min(start + block, len(matrix))
        scores = queries @ matrix[start:end].T
        gone = dead[np.searchsorted(dead, start): np.searchsorted(dead, end)]
        if len(gone):
            scores[:, gone - start] = -np.inf
        if top_k < end - start:  # the block's own best first, so the merge below stays [q, 2 * top_k]
            local = np.argpartition(-scores, top_k - 1, axis=1)[:, :top_k]
            scores = np.take_along_axis(scores, local, 1)
        else:
            local = np.broadcast_to(np.arange(end - start), scores.shape)
        best_rows, best_scores = top_rows(np.concatenate([best_scores, scores], 1),
                                          np.concatenate([best_rows, local + start], 1), top_k)
    if best_rows.shape[1] < top_k:  # an empty matrix
        best_rows, best_scores = top_rows(best_scores, best_rows, top_k)
    return best_rows, best_scores


class AnnIndex:
    """An HNSW graph over row numbers, holding the rows' codes in the quantizer's storage."""

    def __init__(self, dim: int, quantizer: Quantizer, graph=None) -> None:
        from usearch.index import Index

        self.dim = dim
        self.quantizer = quantizer
        self.graph = graph if graph is not None else Index(
            ndim=dim, metric=quantizer.ann_metric, dtype=quantizer.ann_dtype, connectivity=CONNECTIVITY,
            expansion_add=EXPANSION_ADD, expansion_search=EXPANSION_SEARCH)

    def __len__(self) -> int:
        return len(self.graph)

    def add(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        serial = max(0, min(len(rows), SERIAL_ROWS - len(self.graph)))
        codes = self.quantizer.encode(vectors)
        for part, threads in ((slice(0, serial), 1), (slice(serial, len(rows)), 0)):  # 0: every core
            if len(rows[part]):
                self.graph.add(rows[part].astype(np.uint64), codes[part], threads=threads)

    def remove(self, rows: np.ndarray) -> None:
        if len(rows):
            self.graph.remove(rows.astype(np.uint64))

    def candidates(self, queries: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to `count` approximate nearest rows per query: rows [q, count] and a mask of the real ones."""
        found = self.graph.search(self.quantizer.encode(queries), count, threads=0)  # 0: every core
        if hasattr(found, "counts"):
            keys, counts = found.keys.astype(np.int64), found.counts
        else:  # usearch answers one query with its matches only, unpadded
            keys, counts = np.zeros((1, count), np.int64), np.array([len(found.keys)])
            keys[0, : counts[0]] = found.keys
        valid = np.arange(keys.shape[1])[None, :] < counts[:, None]
        return keys, valid

    def save(self, path: Path) -> None:
        self.graph.save(str(path))

    @classmethod
    def load(cls, path: Path, dim: int, quantizer: Quantizer) -> "AnnIndex | None":
        """The graph saved at `path`, or None when it is missing, unreadable or of other settings (then rebuild)."""
        from usearch.index import Index

        try:
            graph = Index.restore(str(path))
        except (OSError, ValueError, RuntimeError):
            return None
        if graph is None or graph.ndim != dim or str(graph.dtype).split(".")[-1].lower() != quantizer.ann_dtype:
            return None
        graph.expansion_search = EXPANSION_SEARCH  # a search-time setting: the saved file does not keep it
        return cls(dim, quantizer, graph)

