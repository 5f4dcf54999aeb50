"""Training data as batches: one seed, each text encoded once as its windows, a seeded length-bucketed plan per epoch."""
from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch

from bertkit.batching import Batch, group_by_budget, pack
from bertkit.data import TextDataset
from bertkit.errors import BertkitError, OptionError
from bertkit.inputs import warn_truncated
from bertkit.model import Model
from bertkit.tasks.base import documents
from bertkit.tokenizer import Encoding
from bertkit.windows import Document, Plan


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA) and return a torch.Generator seeded the same way.

    The global torch RNG drives dropout and weight initialisation; the returned generator is the
    root of everything else the training code draws (batch order), so one integer fixes a run.
    """
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return torch.Generator().manual_seed(seed)


def stratified_subset(dataset: TextDataset, n: int, seed: int = 0, param: str = "limit") -> TextDataset:
    """Exactly `n` rows, drawn per class in proportion (seeded), in their original order; all rows if n >= len.

    Every class keeps at least one row, so `n` must be at least the number of classes (an OptionError
    naming `param` says so). Multi-label rows are grouped by their first label, as stratified_split does.
    """
    if n is None or n >= len(dataset):
        return dataset
    if n < 1:
        raise OptionError(param, f"must be at least 1, not {n}")
    classes, members = _strata(dataset)
    if n < len(classes):
        raise OptionError(param, f"{n} is too small: a stratified subset keeps at least one example of each of the "
                                 f"{len(classes)} classes of {dataset.source or 'the data'}; use at least {len(classes)}")
    counts = np.array([len(m) for m in members])
    take = _proportional(counts, n)
    rng = np.random.default_rng(seed)
    chosen = [i for c, rows in enumerate(members) for i in rng.permutation(rows)[: take[c]].tolist()]
    return dataset.subset(sorted(chosen))


def _strata(dataset: TextDataset) -> tuple[list, list[np.ndarray]]:
    """The classes (multi-label: first positive label, -1 for none) and each one's row positions."""
    if dataset.multi_label:
        keys = np.array([next((j for j, v in enumerate(row) if v), -1) for row in dataset.labels], dtype=np.int64)
    else:
        keys = np.asarray(dataset.labels if dataset.labels is not None else [0] * len(dataset), dtype=np.int64)
    classes, inverse = np.unique(keys, return_inverse=True)
    return classes.tolist(), [np.flatnonzero(inverse == c) for c in range(len(classes))]


def _proportional(counts: np.ndarray, n: int) -> np.ndarray:
    """Per-class counts summing to exactly n (n >= classes), proportional by largest remainder, at least 1 each."""
    exact = counts * (n / counts.sum())
    take = np.floor(exact).astype(np.int64)
    for c in np.argsort(-(exact - take), kind="stable")[: n - int(take.sum())]:
        take[c] += 1
    # A class too small for its share to round up to one gets one, from the class with the most.
    for c in np.flatnonzero(take == 0):
        take[int(np.argmax(take))] -= 1
        take[c] = 1
    return take


@dataclass
class Windows:
    """A dataset as the sequences the model reads: every document's windows, document after document.

    Under `long="chunk"` a text longer than the window becomes several sequences, each a training
    example with its document's label; otherwise each text is one sequence.
    """

    documents: list[Document]
    labels: Sequence | None = None  # per document
    encodings: list[Encoding] = field(init=False)  # every window, in document order
    owners: list[int] = field(init=False)  # the document each window comes from
    bounds: list[int] = field(init=False)  # document d's windows are encodings[bounds[d]:bounds[d + 1]]

    def __post_init__(self) -> None:
        self.encodings = [w for d in self.documents for w in d.windows]
        self.owners = [i for i, d in enumerate(self.documents) for _ in d.windows]
        self.bounds = [0, *itertools.accumulate(len(d.windows) for d in self.documents)]

    @property
    def window_labels(self) -> list | None:
        """Each window's label: its document's."""
        return [self.labels[i] for i in self.owners] if self.labels is not None else None

    def __len__(self) -> int:
        return len(self.documents)


def window_dataset(model: Model, dataset: TextDataset, max_length: int | None = None,
                   plan: Plan | None = None) -> Windows:
    """Tokenize a dataset once and cut each text (and pair) into the windows `plan` asks for, `max_length` tokens each.

    `plan` defaults to the tokenizer's own cut of the text's end, whatever the model's saved plan is
    (training says which plan it uses). Texts cut short are counted in a warning.
    """
    limit = min(max_length or model.max_length, model.max_length)
    docs = documents(model, list(dataset.texts), list(dataset.text_pairs) if dataset.text_pairs is not None else None,
                     limit, plan if plan is not None else Plan())
    warn_truncated([d.unseen for d in docs], limit)
    return Windows(docs, dataset.labels)


