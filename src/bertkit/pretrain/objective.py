"""The masked-LM objective: masked windows packed into a batch, the head run on the masked positions only, the loss.

Only the masked rows of the encoder's output reach the vocabulary projection (about 15% of the
tokens: the projection onto 30,522 words is the costliest matmul of a small BERT), and the loss is
the cross-entropy of those rows against the original ids, in float32 even under autocast.
transformers' BertForMaskedLM projects every token and ignores the unmasked ones with label -100:
the same loss (tests/test_pretrain_objective.py checks it on the same checkpoint and batch).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bertkit.batching import Batch, group_by_budget
from bertkit.modeling import BertNetwork
from bertkit.pretrain.masking import EVAL_STREAM, TRAIN_STREAM, Masker, window_keys
from bertkit.pretrain.packing import TokenWindows

NEW_HEAD = ("the model has no masked-LM head: it gets a new one, initialised as BERT's is "
            "(its decoder tied to the word embeddings)")


def ensure_mlm_head(network: BertNetwork) -> str | None:
    """Add a masked-LM head when the network has none; returns the one line to tell the user, or None."""
    if network.mlm_head is not None:
        return None
    network.add_mlm_head()
    return NEW_HEAD


@dataclass
class MaskedBatch:
    """Masked windows packed into one Batch, and the packed rows the model must restore with their original ids."""

    batch: Batch  # the masked input ids; `index` holds the window numbers
    positions: torch.Tensor  # int64 [M]: rows of the packed tokens that were chosen
    targets: torch.Tensor  # int64 [M]: their original ids

    @property
    def num_masked(self) -> int:
        """How many tokens count in the loss (known on the host: no device sync)."""
        return self.targets.numel()

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "MaskedBatch":
        move = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        return replace(self, batch=self.batch.to(device, non_blocking), positions=move(self.positions),
                       targets=move(self.targets))

    def pin_memory(self) -> "MaskedBatch":
        return replace(self, batch=self.batch.pin_memory(), positions=self.positions.pin_memory(),
                       targets=self.targets.pin_memory())


def masked_batch(windows: TokenWindows, indices: Sequence[int], masker: Masker, seed: int, epoch: int,
                 stream: int = TRAIN_STREAM) -> MaskedBatch:
    """Windows `indices` masked for `epoch` and packed, on the CPU; each window is masked as if alone
    (its own key: masking.window_keys), so its mask does not depend on the batch."""
    indices = [int(i) for i in indices]
    if not indices:
        raise ValueError("a batch needs at least one window")
    pieces = [windows.window(i) for i in indices]
    lengths = [len(ids) for ids, _ in pieces]
    masked = masker.mask(np.concatenate([ids for ids, _ in pieces]), np.concatenate([s for _, s in pieces]), lengths,
                         window_keys(seed, epoch, indices, stream))
    cu = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=cu[1:])
    batch = Batch(
        input_ids=torch.from_numpy(masked.input_ids),
        token_type_ids=torch.zeros(len(masked.input_ids), dtype=torch.long),
        positions=torch.from_numpy(np.arange(cu[-1]) - np.repeat(cu[:-1], lengths)),
        cu_seqlens=torch.from_numpy(cu.astype(np.int32)),
        max_seqlen=max(lengths),
        index=indices,
    )
    return MaskedBatch(batch, torch.from_numpy(masked.positions), torch.from_numpy(masked.targets))


@dataclass
class MaskedWindows:
    """Windows as training examples for a batch plan: `lengths` to plan with, `batch(indices, epoch)` to build
    one, masked afresh each epoch; the mask of a window depends on (seed, epoch, its number) only."""

    windows: TokenWindows
    masker: Masker
    seed: int
    stream: int = TRAIN_STREAM

    def __len__(self) -> int:
        return len(self.windows)

    @property
    def lengths(self) -> list[int]:
        return self.windows.lengths

    def batch(self, indices: Sequence[int], epoch: int) -> MaskedBatch:
        return masked_batch(self.windows, indices, self.masker, self.seed, epoch, self.stream)


def evaluation_batches(windows: TokenWindows, masker: Masker, seed: int, max_tokens: int) -> list[MaskedBatch]:
    """Held-out windows masked once (EVAL_STREAM, epoch 0) in token-budget batches of similar lengths, in window
    order within a batch: the same masked tokens at every evaluation of a run."""
    plan = group_by_budget(windows.lengths, max(max_tokens, max(windows.lengths)))
    return [masked_batch(windows, sorted(indices), masker, seed, 0, EVAL_STREAM) for indices in plan]


class MaskedLM(nn.Module):
    """Just the parts masked-LM training uses (encoder and MLM head, not the pooler or a classifier), so that
    DistributedDataParallel waits for gradients of exactly those. `forward` gives the logits of the masked rows."""

    def __init__(self, network: BertNetwork):
        super().__init__()
        if network.mlm_head is None:
            raise ValueError("the network has no masked-LM head; call ensure_mlm_head first")
        self.encoder, self.mlm_head = network.encoder, network.mlm_head

    def forward(self, batch: MaskedBatch) -> torch.Tensor:
        """[M, vocab] logits of the masked rows (in the autocast dtype, if any)."""
        states = self.encoder(batch.batch)
        return self.mlm_head(states[batch.positions])


def masked_lm_loss(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of the masked rows' logits against their original ids, in float32; "sum" for callers that
    normalise over a whole accumulation group (or over every rank) themselves."""
    return F.cross_entropy(logits.float(), targets, reduction=reduction)
