"""Classification inference: a label and every label's probability per text; no input row is ever dropped."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd
import torch

from bertkit.batching import Batch
from bertkit.errors import BertkitError
from bertkit.inputs import warn_truncated
from bertkit.paths import output_file

if TYPE_CHECKING:
    from bertkit.model import Model

TEXT_COLUMNS = ("text", "sentence", "review", "content")
PREDICTION_FORMATS = (".csv", ".jsonl", ".json", ".parquet")


def predict(
    model: "Model",
    texts: Sequence[Any] | str,
    pairs: Sequence[Any] | None = None,
    threshold: float = 0.5,
    batch_tokens: int | None = None,
) -> list[dict]:
    """One row per input, in input order: `{"label", "scores", "truncated", "error"}`.

    Single-label checkpoints use softmax; multi-label ones (config.problem_type ==
    "multi_label_classification") and one-logit ones use a sigmoid, as transformers' pipeline does,
    and multi-label rows add `labels`: every label scoring >= `threshold`, best first (`label` is
    the first of them, or None). A regression checkpoint's scores are its raw outputs. Rows whose
    text (or pair) is empty or not a string get `label` None, `scores` None and an `error`;
    `truncated` is the number of tokens cut from a text longer than the model accepts.
    """
    if model.network.classifier is None:
        name = model.source or str(model.folder)
        raise BertkitError(f"{name} has no classifier head; train one with `bertkit train` "
                           "or pass a fine-tuned folder (--model DIR)")
    texts = [texts] if isinstance(texts, str) else list(texts)
    if pairs is not None:
        pairs = list(pairs)
        if len(pairs) != len(texts):
            raise BertkitError(f"got {len(texts)} texts but {len(pairs)} pairs; give one pair per text")
    errors = [_row_error(t, "text") or (_row_error(pairs[i], "pair") if pairs is not None else None)
              for i, t in enumerate(texts)]
    valid = [i for i, e in enumerate(errors) if e is None]
    encodings = model.encode([texts[i] for i in valid], [pairs[i] for i in valid] if pairs is not None else None)
    warn_truncated(encodings, model.max_length)

    def step(batch: Batch) -> torch.Tensor:
        return model.network.classify(batch).float().cpu()

    logits = model.run(encodings, step, batch_tokens)
    rows: list[dict] = [{"label": None, "scores": None, "truncated": 0, "error": e} for e in errors]
    kind = _problem_type(model)
    names = model.labels
    for i, enc, row_logits in zip(valid, encodings, logits):
        rows[i] = _row(kind, names, row_logits, threshold) | {"truncated": enc.n_truncated, "error": None}
    if kind == "multi_label":
        for row in rows:
            row.setdefault("labels", None)
    return rows


def _row_error(value: Any, what: str) -> str | None:
    if value is None or (not isinstance(value, (str, list, tuple, dict)) and pd.isna(value) is True):
        return f"missing {what}"
    if not isinstance(value, str):
        return f"{what} is a {type(value).__name__}, not a string"
    if not value.strip():
        return f"empty {what}"
    return None


def _problem_type(model: "Model") -> str:
    problem = model.config.problem_type
    if problem == "regression":
        return "regression"
    if problem == "multi_label_classification" or model.config.num_labels == 1:
        return "multi_label"
    return "single_label"


def _row(kind: str, names: list[str], logits: torch.Tensor, threshold: float) -> dict:
    if kind == "regression":
        return {"label": None, "scores": dict(zip(names, logits.tolist()))}
    if kind == "single_label":
        probs = logits.softmax(dim=-1).tolist()
        return {"label": names[max(range(len(probs)), key=probs.__getitem__)], "scores": dict(zip(names, probs))}
    probs = logits.sigmoid().tolist()
    chosen = sorted((n for n, p in zip(names, probs) if p >= threshold), key=lambda n: -probs[names.index(n)])
    return {"label": chosen[0] if chosen else None, "labels": chosen, "scores": dict(zip(names, probs))}


# -- tables in, tables out ----------------------------------------------------------------------
def text_column(frame: pd.DataFrame, given: str | None, what: str = "text", flag: str = "--text-column") -> str:
    """The column holding the texts: the one named, else a usual name (text, sentence, ...), else the only one."""
    columns = [str(c) for c in frame.columns]
    if given is not None:
        if given not in columns:
            raise BertkitError(f"no column '{given}' in the input; its columns are {', '.join(columns)} — pass {flag}")
        return given
    for name in TEXT_COLUMNS:
        if name in columns:
            return name
    if len(columns) == 1:
        return columns[0]
    raise BertkitError(f"cannot tell which column holds the {what}s ({', '.join(columns)}); pass {flag}")


def predict_table(
    model: "Model",
    frame: pd.DataFrame,
    text_column_name: str | None = None,
    pair_column: str | None = None,
    threshold: float = 0.5,
    batch_tokens: int | None = None,
) -> tuple[pd.DataFrame, list[dict]]:
    """Predict every row of a table; returns (input columns + prediction columns, the prediction rows)."""
    column = text_column(frame, text_column_name)
    pairs = frame[text_column(frame, pair_column, "pair", "--pair-column")].tolist() if pair_column else None
    rows = predict(model, frame[column].tolist(), pairs, threshold, batch_tokens)
    out = frame.reset_index(drop=True).copy()
    # Prefixed names, so a gold `label` column in an evaluation file is kept next to the prediction.
    out["predicted_label"] = [r["label"] for r in rows]
    if any("labels" in r for r in rows):
        out["predicted_labels"] = [r.get("labels") for r in rows]
    for name in model.labels:
        out[f"score_{name}"] = [r["scores"][name] if r["scores"] else None for r in rows]
    out["truncated"] = [r["truncated"] for r in rows]
    out["error"] = [r["error"] for r in rows]
    return out, rows


def write_predictions(table: pd.DataFrame, path: str | Path) -> Path:
    """Write by extension: .csv, .jsonl, .json (a list of objects) or .parquet."""
    path, suffix = output_file(path, PREDICTION_FORMATS, "predictions")
    if suffix == ".parquet":
        table.to_parquet(path, index=False)
        return path
    if suffix == ".csv":
        flat = table.copy()
        if "predicted_labels" in flat:  # one cell per row: labels joined like the training data's separator
            flat["predicted_labels"] = [",".join(v) if isinstance(v, list) else "" for v in flat["predicted_labels"]]
        flat.to_csv(path, index=False)
        return path
    records = [_jsonable(r) for r in table.to_dict(orient="records")]
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records), encoding="utf-8")
    else:
        path.write_text(json.dumps(records, ensure_ascii=False, indent=1, default=str) + "\n", encoding="utf-8")
    return path


def _jsonable(record: dict) -> dict:
    # NaN (pandas' missing value) is not JSON; numpy scalars are not serialisable either.
    out = {}
    for k, v in record.items():
        if isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and math.isnan(v):
            v = None
        out[str(k)] = v
    return out


def summary(rows: list[dict], output: str | None = None) -> dict:
    """Counts a user wants after a batch run: rows, flagged rows, truncated rows, predictions per label."""
    counts: dict[str, int] = {}
    for r in rows:
        if r["label"] is not None:
            counts[r["label"]] = counts.get(r["label"], 0) + 1
    return {"output": output, "rows": len(rows), "errors": sum(r["error"] is not None for r in rows),
            "truncated": sum(bool(r["truncated"]) for r in rows), "label_counts": counts}
