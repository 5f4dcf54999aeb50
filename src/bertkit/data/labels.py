"""Label encoding: labels are names, never positions; one rule for CSV, JSONL, Parquet, DataFrames and HF datasets.

A label's name is its canonical text:

* a string: as written, without surrounding spaces ("01" stays "01", "1.0" in a CSV stays "1.0");
* an int: in decimal ("1"), so a CSV's 1 (read as the text "1") and a JSONL's or Parquet's 1 are one class;
* a float that is a whole number: that int (1.0 -> "1"), because pandas and Parquet store an int column
  with gaps as floats; any other float as its shortest form ("0.5");
* a bool: "True" / "False", Python's and pandas' spelling, so a DataFrame, its Parquet file and the CSV
  pandas writes from it give the same classes (a CSV cell "true" is the text "true", another name);
* missing: None, NaN, an empty or blank string (in multi-label data an empty string means "no label").

The classes are the distinct names found, in numeric order when every name is an integer ("2" before
"10"), else in code-point order; `label_names` (e.g. a trained model's id2label) fixes the order and is
matched by name. A Hugging Face ClassLabel column is the exception that proves the rule: its ints are
ids into its declared names, turned into those names when the data are loaded.
"""
from __future__ import annotations

import math
import re
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from bertkit.errors import BertkitError

_INTEGER = re.compile(r"[+-]?[0-9]+")


class BadLabel(ValueError):
    """A label cell that cannot be a class name; the loader adds the row and the source to the message."""


def label_name(value: Any) -> str | None:
    """A label cell's class name by the rule above; None when the cell is missing."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return None
        return str(int(value)) if float(value).is_integer() else str(value)
    if isinstance(value, (list, tuple, set, dict, np.ndarray, pd.Series, bytes)):
        raise BadLabel(f"label {_short(value)} is a {type(value).__name__}, not a class name")
    if pd.isna(value) is True:  # pd.NA, NaT
        return None
    return str(value).strip() or None


def class_order(names: Iterable[str]) -> list[str]:
    """Names sorted as classes: numerically when all are integers, else by code point."""
    unique = set(names)
    if unique and all(_INTEGER.fullmatch(n) for n in unique):
        return sorted(unique, key=lambda n: (int(n), n))
    return sorted(unique)


def encode_labels(rows: list[list[str]], row_ids: Sequence[int], label_names: Sequence[Any] | None,
                  where: str) -> tuple[list[list[int]], list[str]]:
    """Each row's label names as class ids, and the class names (`label_names` if given, else class_order)."""
    if label_names is None:
        names = class_order(n for row in rows for n in row)
    else:
        names = [n if isinstance(n, str) else str(label_name(n)) for n in label_names]
    index: dict[str, int] = {}
    for i, n in enumerate(names):
        key = label_name(n)
        if key is None or key in index:
            raise BertkitError(f"label names must be distinct and non-empty, got {names}; pass each name once")
        index[key] = i
    unknown = [(t, rid) for row, rid in zip(rows, row_ids) for t in row if t not in index]
    if unknown:
        (first, rid), count = unknown[0], len(unknown)
        # A model's names like LABEL_0 against data holding 0: say that positions are not names.
        hint = (" (labels are matched by name, never by position)"
                if all(_INTEGER.fullmatch(t) for t, _ in unknown) else "")
        raise BertkitError(f"unknown label '{first}' in row {rid} of {where} ({count} such label(s)); known labels: "
                           f"{', '.join(names)}{hint} — fix the data or pass matching label names")
    return [[index[t] for t in row] for row in rows], names


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
