"""Splits: seeded, stratified train/test and train/validation/test cuts that keep every class on both sides."""
from __future__ import annotations

import numpy as np

from bertkit.data.dataset import TextDataset
from bertkit.errors import BertkitError


def _strata(dataset: TextDataset) -> np.ndarray:
    if dataset.labels is None:
        return np.zeros(len(dataset), dtype=np.int64)
    if dataset.multi_label:
        # Multi-label rows are stratified on their first positive label; rows with none form their own group.
        return np.array([next((j for j, v in enumerate(row) if v), -1) for row in dataset.labels], dtype=np.int64)
    return np.asarray(dataset.labels, dtype=np.int64)


def _resolve_size(size: float | int, n: int, what: str) -> int:
    if isinstance(size, (bool, np.bool_)):
        raise BertkitError(f"{what} must be a fraction in (0, 1) or a row count, not {size!r}")
    if isinstance(size, (int, np.integer)):
        if not 0 < size < n:
            raise BertkitError(f"{what}={size} rows is impossible with {n} rows; pass between 1 and {n - 1}")
        return int(size)
    if not 0.0 < float(size) < 1.0:
        raise BertkitError(f"{what}={size} must be a fraction between 0 and 1 (e.g. 0.1) or a row count")
    k = int(round(float(size) * n))
    if not 0 < k < n:
        raise BertkitError(f"{what}={size} of {n} rows leaves a side empty; use more data or a different size")
    return k


def _allocate(counts: np.ndarray, total: int) -> np.ndarray:
    """Per-class test counts summing (nearly) to total, proportional by largest remainder."""
    n = counts.sum()
    exact = counts * (total / n)
    alloc = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - alloc), kind="stable")
    for j in order[: total - int(alloc.sum())]:
        alloc[j] += 1
    # Every class with >= 2 examples gets at least one on each side; singletons stay in train.
    alloc = np.where(counts >= 2, np.clip(alloc, 1, counts - 1), 0)
    return alloc


def stratified_split(dataset: TextDataset, test_size: float | int = 0.1, seed: int = 0) -> tuple[TextDataset, TextDataset]:
    """(train, test) split per class in proportion, seeded and deterministic; rows keep their original order."""
    n = len(dataset)
    if n < 2:
        raise BertkitError(f"cannot split {n} row(s); need at least 2")
    k = _resolve_size(test_size, n, "test_size")
    strata = _strata(dataset)
    classes, inverse, counts = np.unique(strata, return_inverse=True, return_counts=True)
    alloc = _allocate(counts, k)
    rng = np.random.default_rng(seed)
    test_idx: list[int] = []
    for c in range(len(classes)):
        members = np.flatnonzero(inverse == c)
        test_idx.extend(rng.permutation(members)[: alloc[c]].tolist())
    test_mask = np.zeros(n, dtype=bool)
    test_mask[test_idx] = True
    if not test_mask.any():
        raise BertkitError(f"cannot split {n} rows: every class has a single example, so none can go to the "
                           f"held-out side; use more data per class")
    return dataset.subset(np.flatnonzero(~test_mask)), dataset.subset(np.flatnonzero(test_mask))


def train_val_test_split(dataset: TextDataset, val_size: float | int = 0.1, test_size: float | int = 0.1,
                         seed: int = 0) -> tuple[TextDataset, TextDataset, TextDataset]:
    """(train, validation, test): stratified; fractions are of the whole dataset, counts are rows."""
    n = len(dataset)
    n_test = _resolve_size(test_size, n, "test_size")
    n_val = _resolve_size(val_size, n, "val_size")
    if n_test + n_val >= n:
        raise BertkitError(f"val_size + test_size ({n_val} + {n_test} rows) leave no training rows out of {n}; use smaller sizes")
    rest, test = stratified_split(dataset, n_test, seed=seed)
    # A different seed for the second cut so the two draws are not correlated.
    train, val = stratified_split(rest, n_val, seed=seed + 1)
    return train, val, test
