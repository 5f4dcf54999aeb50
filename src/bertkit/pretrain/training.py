"""Masked-LM training as a training Objective: packed windows masked afresh each epoch, cross-entropy over the masked tokens, held-out figures beside the unigram baseline's.

The trainer (bertkit.train.trainer) walks the seeded batch plan over the windows' lengths; each
batch is masked for its epoch when it is built (`MaskedStream.build`), so every epoch sees a fresh
mask and a resume replays the same ones (a window's mask depends on the seed, the epoch and its
number alone: bertkit.pretrain.masking). A step's loss is its masked tokens' summed cross-entropy
divided by how many tokens were masked in the whole step (every micro-batch, every rank), so the
update is the one a single batch of all of them would make.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bertkit.errors import BertkitError
from bertkit.model import Model
from bertkit.modeling import BertNetwork
from bertkit.pretrain.evaluate import MLMScores, score_batches
from bertkit.pretrain.masking import Masker
from bertkit.pretrain.objective import (MaskedBatch, MaskedLM, MaskedWindows, ensure_mlm_head, evaluation_batches,
                                        masked_lm_loss)
from bertkit.pretrain.prepare import PretrainData
from bertkit.train import distributed
from bertkit.train.batches import BatchStream, seed_everything
from bertkit.train.config import TrainConfig
from bertkit.train.objective import Objective
from bertkit.train.run_folder import MLM_CURVES, RECORDS


class MaskedStream(BatchStream):
    """Training windows as the trainer's BatchStream: a seeded plan per epoch over their lengths, each batch masked
    for its epoch. A step's batches are masked once: counting its masked tokens (`masked_tokens`) keeps them for
    `build` to hand out."""

    def __init__(self, examples: MaskedWindows, *, batch_tokens: int | None, batch_size: int | None,
                 generator: torch.Generator, device: torch.device, bucket_size: int = 0):
        super().__init__(examples, batch_tokens=batch_tokens, batch_size=batch_size, shuffle=True, generator=generator,
                         device=device, bucket_size=bucket_size, lengths=examples.lengths)
        self.examples = examples
        self._made: dict[tuple, MaskedBatch] = {}  # the current step's batches, masked on the CPU
        self._counted: tuple[tuple, int] | None = None  # (the step's key, its masked tokens)

    @staticmethod
    def _key(indices: Sequence[int], epoch: int) -> tuple:
        return epoch, tuple(int(i) for i in indices)

    def masked_tokens(self, group: Sequence[Sequence[int]], epoch: int) -> int:
        """How many tokens are masked in the step's batches (whole global batches: the same on every rank)."""
        key = (epoch, tuple(self._key(indices, epoch) for indices in group))
        if self._counted is None or self._counted[0] != key:
            self._made = {}  # an earlier step's (or, under DDP, the unsharded) batches are done with
            for indices in group:
                self._made[self._key(indices, epoch)] = self.examples.batch(indices, epoch)
            self._counted = key, sum(b.num_masked for b in self._made.values())
        return self._counted[1]

    def build(self, indices: Sequence[int], epoch: int = 0) -> MaskedBatch:  # type: ignore[override]
        made = self._made.pop(self._key(indices, epoch), None)
        return made if made is not None else self.examples.batch(indices, epoch)


