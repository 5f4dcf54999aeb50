"""TextDataset: texts (optionally paired) with class ids, the names behind them, and each row's number in its source."""
from __future__ import annotations

import collections
import hashlib
import json
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np


@dataclass
class TextDataset:
    """Texts (optionally paired) with integer labels, the names behind them, and original row ids."""

    texts: list[str]
    labels: list[int] | list[list[int]] | None
    label_names: list[str]
    text_pairs: list[str] | None = None
    source: str = ""
    # Row numbers in the original source (0-based, header not counted), carried through every
    # subset so a prediction or an error can always be traced back to the line it came from.
    row_ids: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.texts)
        if not self.row_ids:
            self.row_ids = list(range(n))
        for name, values in (("labels", self.labels), ("text_pairs", self.text_pairs), ("row_ids", self.row_ids)):
            if values is not None and len(values) != n:
                raise ValueError(f"TextDataset: {name} has {len(values)} entries but texts has {n}")

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def multi_label(self) -> bool:
        """True when each label is a list of 0/1 indicators, one per label name."""
        return bool(self.labels) and isinstance(self.labels[0], (list, tuple))

    def subset(self, indices: Iterable[int]) -> TextDataset:
        """A new dataset with the given positions, in the given order; row ids travel along."""
        idx = [int(i) for i in indices]
        return TextDataset(
            texts=[self.texts[i] for i in idx],
            labels=None if self.labels is None else [self.labels[i] for i in idx],
            label_names=list(self.label_names),
            text_pairs=None if self.text_pairs is None else [self.text_pairs[i] for i in idx],
            source=self.source,
            row_ids=[self.row_ids[i] for i in idx],
        )

    def label_counts(self) -> dict[str, int]:
        """Examples per label name (positives per label for multi-label), every name included."""
        if self.labels is None:
            return {}
        if self.multi_label:
            totals = np.asarray(self.labels, dtype=np.int64).sum(axis=0)
            return {name: int(totals[i]) for i, name in enumerate(self.label_names)}
        counts = collections.Counter(self.labels)
        return {name: int(counts.get(i, 0)) for i, name in enumerate(self.label_names)}

    def fingerprint(self) -> str:
        """sha256 of texts, pairs, labels and label names: identifies the exact data a model saw."""
        h = hashlib.sha256()
        # Length-prefixed JSON chunks keep it streaming and unambiguous (no separator collisions).
        for part in (self.texts, self.text_pairs, self.labels, self.label_names):
            blob = json.dumps(part, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            h.update(len(blob).to_bytes(8, "little"))
            h.update(blob)
        return h.hexdigest()

    def __repr__(self) -> str:
        kind = "multi-label" if self.multi_label else ("unlabelled" if self.labels is None else "labelled")
        return (f"TextDataset({len(self)} {kind} rows, labels={self.label_names}, "
                f"pairs={self.text_pairs is not None}, source={self.source!r})")
