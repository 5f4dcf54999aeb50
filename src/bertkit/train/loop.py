"""Loop blocks: one optimizer step over accumulated batches (any loss), and the classifier's loss, class weights and prediction."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bertkit.batching import Batch
from bertkit.device import autocast
from bertkit.errors import BertkitError
from bertkit.modeling import BertNetwork
from bertkit.train.batches import BatchStream
from bertkit.train.optim import clip_gradients


def balanced_class_weights(labels: Sequence, num_labels: int) -> torch.Tensor:
    """Per-class weights n / (k * n_c), k the classes present (scikit-learn's "balanced"); for multi-label, BCE pos_weight = negatives / positives.

    A class with no training examples gets weight 0: it cannot contribute to the loss anyway.
    """
    y = np.asarray(labels)
    n = len(y)
    if y.ndim == 2:
        pos = y.sum(axis=0).astype(np.float64)
        w = np.divide(n - pos, pos, out=np.zeros(num_labels), where=pos > 0)
    else:
        counts = np.bincount(y.astype(np.int64), minlength=num_labels).astype(np.float64)
        present = int((counts > 0).sum())
        w = np.divide(n, present * counts, out=np.zeros(num_labels), where=counts > 0)
    return torch.tensor(w, dtype=torch.float32)


def classification_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Cross-entropy for class ids [B], or sigmoid BCE (mean over labels) for 0/1 indicators [B, C].

    `reduction="sum"` returns the sum over examples, for callers that normalise over a whole
    accumulation group. With class weights, "mean" divides by the summed weights, as torch does.
    """
    logits = logits.float()  # the loss in fp32 even under bf16 autocast
    if labels.dim() == 2:  # multi-label
        per_label = F.binary_cross_entropy_with_logits(logits, labels.float(), pos_weight=class_weights, reduction="none")
        per_example = per_label.mean(dim=1)
        return per_example.sum() if reduction == "sum" else per_example.mean()
    if reduction == "sum":
        return F.cross_entropy(logits, labels, weight=class_weights, reduction="sum")
    return F.cross_entropy(logits, labels, weight=class_weights)


def example_weight(labels: torch.Tensor, class_weights: torch.Tensor | None) -> torch.Tensor | float:
    """How much a batch counts in a group's mean loss: its size (a host number), or its summed class weights
    (a tensor on the labels' device, so no value is read back)."""
    if class_weights is None or labels.dim() == 2:
        return float(labels.shape[0])
    return class_weights.to(labels.device)[labels].sum()


def accumulated_step(
    forward: Callable[[Batch], torch.Tensor],
    loss: Callable[[torch.Tensor, Batch], torch.Tensor],
    batches: Sequence[Batch],
    total: float | torch.Tensor,
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    max_grad_norm: float | None = 1.0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One optimizer step over `batches` (gradient accumulation); returns (summed loss, grad norm) as device tensors.

    `loss(forward(batch), batch)` is a batch's loss summed over its examples; each is divided by the
    group's `total` (its examples, or whatever they weigh) before its backward pass, so batches of
    different sizes weigh each example equally and no graph outlives its batch. Nothing here reads a
    value back to the host; callers decide when to pay for that.
    """
    device = next(network.parameters()).device  # where the batches are (an objective's batch need not be a Batch)
    loss_sum = torch.zeros((), device=device)
    for batch in batches:
        with autocast(device):
            outputs = forward(batch)
        summed = loss(outputs, batch)  # outside autocast: the loss in fp32
        (summed / total).backward()
        loss_sum += summed.detach()
    return loss_sum, optimizer_step(network, optimizer, scheduler, max_grad_norm)


def optimizer_step(network: nn.Module, optimizer: torch.optim.Optimizer,
                   scheduler: torch.optim.lr_scheduler.LRScheduler | None, max_grad_norm: float | None) -> torch.Tensor | None:
    """Clip, step, advance the schedule, clear the gradients; returns the norm before clipping (a device tensor)."""
    grad_norm = clip_gradients(network, max_grad_norm)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm


def train_step(
    network: BertNetwork,
    batches: Sequence[Batch],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    *,
    max_grad_norm: float | None = 1.0,
    class_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One classifier optimizer step over `batches`: `accumulated_step` with the classification loss.

    The loss is averaged over every example of the group (or their summed class weights) rather than
    per batch, so token-budget batches of different sizes weigh each example equally.
    """
    weights = class_weights.to(batches[0].input_ids.device) if class_weights is not None else None
    # The group's divisor is a host number or a device tensor: either way no value is read back.
    total = sum(example_weight(b.labels, weights) for b in batches)
    return accumulated_step(network.classify, lambda logits, b: classification_loss(logits, b.labels, weights, "sum"),
                            batches, total, network, optimizer, scheduler, max_grad_norm)


@torch.inference_mode()
def predict_logits(network: BertNetwork, stream: BatchStream) -> tuple[torch.Tensor, float | None]:
    """Logits [N, num_labels] in the dataset's order (fp32, CPU) and the mean loss when labels are present."""
    if network.classifier is None:
        raise BertkitError("the model has no classification head; train one first (bertkit train) or add one")
    was_training = network.training
    network.eval()
    out: torch.Tensor | None = None
    loss_sum = None
    try:
        for batch in stream.epoch(0):
            device = batch.input_ids.device
            with autocast(device):
                logits = network.classify(batch).float()
            if batch.labels is not None:
                loss = classification_loss(logits, batch.labels, reduction="sum")
                loss_sum = loss if loss_sum is None else loss_sum + loss
            if out is None:  # filled on the device: one copy back at the end, not one sync per batch
                out = torch.empty(len(stream.encodings), logits.shape[1], device=device)
            out[torch.tensor(batch.index, device=device)] = logits
    finally:
        network.train(was_training)
    mean_loss = float(loss_sum) / len(stream.encodings) if loss_sum is not None else None
    return out.cpu(), mean_loss
