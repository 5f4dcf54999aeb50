"""The unigram baseline: every masked token predicted by its frequency in the training text, whatever surrounds it.

It is what a model that learned no context at all can score, so a masked-LM's figures mean something
only above it. Counts are the training text's word pieces (special tokens are never predicted);
probabilities are add-one (Laplace) smoothed over the vocabulary minus the special
tokens, so a token never seen in training costs log(total + vocabulary) nats, not infinity.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from bertkit.pretrain.evaluate import TOP_K, MLMScores


class UnigramBaseline:
    def __init__(self, vocab_size: int, special_ids: Sequence[int]):
        self.counts = np.zeros(vocab_size, dtype=np.int64)
        self.special_ids = np.asarray(sorted(set(special_ids)), dtype=np.int64)

    def update(self, ids: np.ndarray) -> None:
        """Count these piece ids; special tokens among them ([CLS], [SEP] of packed windows) are never targets: skipped."""
        counts = np.bincount(np.asarray(ids, dtype=np.int64), minlength=len(self.counts))[: len(self.counts)]
        counts[self.special_ids] = 0
        self.counts += counts

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def log_probs(self) -> torch.Tensor:
        """log p(token) for every id, float64 [vocab]; -inf for the special tokens, which are never targets."""
        counts = self.counts.astype(np.float64) + 1.0
        counts[self.special_ids] = 0.0  # never a target: no probability
        with np.errstate(divide="ignore"):
            return torch.from_numpy(np.log(counts / counts.sum()))

    def ranking(self, k: int = TOP_K) -> list[int]:
        """The k most frequent ids (ties: lower id first), specials excluded: the baseline's guesses for every mask."""
        counts = self.counts.copy()
        counts[self.special_ids] = -1  # below every ordinary id, even one never seen
        return np.argsort(-counts, kind="stable")[:k].tolist()

    def score(self, targets: torch.Tensor) -> MLMScores:
        """The baseline's sums over masked tokens whose original ids are `targets`."""
        targets = targets.detach().cpu().long()
        if not targets.numel():
            return MLMScores()
        top = torch.tensor(self.ranking(TOP_K))
        loss_sum = float(-self.log_probs()[targets].sum())
        return MLMScores(loss_sum, int((targets == top[0]).sum()), int(torch.isin(targets, top).sum()), targets.numel())

    def state_dict(self) -> dict:
        """What a run folder stores to rebuild the baseline without reading the corpus again."""
        return {"counts": self.counts.tolist(), "special_ids": self.special_ids.tolist()}

    @classmethod
    def from_state_dict(cls, state: dict) -> "UnigramBaseline":
        baseline = cls(len(state["counts"]), state["special_ids"])
        baseline.counts[:] = state["counts"]
        return baseline