class MaskedLanguageModeling(Objective):
    """Train `model`'s encoder and masked-LM head on `data` (bertkit.pretrain.prepare_data), BERT's way.

    A model without an MLM head gets one, initialised as BERT's is (its weights drawn from the seed
    alone); `head_note` is then the line to tell the user. Evaluation (when `data` holds held-out
    windows) scores the same masked tokens every time: masked loss, perplexity, top-1 and top-5, with
    the unigram baseline's figures on those tokens under "unigram".
    """

    shown = ("loss", "perplexity", "top1", "top5")
    command = "bertkit pretrain"

    def __init__(self, model: Model, data: PretrainData, config: TrainConfig, mask_prob: float, masking: str):
        self.model, self.data, self.config = model, data, config
        self.masker = Masker.for_tokenizer(model.tokenizer, mask_prob, masking)
        seed_everything(config.seed)  # a new head's initial weights depend on the seed alone
        self.head_note = ensure_mlm_head(model.network)
        self.examples = MaskedWindows(data.train, self.masker, config.seed)
        self.held_out: list[MaskedBatch] | None = None
        self.unigram: dict[str, Any] | None = None
        if data.eval is not None:
            budget = config.eval_batch_tokens or model.default_batch_tokens
            self.held_out = evaluation_batches(data.eval, self.masker, config.seed, budget)
            masked = sum(b.num_masked for b in self.held_out)
            if not masked:
                raise BertkitError(f"the held-out text ({data.eval.num_tokens:,} tokens) is too short for any token to "
                                   f"be masked; pass more evaluation text")
            self.unigram = sum((data.baseline.score(b.targets) for b in self.held_out), MLMScores()).figures()

    @property
    def device(self) -> torch.device:
        return self.model.device

    # -- the Objective ----------------------------------------------------------------------------
    def batches(self, generator: torch.Generator) -> MaskedStream:
        cfg = self.config
        return MaskedStream(self.examples, batch_tokens=cfg.batch_tokens, batch_size=cfg.sequences_per_batch,
                            generator=generator, device=self.device, bucket_size=cfg.bucket_size)

    def module(self, network: BertNetwork) -> nn.Module:
        return MaskedLM(network)

    def weight(self, stream: MaskedStream, group: Sequence[Sequence[int]], epoch: int = 0) -> float:
        # A step in which nothing was masked (tiny windows) adds nothing: its zero loss is divided by 1, not 0.
        return float(max(1, stream.masked_tokens(group, epoch)))

    def counted(self, stream: MaskedStream, group: Sequence[Sequence[int]], epoch: int = 0) -> int:
        return stream.masked_tokens(group, epoch)

    def loss(self, outputs: torch.Tensor, batch: MaskedBatch, real: int | None = None) -> torch.Tensor:
        if real is None:
            return masked_lm_loss(outputs, batch.targets, "sum")
        # Under DDP a shard ends with repeated windows, which must not count: only masked rows of the first `real`.
        keep = batch.positions < batch.batch.cu_seqlens[real]
        return (F.cross_entropy(outputs.float(), batch.targets, reduction="none") * keep).sum()

    def train_figures(self, loss: float) -> dict[str, float]:
        return {"perplexity": _perplexity(loss)}

    @property
    def evaluates(self) -> bool:
        return self.held_out is not None

    def evaluate(self) -> dict[str, Any]:
        """Masked loss, perplexity, top-1 and top-5 on the held-out masked tokens, and the unigram baseline's.

        Under DDP each rank scores every world_size-th batch and the sums are added up, so every rank
        reports the same figures as one process would.
        """
        if self.held_out is None:
            raise BertkitError("there is no held-out text to evaluate on; pass eval_data or an eval_fraction above 0")
        network, batches = self.model.network, self.held_out
        if distributed.is_distributed():
            mine = score_batches(network, batches[distributed.rank()::distributed.world_size()], self.device)
            scores = MLMScores.from_tensor(distributed.all_reduce_sum_(mine.as_tensor(self.device)).cpu())
        else:
            scores = score_batches(network, batches, self.device)
        return {**scores.figures(), "unigram": self.unigram}

    # -- the run's record -------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """The windows trained and evaluated on, and how they are masked: a resume must use the same."""
        h = hashlib.sha256()
        for windows in (self.data.train, self.data.eval):
            if windows is not None:
                h.update(np.ascontiguousarray(windows.tokens).tobytes())
                h.update(np.ascontiguousarray(windows.offsets).tobytes())
            h.update(b"|")
        h.update(f"{self.masker.mask_prob}:{self.masker.masking}".encode())
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        return {"objective": "masked-lm", "data": self.data.report,
                "masking": {"mask_prob": self.masker.mask_prob, "mask": self.masker.masking},
                "mlm_head": "new" if self.head_note else "continued", "unigram_baseline": self.unigram}

    def notes(self) -> dict[str, Any]:
        return {"loss": "mean cross-entropy (nats) over the held-out masked tokens, the same tokens at every "
                        "evaluation; perplexity = exp(loss); top1/top5: share of masked tokens whose original id is "
                        "the model's first / among its first five guesses",
                "unigram": "the same figures for predicting every masked token by its frequency in the training text"}

    def write_files(self, folder: Path, metrics: dict[str, Any] | None, test: dict[str, Any] | None) -> None:
        from bertkit.pretrain.plots import plot_mlm_curves

        if self.held_out is not None:
            plot_mlm_curves(folder / RECORDS, folder / MLM_CURVES)


def _perplexity(loss: float) -> float:
    return math.exp(min(loss, 700.0))  # beyond e^700 a float overflows; such a model is lost anyway
