"""Optimisation blocks: weight-decay parameter groups, AdamW, the warm-up/decay schedule, gradient clipping."""
from __future__ import annotations

import math

import torch
from torch import nn


def param_groups(network: nn.Module, weight_decay: float = 0.01) -> list[dict]:
    """Two AdamW groups: weights decay; biases and LayerNorm parameters do not (as in BERT's recipe).

    Decay on a LayerNorm gain pulls it towards 0 rather than its natural 1, and on a bias it only
    removes a shift; both hurt fine-tuning, so they are exempt. Frozen parameters are left out.
    """
    exempt: set[int] = set()
    for module in network.modules():
        if isinstance(module, nn.LayerNorm):
            exempt.update(id(p) for p in module.parameters(recurse=False))
    decay, no_decay = [], []
    for name, p in network.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if id(p) in exempt or name.endswith("bias") else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def make_optimizer(
    network: nn.Module,
    lr: float = 5e-5,
    weight_decay: float = 0.01,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """AdamW over `param_groups`, fused (one kernel over all parameters) wherever torch has it.

    The fused kernel exists for CUDA and, since torch 2.4, for CPU, where it is several times faster
    than the per-tensor loop; `fused=None` uses it when available and falls back quietly otherwise.
    """
    groups = param_groups(network, weight_decay)
    if fused is not False:
        try:
            return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=True)
        except RuntimeError:  # a device or dtype the fused kernel does not cover
            if fused:
                raise
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)


def warmup_steps_for(total_steps: int, warmup_ratio: float) -> int:
    """The number of warm-up steps for a ratio of the run, rounded up like transformers' Trainer."""
    return math.ceil(total_steps * warmup_ratio)


def linear_warmup_decay(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """LR rises linearly from 0 to its peak over `warmup_steps`, then falls linearly to 0 at `total_steps`.

    Call `scheduler.step()` once per optimizer step. Its state_dict is plain numbers, so it saves and
    restores with `torch.load(weights_only=True)`.
    """
    warmup_steps = max(0, int(warmup_steps))
    total_steps = max(1, int(total_steps))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def clip_gradients(network: nn.Module, max_norm: float | None) -> torch.Tensor | None:
    """Scale gradients so their global norm is at most `max_norm`; returns the norm before clipping.

    The norm stays a tensor on the device: reading it with .item() every step would stall the GPU.
    """
    if not max_norm:
        return None
    params = [p for p in network.parameters() if p.grad is not None]
    return torch.nn.utils.clip_grad_norm_(params, max_norm)
