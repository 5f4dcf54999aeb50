"""Held-out masked-LM figures: masked-token loss, perplexity, top-1 and top-5 accuracy, for the model and a baseline.

Evaluation batches are masked once, on the evaluation stream (`masking.EVAL_STREAM`, a fixed epoch),
so every evaluation of a run scores the same masked tokens and its figures are comparable step to
step. Scores are sums (`MLMScores`) until the end, so shards scored on several processes add up
exactly before the figures are taken.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

import torch

from bertkit.device import autocast
from bertkit.modeling import BertNetwork
from bertkit.pretrain.objective import MaskedBatch, MaskedLM, masked_lm_loss

if TYPE_CHECKING:
    from bertkit.pretrain.baseline import UnigramBaseline

TOP_K = 5  # the wider of the two accuracies reported (top-1 and top-5)


@dataclass
class MLMScores:
    """Sums over masked tokens: loss (nats), hits at rank 1 and within the top TOP_K, and the tokens counted."""

    loss_sum: float = 0.0
    top1: int = 0
    top5: int = 0
    count: int = 0

    def __add__(self, other: "MLMScores") -> "MLMScores":
        return MLMScores(self.loss_sum + other.loss_sum, self.top1 + other.top1, self.top5 + other.top5,
                         self.count + other.count)

    def as_tensor(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """The four sums as one float64 tensor, for an all-reduce across processes."""
        return torch.tensor([self.loss_sum, self.top1, self.top5, self.count], dtype=torch.float64, device=device)

    @classmethod
    def from_tensor(cls, t: torch.Tensor) -> "MLMScores":
        loss_sum, top1, top5, count = t.tolist()
        return cls(loss_sum, round(top1), round(top5), round(count))

    def figures(self) -> dict[str, float | int | None]:
        """Means per masked token: loss, perplexity (exp of the mean loss), top1 and top5 accuracy."""
        if not self.count:
            return {"masked_tokens": 0, "loss": None, "perplexity": None, "top1": None, "top5": None}
        loss = self.loss_sum / self.count
        return {"masked_tokens": self.count, "loss": loss, "perplexity": math.exp(min(loss, 700.0)),
                "top1": self.top1 / self.count, "top5": self.top5 / self.count}


def score_logits(logits: torch.Tensor, targets: torch.Tensor) -> MLMScores:
    """The sums for one batch of masked rows' logits [M, vocab] against their original ids [M]."""
    if not targets.numel():
        return MLMScores()
    top = logits.topk(min(TOP_K, logits.shape[-1]), dim=-1).indices
    hits = top == targets[:, None]
    return MLMScores(float(masked_lm_loss(logits, targets, reduction="sum")), int(hits[:, 0].sum()),
                     int(hits.any(dim=-1).sum()), int(targets.numel()))


@torch.inference_mode()
def score_batches(network: BertNetwork, batches: Iterable[MaskedBatch], device: torch.device | str | None = None) -> MLMScores:
    """The model's sums over every masked token of `batches` (moved to `device`, default the network's), in eval mode."""
    device = torch.device(device) if device is not None else network.encoder.embeddings.word.weight.device
    model = MaskedLM(network)
    was_training = network.training
    network.eval()
    total = MLMScores()
    try:
        for batch in batches:
            batch = batch.to(device)
            with autocast(device):
                logits = model(batch)
            total = total + score_logits(logits.float(), batch.targets)
    finally:
        network.train(was_training)
    return total


def evaluate_mlm(network: BertNetwork, batches: Iterable[MaskedBatch], baseline: "UnigramBaseline | None" = None,
                 device: torch.device | str | None = None) -> dict:
    """The model's figures on held-out masked batches, and the unigram baseline's on the same masked tokens."""
    batches = list(batches)
    out = {"model": score_batches(network, batches, device).figures()}
    if baseline is not None:
        out["unigram"] = sum((baseline.score(b.targets) for b in batches), MLMScores()).figures()
    return out
