"""Plots for training runs: loss and metric curves, confusion matrices, similarity heatmaps (Figures, or PNG files)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bertkit.plots import figure as _figure
from bertkit.plots import save as _save


def _number(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _series(records: Sequence[dict], split: str, key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for i, r in enumerate(records):
        if r.get("split", "train") != split:
            continue
        y = _number(r.get(key))
        if y is None:
            continue
        step = _number(r.get("step"))
        xs.append(step if step is not None else float(i))
        ys.append(y)
    return xs, ys


def _smooth(ys: list[float], window: int) -> np.ndarray:
    # A trailing mean: per-batch train loss is too noisy to read the trend from.
    y = np.asarray(ys, dtype=np.float64)
    if window <= 1 or y.size < 2 * window:
        return y
    c = np.cumsum(np.insert(y, 0, 0.0))
    out = np.empty_like(y)
    out[window - 1:] = (c[window:] - c[:-window]) / window
    out[: window - 1] = c[1:window] / np.arange(1, window)
    return out


def plot_training_curves(records: Sequence[dict], path: str | Path, title: str = "Training") -> Path:
    """Write `training_curves` as a PNG at `path`; returns the path."""
    return _save(training_curves(records, title), path)


def training_curves(records: Sequence[dict], title: str = "Training"):
    """Loss (train and eval) and eval metrics against step, side by side, as a Figure; records are metrics.jsonl lines."""
    fig = _figure(11, 4)
    ax_loss, ax_metric = fig.subplots(1, 2)

    tx, ty = _series(records, "train", "loss")
    if tx:
        window = max(1, len(ty) // 50)
        ax_loss.plot(tx, ty, color="tab:blue", alpha=0.25 if window > 1 else 0.9, linewidth=1,
                     label="train loss" if window == 1 else "train loss (raw)")
        if window > 1:
            ax_loss.plot(tx, _smooth(ty, window), color="tab:blue", linewidth=1.8, label=f"train loss (mean of {window})")
    ex, ey = _series(records, "eval", "loss")
    if ex:
        ax_loss.plot(ex, ey, color="tab:orange", marker="o", linewidth=1.8, label="eval loss")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("Loss")
    ax_loss.grid(alpha=0.3)

    lx, ly = _series(records, "train", "lr")
    handles, labels = ax_loss.get_legend_handles_labels()
    if lx:
        ax_lr = ax_loss.twinx()
        (line,) = ax_lr.plot(lx, ly, color="gray", linestyle="--", linewidth=1, label="learning rate")
        ax_lr.set_ylabel("learning rate", color="gray")
        ax_lr.tick_params(axis="y", colors="gray")
        ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        handles.append(line)
        labels.append("learning rate")
    if handles:
        ax_loss.legend(handles, labels, loc="upper right", fontsize=8)
    else:
        ax_loss.text(0.5, 0.5, "no loss records", ha="center", va="center", transform=ax_loss.transAxes)

    drew = False
    for key, color in (("accuracy", "tab:green"), ("macro_f1", "tab:red"), ("micro_f1", "tab:purple")):
        mx, my = _series(records, "eval", key)
        if mx:
            ax_metric.plot(mx, my, marker="o", color=color, linewidth=1.8, label=key)
            drew = True
    ax_metric.set_xlabel("step")
    ax_metric.set_title("Evaluation")
    ax_metric.grid(alpha=0.3)
    if drew:
        ax_metric.set_ylim(0, 1.02)
        ax_metric.legend(loc="lower right", fontsize=8)
    else:
        ax_metric.text(0.5, 0.5, "no evaluation metrics", ha="center", va="center", transform=ax_metric.transAxes)
    fig.suptitle(title)
    return fig


def _truncate(label: Any, limit: int = 40) -> str:
    text = " ".join(str(label).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _annotate(ax, values: np.ndarray, shown: np.ndarray, fmt: str, norm, cmap, fontsize: float) -> None:
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            # Dark text on light cells and light text on dark cells, from the cell's own colour.
            r, g, b, _ = cmap(norm(shown[i, j]))
            light = 0.299 * r + 0.587 * g + 0.114 * b > 0.5
            ax.text(j, i, format(values[i, j], fmt), ha="center", va="center", fontsize=fontsize,
                    color="black" if light else "white")


def plot_confusion_matrix(matrix: Sequence[Sequence[int]] | np.ndarray, label_names: Sequence[str], path: str | Path,
                          title: str = "Confusion matrix") -> Path:
    """Write `confusion_matrix` as a PNG at `path`; returns the path."""
    return _save(confusion_matrix(matrix, label_names, title), path)


def confusion_matrix(matrix: Sequence[Sequence[int]] | np.ndarray, label_names: Sequence[str],
                     title: str = "Confusion matrix"):
    """A Figure: heatmap with counts in the cells; rows are true classes, columns predicted ones.

    Cells are coloured by the share of their row (recall per class), so a small class's errors are as
    visible as a large class's; the numbers are the raw counts.
    """
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    cm = np.asarray(matrix, dtype=np.int64)
    k = cm.shape[0]
    if cm.ndim != 2 or cm.shape != (k, k) or k != len(label_names):
        raise ValueError(f"confusion matrix must be ({len(label_names)}, {len(label_names)}); got {cm.shape}")
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=np.float64), where=rows > 0)
    names = [_truncate(n, 30) for n in label_names]
    side = min(4 + 0.55 * k, 30)
    fig = _figure(side + 1.5, side)
    ax = fig.subplots()
    cmap, norm = colormaps["Blues"], Normalize(0.0, 1.0)
    im = ax.imshow(share, cmap=cmap, norm=norm, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    if k <= 40:
        _annotate(ax, cm, share, "d", norm, cmap, fontsize=max(5.0, 11 - 0.2 * k))
    ax.set_xticks(range(k), labels=names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(k), labels=names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return fig


def plot_similarity_matrix(matrix: Sequence[Sequence[float]] | np.ndarray, labels: Sequence[Any], path: str | Path,
                           title: str = "Cosine similarity") -> Path:
    """Write `similarity_heatmap` as a PNG at `path`; returns the path."""
    return _save(similarity_heatmap(matrix, labels, title), path)


def similarity_heatmap(matrix: Sequence[Sequence[float]] | np.ndarray, labels: Sequence[Any],
                       title: str = "Cosine similarity"):
    """A Figure: labelled heatmap with values in the cells; `labels` names rows and columns of a square matrix,
    or is a (row_labels, column_labels) pair for a rectangular one. Long labels are cut to 40 characters."""
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"similarity matrix must be 2-D; got shape {m.shape}")
    if len(labels) == 2 and all(isinstance(x, (list, tuple)) for x in labels):
        row_labels, col_labels = list(labels[0]), list(labels[1])
    else:
        row_labels = col_labels = list(labels)
    if (len(row_labels), len(col_labels)) != m.shape:
        raise ValueError(f"{m.shape} matrix needs {m.shape[0]} row and {m.shape[1]} column labels; "
                         f"got {len(row_labels)} and {len(col_labels)}")
    rows, cols = m.shape
    fig = _figure(min(4 + 0.6 * cols, 30) + 3, min(3 + 0.5 * rows, 30))
    ax = fig.subplots()
    finite = m[np.isfinite(m)]
    # Cosine similarities live in [-1, 1]; fixing the scale there lets plots from different runs be compared.
    lo = -1.0 if finite.size and finite.min() < 0 else 0.0
    lo = min(lo, float(finite.min())) if finite.size else lo
    hi = max(1.0, float(finite.max())) if finite.size else 1.0
    cmap, norm = colormaps["viridis"], Normalize(lo, hi)
    im = ax.imshow(m, cmap=cmap, norm=norm, interpolation="nearest", aspect="auto")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if rows * cols <= 900:
        _annotate(ax, m, m, ".2f", norm, cmap, fontsize=max(5.0, 10 - 0.15 * max(rows, cols)))
    ax.set_xticks(range(cols), labels=[_truncate(x) for x in col_labels], rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(rows), labels=[_truncate(x) for x in row_labels])
    ax.set_title(title)
    return fig
