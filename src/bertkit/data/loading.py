"""load_dataset: any accepted source (file, built-in name, DataFrame, HF dataset) to a checked TextDataset."""
from __future__ import annotations

import collections
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from bertkit.data.builtin import BUILTIN_DATASETS, builtin_frame
from bertkit.data.columns import LABEL_COLUMNS, pick_column
from bertkit.data.columns import text_column as find_text_column
from bertkit.data.dataset import TextDataset
from bertkit.data.labels import BadLabel, encode_labels, label_name
from bertkit.data.readers import read_table
from bertkit.errors import BertkitError, OptionError
from bertkit.inputs import row_problem

_LISTS = (list, tuple, np.ndarray, pd.Series)


def load_dataset(source: Any, *, text_column: str | None = None, label_column: str | None = None,
                 pair_column: str | None = None, label_names: Sequence[Any] | None = None,
                 multi_label: bool = False, label_separator: str = ",", drop_invalid: bool = False) -> TextDataset:
    """Load a file, built-in dataset name, DataFrame or HF dataset (anything with .to_pandas()) as a TextDataset.

    Columns are found by bertkit.data.columns (text: text/sentence/review/content or the only column;
    label: label/labels/category/class/target; no label column means an unlabelled dataset). Labels are
    names (see bertkit.data.labels): the classes are the distinct names found, sorted, unless
    `label_names` (e.g. a trained model's id2label order) is given, which is matched by name. With
    `multi_label`, a label cell holds a list or a `label_separator`-joined string (an empty string means
    no label applies). A row whose text or pair is missing, not a string or blank
    (bertkit.inputs.row_problem), or whose label is missing, is invalid: an error, unless
    `drop_invalid=True`, which drops it with a warning.
    """
    if isinstance(source, TextDataset):
        return source
    frame, where, row_ids, declared_names = _frame_from_source(source)
    if row_ids is None:
        row_ids = list(range(len(frame)))
    if len(frame) == 0:
        raise BertkitError(f"{where} has no rows; pass data with at least one row")

    by_name = {str(c): c for c in frame.columns}
    text_col = find_text_column(by_name, text_column, "text_column", where=where)
    label_col = pick_column(by_name, label_column, LABEL_COLUMNS, "label", "label_column", where=where, required=False)
    pair_col = pick_column(by_name, pair_column, (), "pair", "pair_column", where=where, required=False)
    if label_col is not None and label_col in (text_col, pair_col):
        raise OptionError("label_column", f"is '{label_col}', which also holds the texts; pass a different column for each")

    texts = frame[by_name[text_col]].tolist()
    pairs = frame[by_name[pair_col]].tolist() if pair_col is not None else None
    cells = frame[by_name[label_col]].tolist() if label_col is not None else None
    declared = declared_names.get(label_col) if label_col is not None else None
    if label_names is None:
        label_names = declared

    problems: dict[int, list[str]] = collections.defaultdict(list)
    for column, values in ((text_col, texts), (pair_col, pairs)):
        for i, value in enumerate(values or ()):
            problem = row_problem(value, f"'{column}'")
            if problem:
                problems[i].append(problem)
    names: list[list[str] | None] | None = None
    if cells is not None:
        names = _label_names_per_row(cells, declared, multi_label, label_separator, label_col, row_ids, where)
        for i, row in enumerate(names):
            if row is None:
                problems[i].append(f"missing '{label_col}'")

    keep = _keep(problems, len(frame), row_ids, where, drop_invalid)
    kept_ids = [row_ids[i] for i in keep]
    labels: list[int] | list[list[int]] | None = None
    rows = [names[i] or [] for i in keep] if names is not None else []
    ids, classes = encode_labels(rows, kept_ids, label_names, where)
    if names is not None:
        if multi_label:
            labels = [[0] * len(classes) for _ in ids]
            for indicator, row in zip(labels, ids):
                for j in row:
                    indicator[j] = 1
        else:
            labels = [row[0] for row in ids]
    return TextDataset(texts=[texts[i] for i in keep], labels=labels, label_names=classes,
                       text_pairs=[pairs[i] for i in keep] if pairs is not None else None,
                       source=where, row_ids=kept_ids)


def _label_names_per_row(cells: list[Any], declared: list[str] | None, multi_label: bool, separator: str,
                         column: str, row_ids: list[int], where: str) -> list[list[str] | None]:
    """Each row's label names (one for single-label data), or None when its label is missing."""
    if not multi_label:
        listy = next((v for v in cells if isinstance(v, _LISTS)), None)
        if listy is not None:
            raise OptionError("multi_label", f"is not set, but '{column}' in {where} holds lists (e.g. {list(listy)!r}); "
                                             f"set it for multi-label data")
    out: list[list[str] | None] = []
    for cell, rid in zip(cells, row_ids):
        try:
            if declared is not None:
                cell = _declared_name(cell, declared)
            if not multi_label:
                name = label_name(cell)
                out.append(None if name is None else [name])
            elif isinstance(cell, str):
                parts = (label_name(p) for p in cell.split(separator))
                out.append([p for p in parts if p is not None])
            elif isinstance(cell, _LISTS):
                parts = (label_name(_declared_name(v, declared) if declared is not None else v) for v in list(cell))
                out.append([p for p in parts if p is not None])
            else:
                name = label_name(cell)
                out.append(None if name is None else [name])
        except BadLabel as e:
            raise BertkitError(f"{e} in row {rid} of {where}; is '{column}' the right label column?") from None
    return out