def encode_dataset(model: Model, dataset: TextDataset, max_length: int | None = None,
                   plan: Plan | None = None) -> list[Encoding]:
    """Tokenize a dataset once (texts and pairs), truncating to `max_length` and saying how many were cut; under a
    chunk `plan`, every window of every text in order (`window_dataset` says which text each is from)."""
    return window_dataset(model, dataset, max_length, plan).encodings


class BatchStream:
    """Token-budget batches of one encoded dataset, in a fresh seeded order each epoch.

    Examples of similar length share a batch (so the padded attention view is nearly free), and the
    batches are shuffled between buckets. The plan for epoch `e` depends only on the generator's
    seed and `e`, so a resumed run can jump straight to batch `k` of epoch `e`.
    """

    def __init__(
        self,
        encodings: Sequence[Encoding],
        labels: Sequence | None = None,
        *,
        batch_tokens: int | None = None,
        batch_size: int | None = None,
        shuffle: bool = True,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        bucket_size: int = 64,
        lengths: Sequence[int] | None = None,
    ):
        if not len(encodings):
            raise BertkitError("no examples to batch; the dataset is empty")
        if labels is not None and len(labels) != len(encodings):
            raise ValueError(f"{len(labels)} labels for {len(encodings)} encodings")
        if batch_tokens is None and batch_size is None:
            raise BertkitError("give a batch size (--batch-size) or a token budget (--batch-tokens)")
        self.encodings = encodings
        self.labels = labels
        # Given when the examples are not sequences themselves (a subclass builds their batches).
        self.lengths = list(lengths) if lengths is not None else [len(e) for e in encodings]
        longest = max(self.lengths)
        # A batch-size-only plan still needs a token cap for group_by_budget; size x longest never binds.
        self.max_tokens = batch_tokens if batch_tokens is not None else batch_size * longest
        if self.max_tokens < longest:
            raise BertkitError(f"--batch-tokens {batch_tokens} is smaller than the longest example "
                               f"({longest} tokens); raise it or lower --max-length")
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.bucket_size = bucket_size
        self.device = torch.device(device) if device is not None else None
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        # One draw at construction: later uses of the generator cannot change any epoch's plan.
        self.base_seed = int(torch.randint(0, 2**62, (1,), generator=gen).item()) if shuffle else 0
        self._plans: dict[int, list[list[int]]] = {}

    def __len__(self) -> int:
        """Batches in epoch 0 (other epochs differ by a few at most under a token budget)."""
        return self.num_batches(0)

    def plan(self, epoch: int) -> list[list[int]]:
        """Example indices of each batch of `epoch`, in the order they are trained on."""
        if epoch not in self._plans:
            seed = random.Random(f"{self.base_seed}:{epoch}").getrandbits(63)
            self._plans[epoch] = group_by_budget(self.lengths, self.max_tokens, self.batch_size,
                                              shuffle=self.shuffle, seed=seed, bucket_size=self.bucket_size)
            while len(self._plans) > 4:  # plans are cheap to rebuild; keep only the newest few
                del self._plans[next(iter(self._plans))]
        return self._plans[epoch]

    def num_batches(self, epoch: int) -> int:
        return len(self.plan(epoch))

    @property
    def same_count_every_epoch(self) -> bool:
        """Whether every epoch has as many batches as epoch 0: true unless a token budget packs a shuffled order.

        A size-only plan caps at batch_size x longest tokens, which never binds before the size does.
        """
        size_only = self.batch_size is not None and self.max_tokens >= self.batch_size * max(self.lengths)
        return size_only or not self.shuffle

    def batch(self, indices: Sequence[int], epoch: int = 0) -> Batch:
        """The given examples' batch for `epoch` (`build`), on the device."""
        batch = self.build(indices, epoch)
        if self.device is None or self.device.type == "cpu":
            return batch
        if self.device.type == "cuda":  # pinned memory lets the copy overlap with compute
            return batch.pin_memory().to(self.device, non_blocking=True)
        return batch.to(self.device)

    def build(self, indices: Sequence[int], epoch: int = 0) -> Batch:
        """Pack the given examples (with their labels, if any) on the CPU; the same every epoch here (a subclass may
        build other inputs each epoch, as masked-LM training masks afresh)."""
        encs = [self.encodings[i] for i in indices]
        labels = [self.labels[i] for i in indices] if self.labels is not None else None
        return pack([e.ids for e in encs], [e.type_ids for e in encs], labels, index=list(indices))

    def epoch(self, epoch: int = 0, start: int = 0) -> Iterator[Batch]:
        """The batches of `epoch`, skipping the first `start` (where a resumed run picks up)."""
        for indices in self.plan(epoch)[start:]:
            yield self.batch(indices, epoch)
