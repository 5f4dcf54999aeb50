"""Classification metrics in plain numpy: accuracy, per-class precision/recall/F1, confusion matrix."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    # Zero division gives 0.0, as sklearn's zero_division=0: an unpredicted class scores nothing.
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _per_class(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, support: np.ndarray,
               label_names: Sequence[str]) -> tuple[dict[str, dict[str, float]], np.ndarray]:
    precision = _safe_div(tp, tp + fp)
    recall = _safe_div(tp, tp + fn)
    # 2tp / (2tp + fp + fn) equals 2PR/(P+R) and stays defined when P or R is undefined.
    f1 = _safe_div(2 * tp, 2 * tp + fp + fn)
    per_class = {
        str(name): {"precision": float(precision[i]), "recall": float(recall[i]),
                    "f1": float(f1[i]), "support": int(support[i])}
        for i, name in enumerate(label_names)
    }
    return per_class, f1


def classification_report(y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray,
                          label_names: Sequence[str], loss: float | None = None) -> dict[str, Any]:
    """Accuracy, macro F1, per-class scores and confusion matrix (rows = true, columns = predicted).

    `y_pred` may be class ids or a 2-D array of scores (argmax is taken). Macro F1 averages over the
    classes that occur in `y_true` or `y_pred`, like scikit-learn's default, so a class absent from a
    small evaluation set and never predicted does not drag the average to zero.
    """
    k = len(label_names)
    t = np.asarray(y_true, dtype=np.int64).reshape(-1)
    p = np.asarray(y_pred)
    if p.ndim == 2:
        p = p.argmax(axis=1)
    p = p.astype(np.int64).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} entries but y_pred has {p.size}")
    for name, arr in (("y_true", t), ("y_pred", p)):
        if arr.size and (arr.min() < 0 or arr.max() >= k):
            raise ValueError(f"{name} holds ids outside 0..{k - 1} for {k} label names")
    n = int(t.size)
    cm = np.bincount(t * k + p, minlength=k * k).reshape(k, k) if k else np.zeros((0, 0), dtype=np.int64)
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    per_class, f1 = _per_class(tp, predicted - tp, support - tp, support, label_names)
    present = (support + predicted) > 0
    report: dict[str, Any] = {
        "n": n,
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
    }
    if loss is not None:
        report["loss"] = float(loss)
    report["per_class"] = per_class
    report["confusion_matrix"] = cm.astype(int).tolist()
    return report


def multilabel_report(y_true_ind: Sequence[Sequence[int]] | np.ndarray, y_pred_ind: Sequence[Sequence[int]] | np.ndarray,
                      label_names: Sequence[str], loss: float | None = None) -> dict[str, Any]:
    """Multi-label scores from 0/1 indicator matrices: subset accuracy, micro and macro F1, per-class.

    Macro F1 averages over every label column (as scikit-learn does for indicator input).
    """
    k = len(label_names)
    t = np.asarray(y_true_ind).astype(bool)
    p = np.asarray(y_pred_ind).astype(bool)
    if t.ndim != 2 or t.shape != p.shape or t.shape[1] != k:
        raise ValueError(f"indicator matrices must both be (n, {k}); got {t.shape} and {p.shape}")
    n = int(t.shape[0])
    tp = (t & p).sum(axis=0)
    fp = (~t & p).sum(axis=0)
    fn = (t & ~p).sum(axis=0)
    per_class, f1 = _per_class(tp, fp, fn, t.sum(axis=0), label_names)
    micro = _safe_div(2 * tp.sum(), 2 * tp.sum() + fp.sum() + fn.sum())
    report: dict[str, Any] = {
        "n": n,
        "multi_label": True,
        "accuracy": float((t == p).all(axis=1).mean()) if n else 0.0,
        "macro_f1": float(f1.mean()) if k else 0.0,
        "micro_f1": float(micro),
    }
    if loss is not None:
        report["loss"] = float(loss)
    report["per_class"] = per_class
    return report


def format_report(report: dict[str, Any]) -> str:
    """A compact text table: headline scores, per-class rows, and the confusion matrix if present."""
    head = [f"n={report.get('n', 0)}"]
    for key in ("accuracy", "macro_f1", "micro_f1", "loss"):
        if report.get(key) is not None:
            head.append(f"{key}={report[key]:.4f}")
    lines = ["  ".join(head)]
    per_class = report.get("per_class", {})
    if per_class:
        width = max(8, *(len(name) for name in per_class))
        lines.append(f"{'class':<{width}}  {'precision':>9}  {'recall':>7}  {'f1':>7}  {'support':>7}")
        for name, s in per_class.items():
            lines.append(f"{name:<{width}}  {s['precision']:>9.4f}  {s['recall']:>7.4f}  {s['f1']:>7.4f}  {s['support']:>7d}")
    cm = report.get("confusion_matrix")
    if cm and len(cm) > 20:
        # A 20+ column grid wraps in any terminal; the plot or the JSON report is the readable form.
        lines.append(f"(confusion matrix for {len(cm)} classes omitted; see the plot or report['confusion_matrix'])")
    elif cm:
        names = list(per_class) or [str(i) for i in range(len(cm))]
        # Columns are as wide as the longest name or count, so large counts never run together.
        cell = max(len(str(v)) for row in cm for v in row)
        short = [n[:12] for n in names]
        col = max(cell, *(len(s) for s in short))
        width = max(len(n) for n in names)
        lines.append("confusion matrix (rows = true, columns = predicted):")
        lines.append(" " * width + "  " + " ".join(f"{s:>{col}}" for s in short))
        for name, row in zip(names, cm):
            lines.append(f"{name:<{width}}  " + " ".join(f"{v:>{col}d}" for v in row))
    return "\n".join(lines)
