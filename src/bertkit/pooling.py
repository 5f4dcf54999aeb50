"""Pooling: how a text's token vectors become one vector, computed on a packed batch (no padded copy)."""
from __future__ import annotations

import math
import typing
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # only annotations: the index reads POOLINGS without importing torch
    import torch

    from bertkit.batching import Batch

Pooling = Literal["mean", "cls", "max", "mean_sqrt_len"]
POOLINGS: tuple[str, ...] = typing.get_args(Pooling)


def pool(states: torch.Tensor, batch: Batch, how: str) -> torch.Tensor:
    """Reduce packed token states [T, d] to one vector per sequence [B, d] with segment sums (no padded copy)."""
    if how == "cls":
        return states[batch.first_token_index]
    seq = batch.sequence_of_token
    if how == "max":
        out = states.new_full((batch.num_sequences, states.shape[1]), -math.inf)
        return out.scatter_reduce_(0, seq[:, None].expand_as(states), states, reduce="amax")
    sums = states.new_zeros(batch.num_sequences, states.shape[1]).index_add_(0, seq, states)
    lengths = batch.lengths.to(states.dtype)[:, None]
    return sums / (lengths.sqrt() if how == "mean_sqrt_len" else lengths)
