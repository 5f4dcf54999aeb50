"""Figures as PNG files or objects a notebook shows: the matplotlib canvas every plot in bertkit is drawn on.

Figures are built with matplotlib.figure.Figure and rendered by the Agg canvas directly, never through
pyplot: no GUI window, no global figure list to leak, and no backend switch that would disturb a notebook
or other code in the same process that already chose one. A notebook displays a returned Figure as is.
"""
from __future__ import annotations

import io
from pathlib import Path

PLOT_FORMATS = (".png",)  # every plot is a PNG, whatever the file is called


def figure(width: float, height: float):
    """A blank Figure of `width` x `height` inches on its own Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save(fig, path: str | Path) -> Path:
    """Write `fig` as a PNG at `path` (its folder made if missing); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format=PLOT_FORMATS[0][1:], bbox_inches="tight")
    return path


def png(fig) -> bytes:
    """`fig` as the bytes of the PNG that `save` would write (what a notebook shows)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=PLOT_FORMATS[0][1:], bbox_inches="tight")
    return buffer.getvalue()
