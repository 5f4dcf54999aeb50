"""A classifier's evaluation report: its logits read as predict reads them, per document, then scored by bertkit.train.metrics."""
from __future__ import annotations

from typing import Any

import torch

from bertkit.classification import DEFAULT_THRESHOLD, aggregate, over_threshold, problem_type, scores
from bertkit.train.batches import Windows
from bertkit.train.metrics import classification_report, multilabel_report
from bertkit.windows import weights

# What an evaluation report's loss is when documents are read in several windows (written beside the metrics).
EVAL_LOSS = ("the mean loss over the evaluation windows, each against its document's label; every other metric is "
             "per document, from its windows' probabilities aggregated as long_document.aggregate says")


def report_from_logits(logits: torch.Tensor, labels, label_names: list[str], loss: float | None,
                       multi_label: bool, threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """The metrics report for logits [N, C] against labels (ids, or 0/1 indicator rows)."""
    return report_from_scores(scores(problem_type(multi_label), logits), labels, label_names, loss, multi_label,
                              threshold)


def report_from_scores(probs: torch.Tensor, labels, label_names: list[str], loss: float | None,
                       multi_label: bool, threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """The metrics report for probabilities [N, C] (softmax, or per-label sigmoids) against labels."""
    if multi_label:
        report = multilabel_report(labels, over_threshold(probs, threshold).int().numpy(), label_names, loss=loss)
        report["threshold"] = threshold
        return report
    return classification_report(labels, probs.argmax(dim=1).numpy(), label_names, loss=loss)


def document_scores(logits: torch.Tensor, windows: Windows, multi_label: bool, how: str,
                    threshold: float = DEFAULT_THRESHOLD) -> torch.Tensor:
    """Each document's probabilities [D, C] from its windows' logits [N, C], aggregated as predict does."""
    problem = problem_type(multi_label)
    probs = scores(problem, logits)
    if len(windows.encodings) == len(windows.documents):  # one window each: aggregate would return it unchanged
        return probs
    return torch.stack([aggregate(problem, list(probs[a:b]), weights(d), how, threshold)
                        for d, a, b in zip(windows.documents, windows.bounds, windows.bounds[1:])])


def document_report(logits: torch.Tensor, loss: float | None, windows: Windows, label_names: list[str],
                    multi_label: bool, how: str, threshold: float = DEFAULT_THRESHOLD) -> dict[str, Any]:
    """The metrics per document of `windows` (their labels), the loss as given (EVAL_LOSS), and the windows read."""
    probs = document_scores(logits, windows, multi_label, how, threshold)
    return {**report_from_scores(probs, windows.labels, label_names, loss, multi_label, threshold),
            "windows": len(windows.encodings)}
