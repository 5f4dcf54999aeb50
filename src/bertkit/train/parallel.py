"""Data parallelism: each global batch split evenly over the ranks, the DDP train step of any objective, and evaluation sharded then gathered.

What "the same global batch" means here. Every rank builds the same seeded batch plan as a single
process would (`--batch-size` and `--batch-tokens` are global, per micro-batch over all ranks). A
global batch of B sequences is dealt out like cards: sequence j goes to rank j % world_size, so
every rank gets exactly ceil(B / world_size) sequences of mixed lengths. When B does not divide
evenly, the batch is topped up by repeating its first sequences; a repeat sits at the end of its
rank's shard and counts zero in the loss. Each rank's loss is its shard's summed loss divided by
the group's GLOBAL weight (Objective.weight: its examples, or summed class weights) and multiplied by the world size, so
after DDP averages the gradients the update is the one a single process makes on the whole batch.
"""
from __future__ import annotations

import contextlib
import random
from typing import Sequence

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from bertkit.batching import labels_to_tensor
from bertkit.device import autocast
from bertkit.errors import BertkitError
from bertkit.modeling import BertNetwork
from bertkit.train import distributed
from bertkit.train.batches import BatchStream
from bertkit.train.loop import accumulated_step, classification_loss, optimizer_step, predict_logits
from bertkit.train.objective import Objective


def check_world_size(batch_size: int | None, world_size: int, resuming: bool = False) -> None:
    """Refuse a process count that cannot split a full --batch-size batch evenly (padding would waste every step)."""
    if not isinstance(world_size, int) or isinstance(world_size, bool) or world_size < 1:
        raise BertkitError(f"--nproc must be a positive whole number of processes, not {world_size!r}")
    if batch_size is not None and batch_size % world_size:
        if resuming:
            raise BertkitError(f"the run's --batch-size {batch_size} does not split evenly over {world_size} processes; "
                               f"resume with a number of processes that divides {batch_size}")
        raise BertkitError(f"--batch-size {batch_size} does not split evenly over {world_size} processes; use a multiple "
                           f"of {world_size} (the batch size is global: each process trains on batch-size / {world_size})")


def shard(indices: Sequence[int], rank: int, world_size: int) -> tuple[list[int], int]:
    """This rank's part of one global batch: (example indices, how many of them are real rather than zero-weight repeats)."""
    if not indices:
        raise ValueError("cannot shard an empty batch")
    per_rank = -(-len(indices) // world_size)
    repeats = [indices[k % len(indices)] for k in range(per_rank * world_size - len(indices))]
    mine = (list(indices) + repeats)[rank::world_size]
    real = len(range(rank, len(indices), world_size))  # positions below B are real; they come first in `mine`
    return mine, real


class OneProcess:
    """An objective's optimizer step in a single process: DataParallel's counterpart, with nothing to split or synchronise."""

    def __init__(self, network: BertNetwork, objective: Objective):
        self.network = network
        self.objective = objective
        self.module = objective.module(network)

    def step(self, stream: BatchStream, group: Sequence[Sequence[int]], optimizer: torch.optim.Optimizer,
             scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, *, epoch: int = 0,
             max_grad_norm: float | None = 1.0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One optimizer step over the batches of `group` (of `epoch`); returns (summed loss, grad norm)."""
        total = self.objective.weight(stream, group, epoch)
        return accumulated_step(self.module, self.objective.loss, [stream.batch(indices, epoch) for indices in group],
                                total, self.network, optimizer, scheduler, max_grad_norm)


class DataParallel:
    """An objective's module wrapped in DistributedDataParallel, and the optimizer step that splits each global batch over the ranks."""

    def __init__(self, network: BertNetwork, objective: Objective, device: torch.device):
        self.network = network
        self.objective = objective
        self.device = device
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        # Construction broadcasts rank 0's weights, so every rank starts from the same (possibly resumed) model.
        self.module = DistributedDataParallel(objective.module(network),
                                              device_ids=[device.index] if device.type == "cuda" else None)

    def step(
        self,
        stream: BatchStream,
        group: Sequence[Sequence[int]],
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        *,
        epoch: int = 0,
        max_grad_norm: float | None = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One optimizer step over the global batches of `group` (of `epoch`); returns (this rank's summed loss, grad norm)."""
        total = self.objective.weight(stream, group, epoch)  # the global divisor, the same on every rank
        shards = [shard(indices, self.rank, self.world_size) for indices in group]
        loss_sum = torch.zeros((), device=self.device)
        for k, (indices, real) in enumerate(shards):
            batch = stream.batch(indices, epoch)
            # Gradients are averaged over ranks once, after the group's last micro-batch.
            sync = contextlib.nullcontext() if k == len(shards) - 1 else self.module.no_sync()
            with sync:
                with autocast(self.device):
                    outputs = self.module(batch)
                if real:
                    loss = self.objective.loss(outputs, batch, real)
                else:  # only repeats here: a zero loss that still reaches every parameter, as DDP requires
                    loss = outputs.float().sum() * 0.0
                (loss * (self.world_size / total)).backward()
            loss_sum += loss.detach()
        return loss_sum, optimizer_step(self.network, optimizer, scheduler, max_grad_norm)


def predict_logits_sharded(network: BertNetwork, stream: BatchStream) -> tuple[torch.Tensor, float | None]:
    """`predict_logits` with the examples dealt out over the ranks (i % world_size), gathered back in dataset order."""
    n, world, me = len(stream.encodings), distributed.world_size(), distributed.rank()
    mine = list(range(me, n, world))
    if mine:
        part = BatchStream([stream.encodings[i] for i in mine],
                           [stream.labels[i] for i in mine] if stream.labels is not None else None,
                           batch_tokens=stream.max_tokens, shuffle=False, device=stream.device)
        logits, _ = predict_logits(network, part)
    else:  # fewer examples than ranks: this one has nothing to score but must still join the gather
        logits = torch.zeros(0, network.config.num_labels)
    parts = distributed.gather_rows(logits)
    out = torch.empty(n, network.config.num_labels)
    for r, rows in enumerate(parts):
        out[r::world] = rows
    loss = None
    if stream.labels is not None:  # from the gathered logits, so every rank reports the very same number
        loss = float(classification_loss(out, labels_to_tensor(stream.labels), reduction="sum")) / n
    return out, loss


def seed_rank(seed: int, rank: int, step: int) -> None:
    """Seed Python, NumPy and torch for a rank other than 0, from (seed, rank, step) alone; batch order is untouched."""
    derived = random.Random(f"{seed}:rank{rank}:step{step}").getrandbits(63)
    random.seed(derived)
    np.random.seed(derived % 2**32)
    torch.manual_seed(derived)
