"""The masked-LM run's plot: held-out perplexity and top-5 accuracy at each evaluation, against the unigram baseline's."""
from __future__ import annotations

import json
from pathlib import Path

from bertkit.plots import figure, save


def plot_mlm_curves(records_path: str | Path, path: str | Path, title: str = "Masked-LM evaluation") -> Path | None:
    """Draw the evaluations of a run's metrics.jsonl (None when it holds none)."""
    lines = Path(records_path).read_text(encoding="utf-8").splitlines()
    evals = [r for r in map(json.loads, lines) if r.get("split") == "eval" and r.get("perplexity") is not None]
    if not evals:
        return None
    steps = [r["step"] for r in evals]
    unigram = evals[-1].get("unigram") or {}
    fig = figure(11, 4)
    ax_ppl, ax_top = fig.subplots(1, 2)
    ax_ppl.plot(steps, [r["perplexity"] for r in evals], marker="o", color="tab:orange", label="model")
    ax_top.plot(steps, [r["top5"] for r in evals], marker="o", color="tab:green", label="model top-5")
    ax_top.plot(steps, [r["top1"] for r in evals], marker="o", color="tab:blue", label="model top-1")
    if unigram.get("perplexity") is not None:
        ax_ppl.axhline(unigram["perplexity"], color="gray", linestyle="--", label="unigram baseline")
        ax_top.axhline(unigram["top5"], color="tab:green", linestyle="--", alpha=0.6, label="unigram top-5")
        ax_top.axhline(unigram["top1"], color="tab:blue", linestyle="--", alpha=0.6, label="unigram top-1")
    ax_ppl.set_yscale("log")
    ax_ppl.set_title("held-out perplexity (masked tokens)")
    ax_top.set_ylim(0, 1.02)
    ax_top.set_title("held-out masked-token accuracy")
    for ax in (ax_ppl, ax_top):
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return save(fig, path)