def _declared_name(value: Any, names: list[str]) -> Any:
    """A Hugging Face ClassLabel cell: an int is an id into the declared names (-1 means unlabelled)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        if value == -1:
            return None
        if not 0 <= value < len(names):
            raise BadLabel(f"class id {int(value)} is outside the dataset's {len(names)} declared classes")
        return names[int(value)]
    return value


def _keep(problems: dict[int, list[str]], n: int, row_ids: list[int], where: str, drop_invalid: bool) -> list[int]:
    """The positions of valid rows; invalid ones are an error, or dropped with a warning under drop_invalid."""
    if problems:
        bad = sorted(problems)
        counts = collections.Counter(p for i in bad for p in problems[i])
        what = "; ".join(f"{problem}: {count}" for problem, count in counts.items())
        detail = f"{len(bad)} invalid row(s) in {where} ({what}): rows {_row_list([row_ids[i] for i in bad])}"
        if not drop_invalid:
            raise BertkitError(f"{detail} (counting from 0, header not counted) — fix them or pass drop_invalid=True (--drop-invalid)")
        warnings.warn(f"dropped {detail}", UserWarning, stacklevel=3)
    keep = [i for i in range(n) if i not in problems]
    if not keep:
        raise BertkitError(f"no valid rows left in {where} after dropping {len(problems)} invalid row(s); check the columns")
    return keep


def _row_list(rows: Sequence[int], limit: int = 5) -> str:
    head = ", ".join(str(r) for r in rows[:limit])
    return head + (f" … (+{len(rows) - limit} more)" if len(rows) > limit else "")


def _class_names(source: Any) -> dict[str, list[str]]:
    """Label names a Hugging Face dataset declares per column (ClassLabel, or a sequence of them)."""
    features = getattr(source, "features", None)
    out: dict[str, list[str]] = {}
    if not hasattr(features, "items"):
        return out
    for column, feature in features.items():
        names = getattr(feature, "names", None) or getattr(getattr(feature, "feature", None), "names", None)
        if isinstance(names, (list, tuple)) and names:
            out[str(column)] = [str(n) for n in names]
    return out


def _frame_from_source(source: Any) -> tuple[pd.DataFrame, str, list[int] | None, dict[str, list[str]]]:
    """(frame, description, row ids, class names declared per column) for any accepted source."""
    if isinstance(source, pd.DataFrame):
        return source, "the DataFrame", None, {}
    if hasattr(source, "to_pandas") and not isinstance(source, (str, Path)):
        try:
            frame = source.to_pandas()
        except Exception as e:  # a foreign library: wrap whatever it raises
            raise BertkitError(f"could not convert {type(source).__name__} to a table ({e}); pass a pandas DataFrame") from None
        if not isinstance(frame, pd.DataFrame):
            raise BertkitError(f"{type(source).__name__}.to_pandas() did not return a DataFrame; "
                               f"pass a single split (e.g. dataset['train']), not a DatasetDict")
        return frame, type(source).__name__, None, _class_names(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if isinstance(source, str) and source in BUILTIN_DATASETS and not path.exists():
            frame = builtin_frame(source)
            return frame, source, [int(i) for i in frame.index], {"label": list(BUILTIN_DATASETS[source].label_names)}
        if not path.exists():
            if path.suffix or len(path.parts) > 1:
                raise BertkitError(f"file not found: {path}; check the path")
            names = ", ".join(BUILTIN_DATASETS)
            raise BertkitError(f"no file or built-in dataset named '{source}'; pass a data file path or one of: {names}")
        return read_table(path), str(path), None, {}
    raise BertkitError(f"cannot load data from a {type(source).__name__}; pass a file path, a built-in "
                       f"dataset name, a pandas DataFrame or a Hugging Face dataset")


def list_datasets() -> list[dict[str, Any]]:
    """One dict per built-in dataset: name, description, rows, label names and counts, source path."""
    out = []
    for spec in BUILTIN_DATASETS.values():
        entry: dict[str, Any] = {"name": spec.name, "description": spec.description,
                                 "label_names": list(spec.label_names)}
        try:
            ds = load_dataset(spec.name)
        except BertkitError as e:
            entry.update(available=False, rows=None, label_counts=None, path=None, error=str(e))
        else:
            entry.update(available=True, rows=len(ds), label_counts=ds.label_counts(), path=str(spec.path()))
        out.append(entry)
    return out
