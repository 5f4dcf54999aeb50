"""Batch, the packed (unpadded) currency between tokenizer and model, and grouping inputs into batches by token budget."""
from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Sequence

import torch


@dataclass
class Batch:
    """B sequences packed end to end into T tokens; `cu_seqlens[b]:cu_seqlens[b+1]` is sequence b.

    No pad token exists here. `index[b]` says which input (in the caller's order) sequence b is,
    so results can always be sent back where they came from.
    """

    input_ids: torch.Tensor  # [T] int64
    token_type_ids: torch.Tensor  # [T] int64
    positions: torch.Tensor  # [T] int64, position of each token inside its own sequence
    cu_seqlens: torch.Tensor  # [B+1] int32, cumulative sequence lengths starting at 0
    max_seqlen: int
    labels: torch.Tensor | None = None  # [B] int64, or [B, C] float for multi-label
    index: list[int] = field(default_factory=list)

    @property
    def num_sequences(self) -> int:
        return self.cu_seqlens.numel() - 1

    @property
    def num_tokens(self) -> int:
        return self.input_ids.numel()

    @property
    def lengths(self) -> torch.Tensor:
        return self.cu_seqlens[1:] - self.cu_seqlens[:-1]

    @property
    def first_token_index(self) -> torch.Tensor:
        """Where each sequence's [CLS] token sits in the packed tokens."""
        return self.cu_seqlens[:-1].long()

    @property
    def sequence_of_token(self) -> torch.Tensor:
        """For every token, the number of the sequence it belongs to: [T]."""
        return torch.repeat_interleave(
            torch.arange(self.num_sequences, device=self.input_ids.device), self.lengths.long(), output_size=self.num_tokens
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        move = lambda t: None if t is None else t.to(device, non_blocking=non_blocking)  # noqa: E731
        return replace(
            self,
            input_ids=move(self.input_ids),
            token_type_ids=move(self.token_type_ids),
            positions=move(self.positions),
            cu_seqlens=move(self.cu_seqlens),
            labels=move(self.labels),
        )

    def pin_memory(self) -> "Batch":
        pin = lambda t: None if t is None else t.pin_memory()  # noqa: E731
        return replace(
            self,
            input_ids=pin(self.input_ids),
            token_type_ids=pin(self.token_type_ids),
            positions=pin(self.positions),
            cu_seqlens=pin(self.cu_seqlens),
            labels=pin(self.labels),
        )

    def split_per_sequence(self, values: torch.Tensor) -> list[torch.Tensor]:
        """Cut a per-token tensor [T, ...] back into one tensor per sequence."""
        return list(torch.split(values, self.lengths.tolist()))


def labels_to_tensor(labels: Sequence, device: torch.device | str | None = None) -> torch.Tensor:
    """Class ids as int64; multi-label rows (one 0/1 list per example) as float32, as BCE wants them."""
    dtype = torch.float32 if isinstance(labels[0], (list, tuple)) else torch.long
    return torch.tensor(list(labels), dtype=dtype, device=device)


def pack(
    ids: Sequence[Sequence[int]],
    type_ids: Sequence[Sequence[int]] | None = None,
    labels: Sequence | None = None,
    index: Sequence[int] | None = None,
) -> Batch:
    """Concatenate token-id lists into one Batch; `index` defaults to 0..B-1."""
    if not ids or any(len(seq) == 0 for seq in ids):
        raise ValueError("pack needs at least one sequence and no empty sequence")
    lengths = [len(seq) for seq in ids]
    flat = [tok for seq in ids for tok in seq]
    flat_types = [t for seq in type_ids for t in seq] if type_ids is not None else [0] * len(flat)
    cu = [0]
    for n in lengths:
        cu.append(cu[-1] + n)
    positions = torch.cat([torch.arange(n) for n in lengths])
    label_tensor = None if labels is None else labels_to_tensor(labels)
    return Batch(
        input_ids=torch.tensor(flat, dtype=torch.long),
        token_type_ids=torch.tensor(flat_types, dtype=torch.long),
        positions=positions,
        cu_seqlens=torch.tensor(cu, dtype=torch.int32),
        max_seqlen=max(lengths),
        labels=label_tensor,
        index=list(index) if index is not None else list(range(len(ids))),
    )


def group_by_budget(
    lengths: Sequence[int],
    max_tokens: int = 8192,
    max_batch_size: int | None = None,
    shuffle: bool = False,
    seed: int = 0,
    bucket_size: int = 64,
) -> list[list[int]]:
    """Group example indices into batches of at most `max_tokens` (counted as batch size x longest).

    Sorting by length keeps each batch's lengths close, so the padded view the CPU attention needs
    is nearly free and every batch fills its token budget. With `shuffle`, examples are shuffled
    inside length buckets of `bucket_size` batches' worth and the batches themselves are shuffled,
    so training sees varied lengths in a random but seeded order.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be positive")
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    rng = random.Random(seed)
    if shuffle:
        # Shuffle first, then sort within large windows: similar lengths still share a batch,
        # but which examples meet changes with the seed.
        order = list(range(len(lengths)))
        rng.shuffle(order)
        window = max(1, bucket_size * max(1, max_tokens // max(1, max(lengths, default=1))))
        order = [i for s in range(0, len(order), window) for i in sorted(order[s : s + window], key=lambda i: lengths[i])]
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        n = lengths[i]
        grown = max(longest, n)
        full = current and (grown * (len(current) + 1) > max_tokens or (max_batch_size and len(current) >= max_batch_size))
        if full:
            batches.append(current)
            current, grown = [], n
        current.append(i)
        longest = grown
    if current:
        batches.append(current)
    if shuffle:
        rng.shuffle(batches)
    return batches
