"""Rich display in notebooks: the HTML and PNG views that bertkit's results show through `_repr_html_` / `_repr_png_`.

Jupyter looks for those hooks on whatever a cell returns; the result classes define them by calling
here, and nothing else changes: in Python the results stay the plain data they are (same values,
repr, equality and JSON). Nothing here imports IPython, and figures are drawn on their own Agg canvas
(bertkit.plots), never through pyplot, so no figure is left open. Every text that came from a user
(texts, tokens, labels) is HTML-escaped.
"""
from __future__ import annotations

import base64
from html import escape
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:
    from bertkit.tasks.attention import AttentionWeights
    from bertkit.tasks.similarity import SimilarityMatrix
    from bertkit.tokenizer import Encoding
    from bertkit.train.trainer import TrainResult

TABLE = "border-collapse:collapse;font-size:12px;margin:2px 16px 8px 0"
CELL = 'style="border:1px solid #ddd;padding:2px 6px;text-align:center;{}"'
SCROLL = '<div style="overflow-x:auto">{}</div>'


class Results(list):
    """A task's answer, one result per input: a plain list, which a notebook shows as each result's view in turn."""

    def _repr_html_(self) -> str:
        return "".join(html_of(item) for item in self)


def html_of(item: Any) -> str:
    """An object's HTML view: its own `_repr_html_`, else its PNG as an image, else its repr (escaped)."""
    if hasattr(item, "_repr_html_"):
        return item._repr_html_()
    if hasattr(item, "_repr_png_"):
        return image(item._repr_png_())
    return f"<pre>{escape(repr(item))}</pre>"


def image(data: bytes, alt: str = "") -> str:
    """PNG bytes as an inline <img>."""
    return f'<img src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}" alt="{escape(alt)}">'


def _cell(content: Any, style: str = "", header: bool = False) -> str:
    tag = "th" if header else "td"
    return f"<{tag} {CELL.format(style)}>{escape(str(content))}</{tag}>"


def _row(cells: Sequence[str]) -> str:
    return "<tr>" + "".join(cells) + "</tr>"


def _shade(value: float, low: float = 0.0, high: float = 1.0) -> str:
    """A cell background from white (low) to dark blue (high), and a text colour that stays readable on it."""
    share = float(np.clip((value - low) / max(high - low, 1e-12), 0.0, 1.0)) if np.isfinite(value) else 0.0
    return f"background:rgba(31,119,180,{share:.2f});color:{'white' if share > 0.55 else 'black'}"


# -- tokenize ---------------------------------------------------------------------------------
def encoding_html(encoding: "Encoding") -> str:
    """The tokens across, and under each its id, characters, word and segment; special tokens greyed."""
    specials = encoding.special_tokens_mask or [0] * len(encoding)
    grey = ["color:#888" if s else "" for s in specials]
    rows = [
        _row([_cell("token", header=True)] + [_cell(t, g + ";font-weight:bold") for t, g in zip(encoding.tokens, grey)]),
        _row([_cell("id", header=True)] + [_cell(i, g) for i, g in zip(encoding.ids, grey)]),
        _row([_cell("chars", header=True)] + [_cell(f"{a}–{b}" if b > a else "", g)
                                              for (a, b), g in zip(encoding.offsets, grey)]),
        _row([_cell("word", header=True)] + [_cell("" if w is None else w, g) for w, g in zip(encoding.word_ids, grey)]),
        _row([_cell("segment", header=True)] + [_cell(t, g) for t, g in zip(encoding.type_ids, grey)]),
    ]
    note = f"<div>{encoding.n_truncated} tokens cut (truncated)</div>" if encoding.n_truncated else ""
    return SCROLL.format(f"<table style=\"{TABLE}\">{''.join(rows)}</table>") + note


