"""Classification: a label and every label's probability per text; no input row is ever dropped."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from typing_extensions import TypedDict  # pydantic reads typing's only from Python 3.12

import pandas as pd
import torch

from bertkit.batching import Batch
from bertkit.errors import BertkitError
from bertkit.options import option
from bertkit.tasks.base import JSON_NUMBER, Head, Item, Prepared, Task, closed
from bertkit.windows import LongOptions, weights

if TYPE_CHECKING:
    from bertkit.model import Model


@dataclass(frozen=True)
class PredictOptions(LongOptions):
    threshold: float = option(0.5, "multi-label: every label scoring at least this is predicted", ge=0.0, le=1.0,
                              shared=False)


@closed
class PredictRow(TypedDict, total=False):
    text: Optional[str]
    label: Optional[str]
    labels: Optional[list[str]]  # multi-label models only: every label over the threshold
    scores: Optional[dict[str, float]]
    truncated: int  # tokens no window held (0: all of it was read)
    windows: int  # sequences read (more than 1 only under long="chunk")
    error: Optional[str]


class Predict(Task):
    """One row per input, in input order: `{"label", "scores", "truncated", "error"}`.

    Single-label checkpoints use softmax; multi-label ones (config.problem_type ==
    "multi_label_classification") and one-logit ones use a sigmoid, as transformers' pipeline does,
    and multi-label rows add `labels`: every label scoring >= `threshold`, best first (`label` is
    the first of them, or None). A regression checkpoint's scores are its raw outputs. Rows whose
    text (or pair) is missing, not a string, blank or without any token get `label` None, `scores`
    None and an `error`; `truncated` is the number of tokens cut from a text longer than the model accepts.
    A chunked text's scores aggregate its windows' probabilities: their token-weighted mean (default),
    each label's max (renormalised for softmax models), the first window's, or a vote (each window's
    predicted labels; a label's score is the share of windows that predict it).
    """

    name = "predict"
    method = "predict"
    summary = "Classify texts with a fine-tuned classifier"
    Options = PredictOptions
    head = Head("classifier", "classifier head", "train one with `bertkit train` or pass a fine-tuned folder (--model DIR)")
    pair_name = "pairs"
    flags_rows = True
    table = True
    example = {"texts": ["What a wonderful film!"]}
    Response = list[PredictRow]
    aggregations = ("mean", "max", "first", "vote")

    def prepare(self, model: "Model", prepared: Prepared, options: PredictOptions) -> None:
        how = prepared.plan.aggregate
        if how == "vote" and problem_type(model) == "regression":
            raise BertkitError("aggregate='vote' needs a classifier; a regression model's windows are averaged (mean)")
        super().prepare(model, prepared, options)

    def step(self, model: "Model", batch: Batch, items: list[Item], options: Any) -> list[torch.Tensor]:
        return list(model.network.classify(batch).float().cpu())

    def present(self, model: "Model", prepared: Prepared, results: list, options: PredictOptions) -> list[dict]:
        kind, names = problem_type(model), model.labels
        how = prepared.plan.aggregate
        rows: list[dict] = []
        for document, windows, problem in zip(prepared.documents, prepared.per_input(results), prepared.problems):
            if document is None:
                rows.append({"label": None, "scores": None, "truncated": 0, "windows": 0, "error": problem})
                continue
            scores = aggregate(kind, [_scores(kind, w) for w in windows], weights(document), how, options.threshold)
            rows.append(_decide(kind, names, scores, options.threshold)
                        | {"truncated": document.unseen, "windows": len(windows), "error": None})
        if kind == "multi_label":
            for row in rows:
                row.setdefault("labels", None)
        return rows

    def payload(self, answer: list[dict], prepared: Prepared, options: Any) -> list[dict]:
        return [{"text": t if isinstance(t, str) else None, **r} for t, r in zip(prepared.texts, answer)]

    def answer_size(self, model: "Model", prepared: Prepared, options: Any) -> int:
        # Every label's score per row, and (multi-label) the labels over the threshold: many labels, a big answer.
        per_label = sum(len(name) + JSON_NUMBER + 8 for name in model.labels)
        return sum(len(t) if isinstance(t, str) else 0 for t in prepared.texts) + len(prepared.texts) * (2 * per_label + 120)

    def human(self, payload: list[dict], prepared: Prepared) -> str:
        lines = []
        for r in payload:
            if r["error"]:
                lines.append(f"{'-':<14} {'':>6}  {r['text']!r}  ({r['error']})")
                continue
            score = r["scores"][r["label"]] if r["label"] is not None else max(r["scores"].values())
            label = ",".join(r["labels"]) if "labels" in r else str(r["label"])
            note = f"  ({r['truncated']} tokens cut)" if r["truncated"] else ""
            lines.append(f"{label:<14} {score:6.3f}  {r['text']}{note}")
        return "\n".join(lines)

    def columns(self, model: "Model", prepared: Prepared, results: list, options: PredictOptions) -> dict[str, list]:
        rows = self.present(model, prepared, results, options)
        # Prefixed names, so a gold `label` column in an evaluation file is kept next to the prediction.
        out: dict[str, list] = {"predicted_label": [r["label"] for r in rows]}
        if any("labels" in r for r in rows):
            out["predicted_labels"] = [r.get("labels") for r in rows]
        for name in model.labels:
            out[f"score_{name}"] = [r["scores"][name] if r["scores"] else None for r in rows]
        out["truncated"] = [r["truncated"] for r in rows]
        out["windows"] = [r["windows"] for r in rows]
        out["error"] = [r["error"] for r in rows]
        return out

    def summarize(self, table: pd.DataFrame) -> dict:
        counts = table["predicted_label"].dropna().value_counts(sort=False)
        return {"label_counts": {str(k): int(v) for k, v in counts.items()}}

    def human_summary(self, summary: dict) -> str:
        counts = ", ".join(f"{k}: {v}" for k, v in summary["label_counts"].items()) or "none"
        return f"predicted labels: {counts}"


def problem_type(model: "Model") -> str:
    problem = model.config.problem_type
    if problem == "regression":
        return "regression"
    if problem == "multi_label_classification" or model.config.num_labels == 1:
        return "multi_label"
    return "single_label"


def _scores(kind: str, logits: torch.Tensor) -> torch.Tensor:
    """One sequence's scores: softmax probabilities, per-label sigmoids, or a regression's raw outputs."""
    if kind == "single_label":
        return logits.softmax(dim=-1)
    return logits.sigmoid() if kind == "multi_label" else logits


def aggregate(kind: str, scores: list[torch.Tensor], weights: list[int], how: str, threshold: float) -> torch.Tensor:
    """A document's scores from its windows' (one window: its own, unchanged)."""
    if len(scores) == 1:
        return scores[0]
    stacked = torch.stack(scores)
    if how == "first":
        return stacked[0]
    if how == "max":
        top = stacked.amax(dim=0)
        return top / top.sum() if kind == "single_label" else top
    if how == "vote":
        if kind == "single_label":
            return torch.bincount(stacked.argmax(dim=1), minlength=stacked.shape[1]).float() / len(scores)
        return (stacked >= threshold).float().mean(dim=0)
    w = torch.tensor(weights, dtype=stacked.dtype)[:, None]
    return (stacked * w).sum(dim=0) / w.sum()


def _decide(kind: str, names: list[str], scores: torch.Tensor, threshold: float) -> dict:
    probs = scores.tolist()
    if kind == "regression":
        return {"label": None, "scores": dict(zip(names, probs))}
    if kind == "single_label":
        return {"label": names[max(range(len(probs)), key=probs.__getitem__)], "scores": dict(zip(names, probs))}
    chosen = sorted((n for n, p in zip(names, probs) if p >= threshold), key=lambda n: -probs[names.index(n)])
    return {"label": chosen[0] if chosen else None, "labels": chosen, "scores": dict(zip(names, probs))}


# -- the table API of earlier releases, now the generic one -------------------------------------------------
def predict_table(model: "Model", frame: pd.DataFrame, text_column_name: str | None = None,
                  pair_column: str | None = None, threshold: float = 0.5,
                  batch_tokens: int | None = None) -> tuple[pd.DataFrame, list[dict]]:
    """Predict every row of a table; returns (input columns + prediction columns, the prediction rows)."""
    from bertkit.tasks.registry import get
    from bertkit.tasks.tables import run_table

    task = get("predict")
    table, prepared, results = run_table(task, model, frame, text_column_name, pair_column, batch_tokens,
                                         threshold=threshold)
    return table, task.present(model, prepared, results, task.Options(threshold=threshold))


def write_predictions(table: pd.DataFrame, path) -> Any:
    """Write by extension: .csv, .jsonl, .json (a list of objects) or .parquet."""
    from bertkit.tasks.tables import write_table

    return write_table(table, path, "predictions")
