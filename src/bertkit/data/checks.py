"""Split checks: the data problems that make training or evaluation misleading, as warnings."""
from __future__ import annotations

import collections
from typing import Any, Iterable, Sequence

import numpy as np

from bertkit.data.dataset import TextDataset


def _label_keys(labels: Sequence[Any]) -> list[Any]:
    return [tuple(v) if isinstance(v, (list, tuple, np.ndarray)) else v for v in labels]


def looks_sorted_by_label(labels: Sequence[Any]) -> bool:
    """True when the label sequence changes value far less often than a random order would (n >= 20).

    Under a random permutation of the same labels, the expected number of adjacent changes is
    (n-1) * (1 - sum_k n_k (n_k - 1) / (n (n - 1))). Sorted data changes only (classes - 1) times; we
    flag fewer than 10% of the expected changes. Since a sequence always has at least (classes - 1)
    changes, small or very imbalanced samples (expected < 10 * (classes - 1)) can never be flagged.
    """
    keys = _label_keys(labels)
    n = len(keys)
    if n < 20:
        return False
    changes = sum(1 for a, b in zip(keys, keys[1:]) if a != b)
    counts = np.array(list(collections.Counter(keys).values()), dtype=np.float64)
    expected = (n - 1) * (1.0 - float((counts * (counts - 1)).sum()) / (n * (n - 1)))
    return expected > 0 and changes < 0.1 * expected


def _present_classes(ds: TextDataset) -> set[str]:
    if ds.labels is None:
        return set()
    return {name for name, count in ds.label_counts().items() if count > 0}


def _normalise_text(text: str, pair: str | None) -> tuple[str, str | None]:
    norm = " ".join(text.lower().split())
    return norm, (" ".join(pair.lower().split()) if pair is not None else None)


def _names(names: Iterable[str], limit: int = 10) -> str:
    names = list(names)
    head = ", ".join(names[:limit])
    return head + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_splits(splits: dict[str, TextDataset]) -> list[str]:
    """Warnings about splits that would make training or evaluation misleading; empty when all is well.

    Checks: a split with a single class; classes in train missing from another split; a split that
    looks sorted by label; texts duplicated across train and another split. 'train' is the split
    named so, else the first one.
    """
    warns: list[str] = []
    if not splits:
        return warns
    train_name = "train" if "train" in splits else next(iter(splits))
    train = splits[train_name]

    names_seen = {tuple(ds.label_names) for ds in splits.values() if ds.labels is not None}
    if len(names_seen) > 1:
        warns.append(f"splits disagree on label names ({' vs '.join(str(list(n)) for n in names_seen)}); "
                     f"load the other splits with the train split's label names")

    for name, ds in splits.items():
        if ds.labels is None or len(ds) == 0:
            continue
        present = _present_classes(ds)
        if len(present) == 1:
            warns.append(f"split '{name}' has a single class ({next(iter(present))}) in {len(ds)} rows; "
                         f"a model cannot learn or be judged on one class — check the label column and the split")
        if len(ds) >= 20 and looks_sorted_by_label(ds.labels):
            keys = _label_keys(ds.labels)
            changes = sum(1 for a, b in zip(keys, keys[1:]) if a != b)
            warns.append(f"split '{name}' looks sorted by label (the label changes only {changes} time(s) "
                         f"in {len(ds)} rows); shuffle before splitting by position and training")

    train_classes = _present_classes(train)
    for name, ds in splits.items():
        if name == train_name or ds.labels is None or train.labels is None:
            continue
        missing = [c for c in train.label_names if c in train_classes and c not in _present_classes(ds)]
        if missing:
            warns.append(f"class(es) {_names(missing)} in '{train_name}' but missing from '{name}'; "
                         f"its scores cannot cover them — use a stratified split")

    train_pairs = train.text_pairs or [None] * len(train)
    train_keys = {_normalise_text(t, p) for t, p in zip(train.texts, train_pairs)}
    for name, ds in splits.items():
        if name == train_name:
            continue
        pairs = ds.text_pairs or [None] * len(ds)
        dupes = sum(1 for t, p in zip(ds.texts, pairs) if _normalise_text(t, p) in train_keys)
        if dupes:
            warns.append(f"{dupes} of {len(ds)} text(s) in '{name}' also appear in '{train_name}' "
                         f"(ignoring case and spacing); its scores will be optimistic — deduplicate before splitting")
    return warns
