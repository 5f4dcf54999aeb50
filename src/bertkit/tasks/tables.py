"""Rows in, rows out: a table task over a DataFrame (every row kept, in order, bad rows flagged), and a file run's summary."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from bertkit.errors import BertkitError
from bertkit.table_files import write_table  # noqa: F401  (predict_table's callers write through this module)
from bertkit.tasks.base import Prepared, Task, execute, make_options, prepare

if TYPE_CHECKING:
    from bertkit.model import Model


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


def summary(task: Task, table: pd.DataFrame, output: str | None = None) -> dict:
    """What a user wants after a file run: rows, flagged rows, truncated rows, and the task's own counts."""
    out = {"output": output, "rows": len(table), "errors": int(table["error"].notna().sum()),
           "truncated": int((table["truncated"] > 0).sum()) if "truncated" in table else 0}
    return out | task.summarize(table)
