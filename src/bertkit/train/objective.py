"""The seam between the training loop and what it trains: an Objective gives the batches, the loss and the evaluation.

`Trainer.fit` owns everything a run does whatever it learns: the seeded batch plan walked epoch by
epoch, gradient accumulation, AdamW and the warm-up/decay schedule, clipping, the non-finite check,
checkpoints and exact resume, DDP, the metrics.jsonl records, early stopping and the best model, the
training-curve plot and the run folder. An objective says the rest, in a few methods:

    batches(generator)          the training examples as a BatchStream: a seeded plan per epoch, the
                                same on every rank, drawn from `generator` alone (so a resume replays it);
                                its batch(indices, epoch) may build other inputs each epoch (fresh masks)
    module(network)             the parts of the network the loss runs through, as one module whose
                                forward(batch) gives the loss's input (what DDP wraps and synchronises)
    weight(stream, group, epoch)  how much a step's examples count: the divisor of its summed loss, known
                                before any forward pass (examples, summed class weights, masked tokens)
    loss(outputs, batch, real)  the summed loss of the batch's first `real` sequences (all when None; DDP
                                tops a shard up with repeats, which must not count)
    evaluate()                  a report on the evaluation data: "loss" and the metrics `config.metric`
                                may name (under DDP every rank gets the same report)

Fine-tuning a classifier is `bertkit.train.classifier.Classification`. Masked-LM pre-training
(`bertkit.pretrain.training.MaskedLanguageModeling`) is the same loop with another objective: packed
windows masked afresh each epoch from `batches`, the MLM head as `module`, the masked tokens as
`weight`, cross-entropy over them as `loss`, and masked loss, perplexity and top-k accuracy from
`evaluate`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Sequence

import torch
from torch import nn

from bertkit.batching import Batch
from bertkit.train.batches import BatchStream


class Objective:
    """What a training run learns. Subclasses implement the five methods above; the rest have defaults."""

    # The report keys shown on the progress line after each evaluation, in order (those present).
    shown: ClassVar[tuple[str, ...]] = ("loss",)
    # The command that resumes an interrupted run of this objective (said when a run stops).
    command: ClassVar[str] = "bertkit train"

    # -- training -----------------------------------------------------------------------------------
    def batches(self, generator: torch.Generator) -> BatchStream:
        raise NotImplementedError

    def module(self, network: nn.Module) -> nn.Module:
        raise NotImplementedError

    def weight(self, stream: BatchStream, group: Sequence[Sequence[int]], epoch: int = 0) -> float | torch.Tensor:
        raise NotImplementedError

    def counted(self, stream: BatchStream, group: Sequence[Sequence[int]], epoch: int = 0) -> int:
        """What the logged training loss is a mean over, for a step's group: its examples by default (a loss
        averaged over tokens counts them here)."""
        return sum(len(indices) for indices in group)

    def train_figures(self, loss: float) -> dict[str, float]:
        """Figures derived from a read-out's mean training loss, logged and shown beside it (e.g. perplexity)."""
        return {}

    def loss(self, outputs: torch.Tensor, batch: Batch, real: int | None = None) -> torch.Tensor:
        raise NotImplementedError

    # -- evaluation ---------------------------------------------------------------------------------
    @property
    def evaluates(self) -> bool:
        """Whether there are evaluation data (without them the run keeps its last weights and selects nothing)."""
        return False

    def evaluate(self) -> dict[str, Any]:
        raise NotImplementedError

    def test(self) -> dict[str, Any] | None:
        """A held-out report of the final model, scored once after training (None: no test data)."""
        return None

    # -- the run's record ---------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """A hash of the training data: a resumed run must train on the same."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """What the objective adds to training_record.json (data, labels, settings)."""
        return {}

    def notes(self) -> dict[str, Any]:
        """What metrics.json needs beside the numbers to be read right (how a loss was averaged, ...)."""
        return {}

    def write_files(self, folder: Path, metrics: dict[str, Any] | None, test: dict[str, Any] | None) -> None:
        """Extra files for the finished run folder (plots of the final evaluation); a failure only warns."""
