"""Attention as pictures: one head's view (tokens on two sides, lines weighted by attention) and a layer x head grid.

Each function takes what `model.attention(...)` returns (an AttentionWeights, or the list of them) and
returns a matplotlib Figure, which a notebook shows as it is; `plot_attention` writes the PNG that
`bertkit attention --plot FILE` draws.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from bertkit.plots import figure, save

if TYPE_CHECKING:
    from bertkit.tasks.attention import AttentionWeights

CMAP = "Blues"  # one scale, 0 to 1, for every attention picture: two heads compare at a glance
SEGMENT_COLOURS = ("black", "tab:red")  # the first text's tokens, the pair's


def head_view(answer: "AttentionWeights", layer: int | None = None, head: int | None = None, fig=None):
    """Where each token looks in one layer's head: the tokens twice, queries left and keys right, a line from
    i to j as dark and thick as i's attention to j; beside it the same numbers as a heatmap.

    `layer` / `head` count as the model does (default: the first the answer holds).
    """
    layer = answer.layers[0] if layer is None else layer
    head = answer.heads[0] if head is None else head
    matrix = answer.head(layer, head)
    n = len(answer.tokens)
    fig = fig if fig is not None else figure(4 + min(0.45 * n, 14), 1.2 + min(0.32 * n, 22))
    lines, grid = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.25]})
    _draw_lines(lines, answer, matrix)
    _draw_heatmap(fig, grid, answer, matrix)
    fig.suptitle(f"Layer {layer}, head {head}: {_title(answer)}", fontsize=11)
    return fig


def attention_grid(answer: "AttentionWeights", fig=None):
    """Every layer x head of the answer as a small heatmap (query rows, key columns): the heads that look at
    [SEP] show a dark column, the ones that look at the previous token a line just below the diagonal."""
    rows, cols = len(answer.layers), len(answer.heads)
    fig = fig if fig is not None else figure(1.2 + 1.0 * cols, 0.8 + 1.0 * rows)
    axes = np.atleast_2d(fig.subplots(rows, cols, squeeze=False))
    for a, layer in enumerate(answer.layers):
        for b, head in enumerate(answer.heads):
            ax = axes[a, b]
            ax.imshow(answer.weights[a, b], cmap=CMAP, vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if a == 0:
                ax.set_title(f"head {head}", fontsize=8)
            if b == 0:
                ax.set_ylabel(f"layer {layer}", fontsize=8)
    fig.suptitle(f"Attention of every layer and head: {_title(answer)}", fontsize=11)
    return fig


def plot_attention(answers: "AttentionWeights | Sequence[AttentionWeights]", path: str | Path) -> Path:
    """Write a PNG of each text's attention, one text under the other: its head view when the answer holds one
    layer and one head, its layer x head grid otherwise. Returns the path."""
    answers = [answers] if not isinstance(answers, (list, tuple)) else list(answers)
    single = all(len(a.layers) == 1 and len(a.heads) == 1 for a in answers)
    sizes = [_head_size(a) if single else (1.2 + 1.0 * len(a.heads), 0.8 + 1.0 * len(a.layers)) for a in answers]
    fig = figure(max(w for w, _ in sizes), sum(h for _, h in sizes))
    parts = fig.subfigures(len(answers), 1, height_ratios=[h for _, h in sizes], squeeze=False)[:, 0]
    for part, answer in zip(parts, answers):
        (head_view if single else attention_grid)(answer, fig=part)
    return save(fig, path)


def _head_size(answer: "AttentionWeights") -> tuple[float, float]:
    n = len(answer.tokens)
    return 4 + min(0.45 * n, 14), 1.2 + min(0.32 * n, 22)


def _draw_lines(ax, answer: "AttentionWeights", matrix: np.ndarray) -> None:
    from matplotlib import colormaps
    from matplotlib.collections import LineCollection

    n = len(answer.tokens)
    y = -np.arange(n, dtype=float)
    segments = [[(0.0, y[i]), (1.0, y[j])] for i in range(n) for j in range(n)]
    weights = matrix.reshape(-1)
    colours = colormaps[CMAP](np.clip(0.35 + 0.65 * weights, 0, 1))
    colours[:, 3] = np.clip(weights, 0, 1)  # a weak link fades out instead of cluttering the picture
    order = np.argsort(weights)  # strongest drawn last, on top
    ax.add_collection(LineCollection([segments[k] for k in order], colors=colours[order],
                                     linewidths=0.4 + 3.0 * weights[order]))
    for i, token in enumerate(answer.tokens):
        colour = SEGMENT_COLOURS[min(answer.type_ids[i], 1)]
        ax.text(-0.04, y[i], token, ha="right", va="center", fontsize=9, color=colour)
        ax.text(1.04, y[i], token, ha="left", va="center", fontsize=9, color=colour)
    ax.set_xlim(-0.6, 1.6)
    ax.set_ylim(-n + 0.5, 0.5)
    ax.set_axis_off()
    ax.set_title("token (left) attends to token (right)", fontsize=9)


def _draw_heatmap(fig, ax, answer: "AttentionWeights", matrix: np.ndarray) -> None:
    n = len(answer.tokens)
    image = ax.imshow(matrix, cmap=CMAP, vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="attention")
    labels = [t if len(t) <= 12 else t[:11] + "…" for t in answer.tokens]
    ax.set_xticks(range(n), labels=labels, rotation=90, fontsize=8)
    ax.set_yticks(range(n), labels=labels, fontsize=8)
    ax.set_xlabel("attends to")
    if n <= 16:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if matrix[i, j] > 0.5 else "black")


def _title(answer: "AttentionWeights", n: int = 60) -> str:
    text = " ".join(answer.text.split()) + (f" | {' '.join(answer.pair.split())}" if answer.pair else "")
    return text if len(text) <= n else text[: n - 1] + "…"
