"""What a classifier's outputs mean, declared once: problem types, scores from logits, windows combined per document, the threshold.

The predict task, training and evaluation all read a classifier through this module, so they agree
on every number: a model trained with a multi-label threshold of 0.4 predicts and evaluates at 0.4.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import torch

from bertkit.options import option

if TYPE_CHECKING:
    from bertkit.config import BertConfig

# transformers' config.problem_type values; they also name how logits become scores (`problem_of`).
SINGLE_LABEL = "single_label_classification"  # softmax over the labels, one label per text
MULTI_LABEL = "multi_label_classification"  # a sigmoid per label, every label over the threshold
REGRESSION = "regression"  # the raw outputs

# How a chunked text's windows are combined into its scores, the default first.
AGGREGATIONS = ("mean", "max", "first", "vote")

# The multi-label decision threshold: a label is predicted when its score is at least this. Any probability is a
# well-defined cut, the ends included (0: every label, ranked by score; 1: only labels the model is certain of).
DEFAULT_THRESHOLD = 0.5
THRESHOLD_BOUNDS = {"ge": 0.0, "le": 1.0}
THRESHOLD_KEY = "multi_label_threshold"  # where a trained model's config.json keeps the threshold it was trained with


def threshold_option(default: float | None, help: str = "multi-label decision threshold", **kwargs: Any) -> Any:
    """The threshold as an option field, with its bounds (every option of it takes them from here)."""
    return option(default, help, **THRESHOLD_BOUNDS, **kwargs)


def problem_type(multi_label: bool) -> str:
    """The problem type of a classifier trained on single- or multi-label data."""
    return MULTI_LABEL if multi_label else SINGLE_LABEL


def problem_of(config: "BertConfig") -> str:
    """How a checkpoint's logits are read: its problem type, a one-logit classifier counting as multi-label (a sigmoid),
    as transformers' pipeline does."""
    if config.problem_type == REGRESSION:
        return REGRESSION
    if config.problem_type == MULTI_LABEL or config.num_labels == 1:
        return MULTI_LABEL
    return SINGLE_LABEL


def saved_threshold(config: "BertConfig") -> float:
    """The threshold a model was trained with (the default everywhere it is used), else DEFAULT_THRESHOLD."""
    return float(config.extra.get(THRESHOLD_KEY, DEFAULT_THRESHOLD))


def save_threshold(config: "BertConfig", threshold: float) -> None:
    config.extra[THRESHOLD_KEY] = float(threshold)


def scores(problem: str, logits: torch.Tensor) -> torch.Tensor:
    """Scores from logits [..., C]: softmax probabilities, per-label sigmoids, or a regression's raw outputs."""
    if problem == SINGLE_LABEL:
        return logits.softmax(dim=-1)
    return logits.sigmoid() if problem == MULTI_LABEL else logits


def over_threshold(scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """The labels a multi-label model predicts: every score at least `threshold` (a bool tensor of the same shape)."""
    return scores >= threshold


def aggregate(problem: str, windows: Sequence[torch.Tensor], weights: Sequence[int], how: str,
              threshold: float) -> torch.Tensor:
    """A document's scores from its windows' (one window: its own, unchanged).

    mean: token-weighted (`weights`, a window's content tokens); max: each label's highest, renormalised
    for softmax models; first: the first window's; vote: the share of windows predicting each label.
    """
    if len(windows) == 1:
        return windows[0]
    stacked = torch.stack(list(windows))
    if how == "first":
        return stacked[0]
    if how == "max":
        top = stacked.amax(dim=0)
        return top / top.sum() if problem == SINGLE_LABEL else top
    if how == "vote":
        if problem == SINGLE_LABEL:
            return torch.bincount(stacked.argmax(dim=1), minlength=stacked.shape[1]).float() / len(windows)
        return over_threshold(stacked, threshold).float().mean(dim=0)
    w = torch.tensor(list(weights), dtype=stacked.dtype)[:, None]
    return (stacked * w).sum(dim=0) / w.sum()


def decide(problem: str, names: Sequence[str], scores: torch.Tensor, threshold: float) -> dict[str, Any]:
    """One text's answer: every label's score and the predicted label (multi-label: `labels`, best first)."""
    values = scores.tolist()
    by_name = dict(zip(names, values))
    if problem == REGRESSION:
        return {"label": None, "scores": by_name}
    if problem == SINGLE_LABEL:
        return {"label": names[max(range(len(values)), key=values.__getitem__)], "scores": by_name}
    picked = over_threshold(scores, threshold).tolist()
    chosen = [names[i] for i in sorted(range(len(values)), key=lambda i: -values[i]) if picked[i]]
    return {"label": chosen[0] if chosen else None, "labels": chosen, "scores": by_name}