# -- fill-mask --------------------------------------------------------------------------------
def filled_html(per_mask: Sequence[Sequence[dict]], filled: str) -> str:
    """The text with its masks filled, then per mask its candidates ranked, each with a bar of its score."""
    parts = [f"<div><b>filled:</b> {escape(filled)}</div>"]
    for j, candidates in enumerate(per_mask):
        rows = [_row([_cell(f"mask {j + 1}", header=True), _cell("score", header=True), _cell("", header=True)])]
        for c in candidates:
            width = int(round(120 * min(max(float(c["score"]), 0.0), 1.0)))
            bar = f'<td {CELL.format("text-align:left")}><div style="background:#1f77b4;height:10px;width:{width}px"></div></td>'
            rows.append(_row([_cell(c["token"]), _cell(f"{c['score']:.4f}"), bar]))
        parts.append(f"<table style=\"{TABLE}\">{''.join(rows)}</table>")
    return "".join(parts)


# -- similarity matrix ------------------------------------------------------------------------
def similarity_html(answer: "SimilarityMatrix") -> str:
    """The contextual cosines as a shaded table, each row named by its sentence; beside it the static vectors'."""
    n = len(answer.labels)
    low = min(0.0, float(np.nanmin(answer.matrix))) if n else 0.0

    def table(matrix: np.ndarray, title: str, labels: bool) -> str:
        head = [_cell(title, header=True)] + [_cell(j, header=True) for j in range(n)]
        rows = [_row(head)]
        for i in range(n):
            name = f"{i}  {answer.labels[i]}" if labels else str(i)
            rows.append(_row([_cell(name, "text-align:left")] +
                             [_cell(f"{matrix[i, j]:.3f}", _shade(matrix[i, j], low)) for j in range(n)]))
        return f'<table style="{TABLE};display:inline-table">{"".join(rows)}</table>'

    words = sorted({v.word for v in answer.vectors})
    tables = table(answer.matrix, "contextual", True)
    if answer.static is not None:
        tables += table(answer.static, "static (embedding table)", False)
    caption = f"<div>cosine similarity of {escape(', '.join(repr(w) for w in words))} across {n} sentences</div>"
    return caption + SCROLL.format(tables)


# -- attention --------------------------------------------------------------------------------
def attention_png(answer: "AttentionWeights") -> bytes:
    """One layer and head: its head view; more: the layer x head grid of heatmaps."""
    from bertkit.plots import png
    from bertkit.plots.attention import attention_grid, head_view

    one = len(answer.layers) == 1 and len(answer.heads) == 1
    return png(head_view(answer) if one else attention_grid(answer))


# -- training ---------------------------------------------------------------------------------
SHOWN_METRICS = ("accuracy", "macro_f1", "micro_f1", "loss")


def train_result_html(result: "TrainResult") -> str:
    """The final evaluation's headline numbers and per-class rows, then the loss and metric curves."""
    from bertkit.plots import png
    from bertkit.train.plots import training_curves

    parts = [f"<div><b>{result.steps} steps</b>" + (" (stopped early)" if result.stopped_early else "") + "</div>"]
    metrics = result.metrics or {}
    shown = [k for k in SHOWN_METRICS if isinstance(metrics.get(k), (int, float))]
    if shown:
        parts.append(f"<table style=\"{TABLE}\">" + _row([_cell(k, header=True) for k in shown])
                     + _row([_cell(f"{metrics[k]:.4f}") for k in shown]) + "</table>")
    per_class = metrics.get("per_class") or {}
    if per_class:
        keys = [k for k in ("precision", "recall", "f1", "support") if k in next(iter(per_class.values()))]
        rows = [_row([_cell("class", header=True)] + [_cell(k, header=True) for k in keys])]
        rows += [_row([_cell(name)] + [_cell(f"{row[k]:.3f}" if isinstance(row[k], float) else row[k]) for k in keys])
                 for name, row in per_class.items()]
        parts.append(f"<table style=\"{TABLE}\">{''.join(rows)}</table>")
    if result.history:
        parts.append(image(png(training_curves(result.history)), alt="training curves"))
    return "".join(parts)
