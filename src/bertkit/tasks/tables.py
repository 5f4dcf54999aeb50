"""Rows in, rows out: a table task over a DataFrame (every row kept, in order, bad rows flagged) and table files."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bertkit.errors import BertkitError
from bertkit.paths import output_file
from bertkit.tasks.base import Prepared, Task, execute, make_options, prepare

if TYPE_CHECKING:
    from bertkit.model import Model

TABLE_OUTPUTS = (".csv", ".jsonl", ".json", ".parquet")


def text_column(frame: pd.DataFrame, given: str | None, what: str = "text", param: str = "text_column") -> str:
    """The column of `frame` holding the texts (bertkit.data's one rule for every command)."""
    from bertkit.data import text_column as pick

    return pick(frame.columns, given, param, what=what)


def run_table(task: Task, model: "Model", frame: pd.DataFrame, text_column_name: str | None = None,
              pair_column: str | None = None, batch_tokens: int | None = None,
              **options: Any) -> tuple[pd.DataFrame, Prepared, list]:
    """The input table with the task's result columns and an `error` column added; every row kept, in order.

    Returns (table, prepared, results) so a caller can also present the answer.
    """
    if not task.table:
        raise BertkitError(f"{task.name} does not map rows to rows; table input and output are for "
                           f"{', '.join(t.name for t in _table_tasks())}")
    opts = make_options(task, options)
    column = text_column(frame, text_column_name)
    pairs = frame[text_column(frame, pair_column, "pair", "pair_column")].tolist() if pair_column else None
    prepared = prepare(task, model, frame[column].tolist(), pairs, opts, flag=True)
    prepared.warn()
    results = execute(task, model, prepared, opts, batch_tokens)
    out = frame.reset_index(drop=True).copy()
    columns = task.columns(model, prepared, results, opts)
    own = columns.get("error", [None] * len(out))
    columns["error"] = [mine or problem for mine, problem in zip(own, prepared.problems)]
    for name, values in columns.items():
        # pandas would turn None into NaN in a text column; a missing result stays None (null in every format).
        out[name] = pd.Series(values, dtype=object) if any(v is None for v in values) else values
    return out, prepared, results


def _table_tasks() -> list[Task]:
    from bertkit.tasks.registry import tasks

    return [t for t in tasks() if t.table]


def write_table(table: pd.DataFrame, path: str | Path, what: str = "results", param: str = "output") -> Path:
    """Write by extension: .csv, .jsonl, .json (a list of objects) or .parquet."""
    path, suffix = output_file(path, TABLE_OUTPUTS, what, param)
    if suffix == ".parquet":
        table.to_parquet(path, index=False)
        return path
    if suffix == ".csv":
        flat = table.copy()
        for name in flat.columns:  # one cell per row: lists joined like the training data's label separator
            if flat[name].map(lambda v: isinstance(v, (list, tuple, np.ndarray))).any():
                flat[name] = [",".join(map(str, v)) if isinstance(v, (list, tuple, np.ndarray)) else v for v in flat[name]]
        flat.to_csv(path, index=False)
        return path
    records = [jsonable(r) for r in table.to_dict(orient="records")]
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in records), encoding="utf-8")
    else:
        path.write_text(json.dumps(records, ensure_ascii=False, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return path


def jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars and arrays become numbers and lists; NaN (pandas' missing value) becomes null."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def summary(task: Task, table: pd.DataFrame, output: str | None = None) -> dict:
    """What a user wants after a file run: rows, flagged rows, truncated rows, and the task's own counts."""
    out = {"output": output, "rows": len(table), "errors": int(table["error"].notna().sum()),
           "truncated": int((table["truncated"] > 0).sum()) if "truncated" in table else 0}
    summarize = getattr(task, "summarize", None)
    return out | (summarize(table) if summarize else {})
