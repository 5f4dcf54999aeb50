"""Predict: a label and every label's probability per text, from a fine-tuned classifier; no input row is ever dropped."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from typing_extensions import TypedDict  # pydantic reads typing's only from Python 3.12

import pandas as pd
import torch

from bertkit.batching import Batch
from bertkit.classification import (AGGREGATIONS, DEFAULT_THRESHOLD, MULTI_LABEL, REGRESSION, aggregate, decide,
                                    problem_of, saved_threshold, scores, threshold_option)
from bertkit.errors import BertkitError
from bertkit.tasks.base import JSON_NUMBER, Head, Item, Prepared, Task, closed
from bertkit.tasks.tables import run_table, write_table
from bertkit.windows import LongOptions, weights

if TYPE_CHECKING:
    from bertkit.model import Model


@dataclass(frozen=True)
class PredictOptions(LongOptions):
    threshold: Optional[float] = threshold_option(
        None, "multi-label: every label scoring at least this is predicted", shared=False,
        default_help=f"the threshold the model was trained with, else {DEFAULT_THRESHOLD}")


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
    """One row per input, in input order: `{"label", "scores", "truncated", "windows", "error"}`.

    Single-label checkpoints use softmax; multi-label ones (config.problem_type is
    bertkit.classification.MULTI_LABEL) and one-logit ones use a sigmoid, as transformers' pipeline does,
    and multi-label rows add `labels`: every label scoring >= `threshold`, best first (`label` is
    the first of them, or None); the threshold defaults to the one the model was trained with. A
    regression checkpoint's scores are its raw outputs. Rows whose text (or pair) is missing, not a
    string, blank or without any token get `label` None, `scores` None and an `error`; `truncated`
    is the number of tokens cut from a text longer than the model accepts, `windows` the number of
    sequences the text was read in (more than 1 only under long="chunk"). A chunked text's scores
    aggregate its windows' probabilities (bertkit.classification.aggregate): their token-weighted
    mean (default), each label's max (renormalised for softmax models), the first window's, or a
    vote (each window's predicted labels; a label's score is the share of windows that predict it).
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
    aggregations = AGGREGATIONS

    def prepare(self, model: "Model", prepared: Prepared, options: PredictOptions) -> None:
        how = prepared.plan.aggregate
        if how == "vote" and problem_of(model.config) == REGRESSION:
            raise BertkitError("aggregate='vote' needs a classifier; a regression model's windows are averaged (mean)")
        super().prepare(model, prepared, options)

    def step(self, model: "Model", batch: Batch, items: list[Item], options: Any) -> list[torch.Tensor]:
        return list(model.network.classify(batch).float().cpu())

    def present(self, model: "Model", prepared: Prepared, results: list, options: PredictOptions) -> list[dict]:
        problem, names = problem_of(model.config), model.labels
        how = prepared.plan.aggregate
        threshold = threshold_for(model, options)
        rows: list[dict] = []
        for document, windows, flagged in zip(prepared.documents, prepared.per_input(results), prepared.problems):
            if document is None:
                rows.append({"label": None, "scores": None, "truncated": 0, "windows": 0, "error": flagged})
                continue
            combined = aggregate(problem, [scores(problem, w) for w in windows], weights(document), how, threshold)
            rows.append(decide(problem, names, combined, threshold)
                        | {"truncated": document.unseen, "windows": len(windows), "error": None})
        if problem == MULTI_LABEL:
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


def threshold_for(model: "Model", options: PredictOptions) -> float:
    """The threshold asked for, else the one the model was trained with."""
    return options.threshold if options.threshold is not None else saved_threshold(model.config)


# -- the table API of earlier releases, now the generic one -------------------------------------------------
def predict_table(model: "Model", frame: pd.DataFrame, text_column_name: str | None = None,
                  pair_column: str | None = None, threshold: float | None = None,
                  batch_tokens: int | None = None) -> tuple[pd.DataFrame, list[dict]]:
    """Predict every row of a table; returns (input columns + prediction columns, the prediction rows)."""
    task = Predict()
    table, prepared, results = run_table(task, model, frame, text_column_name, pair_column, batch_tokens,
                                         threshold=threshold)
    return table, task.present(model, prepared, results, task.Options(threshold=threshold))


def write_predictions(table: pd.DataFrame, path) -> Any:
    """Write by extension: .csv, .jsonl, .json (a list of objects) or .parquet."""
    return write_table(table, path, "predictions")
