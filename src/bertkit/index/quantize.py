"""How the ANN structure stores vectors (f32, f16, int8, binary), and exact float32 rescoring of its shortlist."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bertkit.errors import BertkitError

# Storage -> how many candidates per wanted hit the graph returns for float32 rescoring, by default.
# Measured on clustered data (tests/test_index_store.py; bench_index.py, 100k x 384, recall@10 raw
# -> rescored): f16 rounding only swaps near-ties at the 10th place, which 2x candidates undo;
# int8 0.980 -> 1.000 with 4x (2x sufficed in a first run); binary 0.33 -> 0.998 with 10x (sign
# bits keep little of a vector's direction).
RESCORE_FACTOR = {"f32": 1, "f16": 2, "int8": 4, "binary": 10}
STORAGES = tuple(RESCORE_FACTOR)
STORAGE_DEFAULT = "f16"  # half the memory of f32 for the graph, and the same hits after rescoring
# Symmetric int8 codes share one scale, so an int8 dot product stays proportional to the float one
# (per-dimension scales would reweight dimensions). The scale is a high quantile of |x|, not the
# maximum, so one outlier does not flatten every other value into a few levels.
INT8_QUANTILE = 0.9999


def check_storage(storage: str) -> str:
    if storage not in RESCORE_FACTOR:
        raise BertkitError(f"unknown vector storage '{storage}'; use one of {', '.join(STORAGES)}")
    return storage


@dataclass(frozen=True)
class Quantizer:
    """Turns float32 vectors into the codes the ANN structure holds; `scale` only matters for int8."""

    storage: str
    scale: float = 1.0

    @classmethod
    def fit(cls, storage: str, vectors: np.ndarray) -> "Quantizer":
        """A quantizer calibrated on `vectors` (the int8 scale); other storages need no calibration."""
        check_storage(storage)
        if storage != "int8" or len(vectors) == 0:
            return cls(storage)
        sample = vectors[:: max(1, len(vectors) // 100_000)]  # a quantile needs no more than ~100k rows
        top = float(np.quantile(np.abs(sample), INT8_QUANTILE))
        return cls(storage, top / 127 if top > 0 else 1.0)

    @property
    def ann_dtype(self) -> str:
        """The scalar kind the ANN library stores."""
        return {"f32": "f32", "f16": "f16", "int8": "i8", "binary": "b1"}[self.storage]

    @property
    def ann_metric(self) -> str:
        # Sign bits are compared by Hamming distance: fewer differing bits ~ a smaller angle.
        return "hamming" if self.storage == "binary" else "ip"

    def encode(self, vectors: np.ndarray) -> np.ndarray:
        """Codes for float32 `vectors` [n, d]: float32 (f16 is cast by the library), int8, or packed sign bits."""
        if self.storage == "int8":
            return np.clip(np.rint(vectors / self.scale), -127, 127).astype(np.int8)
        if self.storage == "binary":
            return np.packbits(vectors > 0, axis=1)
        return np.ascontiguousarray(vectors, dtype=np.float32)


def rescore(candidates: np.ndarray, valid: np.ndarray, queries: np.ndarray, matrix: np.ndarray,
            top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best `top_k` of each query's candidate rows by exact float32 inner product.

    `candidates` [q, m] are row numbers into `matrix`, `valid` [q, m] marks the real ones (an ANN
    search may return fewer than m). Returns rows and scores [q, top_k], best first; slots with no
    candidate hold row -1 and score -inf.
    """
    rows = np.where(valid, candidates, 0)
    scores = np.einsum("qmd,qd->qm", matrix[rows], queries, optimize=False).astype(np.float32)
    scores[~valid] = -np.inf
    return top_rows(scores, rows, top_k)


def top_rows(scores: np.ndarray, rows: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """The `top_k` highest `scores` [q, m] per query with their `rows`, best first, equal scores by row."""
    k = min(top_k, scores.shape[1])
    if k < scores.shape[1]:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        scores, rows = np.take_along_axis(scores, part, 1), np.take_along_axis(rows, part, 1)
    # The order is a pure function of (score, row), so exact and ANN paths list equal hits alike.
    order = np.lexsort((rows, -scores), axis=1) if scores.size else np.zeros_like(rows)
    scores, rows = np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)
    rows = np.where(np.isneginf(scores), -1, rows)
    if k < top_k:
        pad = ((0, 0), (0, top_k - k))
        scores, rows = np.pad(scores, pad, constant_values=-np.inf), np.pad(rows, pad, constant_values=-1)
    return rows, scores
