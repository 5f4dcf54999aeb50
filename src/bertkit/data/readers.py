"""Readers: input files and stdin to DataFrames, whole (`read_table`) or streamed (`iter_table`), by one set of rules.

Formats: INPUT_FORMATS, each optionally wrapped in one of COMPRESSIONS (not Parquet, which compresses
itself). Training, prediction and corpus mode all read through this module, so they accept the same
files and see the same rows.

What a row is (the same whole or streamed, so file mode and corpus mode agree):

* `.txt`: one row per line, in a `text` column. A line ends at "\\n" or "\\r\\n" only; U+2028, U+0085,
  form feeds and a lone "\\r" are characters of the text. A final newline ends the last line and adds no
  row, so the count is what `wc -l` says (plus one when the last line has no newline).
* `.csv` / `.tsv`: the first line is the header; every later record is a row, each cell the text exactly
  as written (so "NA", "007" and "1.0" stay as they are). Records follow the CSV grammar: a quoted field
  may hold line breaks, and outside quotes "\\n", "\\r\\n" or "\\r" end a record. A blank or
  whitespace-only line is a row (its cells empty, or the whitespace), never skipped. A record with more
  fields than the header is an error; one with fewer gets empty cells.
* `.jsonl` (and `.json` that does not start with "["): one JSON object per line, values keep their JSON
  types; a line of only whitespace is not a record (JSON Lines), so it makes no row. A key missing from
  a record is a missing value. `.json` starting with "[": a list of objects, read whole.
* `.parquet`: its rows, with typed columns.

Readers keep every row, in order: whether a row's text can be used (missing, not a string, blank) is for
the caller to say (`bertkit.inputs.row_problem`), never for a reader to drop.

Unreadable input is one line (BertkitError), never a traceback: a missing file, a folder, an unknown
suffix, a file with no rows, text that is not UTF-8 (a UTF-8 byte-order mark is allowed and dropped),
UTF-16 or UTF-32 text with or without a byte-order mark (refused, not guessed: re-save it as UTF-8), any
NUL byte (binary files, BOM-less UTF-16), broken compression, a file that is not Parquet.
"""
from __future__ import annotations

import bz2
import codecs
import gzip
import io
import json
import lzma
import os
import re
import sys
import warnings
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Callable, Generator, Iterable, Iterator, Sequence

import pandas as pd

from bertkit.data.columns import text_column
from bertkit.errors import BertkitError, OptionError
from bertkit.paths import input_path

INPUT_FORMATS = (".csv", ".tsv", ".jsonl", ".json", ".parquet", ".txt")
COMPRESSIONS: dict[str, Callable[..., IO[bytes]]] = {".bz2": bz2.open, ".gz": gzip.open, ".xz": lzma.open}
STDIN = "-"
SHARD_ROWS = 10_000  # rows a corpus is read, run and written at a time (corpus mode, index builds), by default

# What a file of each format needs at least, for the message when it has no rows.
_NEEDS = {".txt": "at least one line", ".jsonl": "at least one JSON object", ".json": "at least one JSON object",
          ".csv": "a header and at least one row", ".tsv": "a header and at least one row", ".parquet": "at least one row"}
_JSON_SPACE = " \t\r\n"  # JSON's own whitespace: a line of only these is blank
_WIDE_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)  # UTF-32-LE's mark starts like UTF-16-LE's
_PEEK_ROWS = 1000
_PANDAS_INDEX = re.compile(r"__index_level_[0-9]+__")


def formats_help() -> str:
    """The accepted formats, for messages: '.csv, .tsv, ..., .txt, each optionally .bz2/.gz/.xz'."""
    return f"{', '.join(INPUT_FORMATS)}, each optionally {'/'.join(COMPRESSIONS)}"


def input_format(path: str | os.PathLike) -> tuple[str, str | None]:
    """(format, compression) from a file name, e.g. data.csv.bz2 -> ('.csv', '.bz2'); the format is '' when there is none."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    compression = suffixes.pop() if suffixes and suffixes[-1] in COMPRESSIONS else None
    return (suffixes[-1] if suffixes else ""), compression


def is_input_file(path: str | os.PathLike) -> bool:
    """True when the name says a format this module reads (what a folder of inputs is filtered by)."""
    return input_format(path)[0] in INPUT_FORMATS


def input_files(source: str | os.PathLike) -> list[Path]:
    """The files of a corpus, in a fixed order: one file, or every input file under a folder (names starting with
    "." or "_" left out: hidden files and our own records)."""
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and is_input_file(p) and not p.name.startswith((".", "_")))
        if not files:
            raise BertkitError(f"{path} holds no input files ({formats_help()})")
        return files
    if not path.exists():
        raise BertkitError(f"{path} does not exist")
    if not is_input_file(path):
        raise BertkitError(f"{path} is not an input file ({formats_help()}); convert it or pass a folder")
    return [path]


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """The whole file as one DataFrame, rows numbered 0, 1, ... (see the module docstring for the rules)."""
    (frame,) = _checked_frames(path, None, None)  # rows=None: every producer gives one frame
    return frame


def iter_table(path: str | os.PathLike, rows: int, columns: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
    """The file's rows in order, `rows` at a time (the last chunk may be shorter), by the same rules as read_table.

    Each chunk's index holds the rows' numbers in the file (0-based, header not counted). With
    `columns`, only those, in that order; a JSON Lines file's columns are the keys of its first chunk of
    records (a key missing from a later record is a missing value). Checks the path before returning.
    """
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise OptionError("rows", f"must be a whole number of rows, at least 1, not {rows!r}")
    return _checked_frames(path, rows, columns)


def table_columns(path: str | os.PathLike, rows: int = _PEEK_ROWS) -> list[str]:
    """The file's column names from its first `rows` rows (Parquet: its schema), without reading it all;
    for JSON Lines, the keys of those records (pass iter_table's `rows` to see what it sees)."""
    frames = _checked_frames(path, rows, None, schema_only=True)
    try:
        return [str(c) for c in next(frames).columns]
    finally:
        frames.close()  # the rest of the file is not needed: close it now


def read_chunks(path: Path, column: str | None, rows: int) -> Iterator[pd.Series]:
    """The text column of `path`, `rows` at a time, never the whole file in memory: the rows read_table would give,
    in the column bertkit.data.text_column picks (`column`, else a usual name, else the only one)."""
    name = text_column(table_columns(path, rows), column, where=str(path))
    for frame in iter_table(path, rows, columns=[name]):
        yield frame[name]


def read_inputs(source: str | os.PathLike, param: str = "input") -> pd.DataFrame:
    """Rows for a command's input: a file of any INPUT_FORMATS (a .txt is a `text` column, one row per
    line), or '-' for stdin's lines (UTF-8, split like a .txt). A missing path or a folder is an
    OptionError naming `param`."""
    if str(source) == STDIN:
        raw = getattr(sys.stdin, "buffer", None)
        if raw is None:  # a text stream stood in for stdin (a notebook): its text, split by the same rule
            text = sys.stdin.read()
            frames = _collect("stdin", ".txt", _txt_frames(io.StringIO(text, newline="\n"), None),
                              lambda: bool(text.strip()), None)
        else:
            frames = _text_frames("stdin", ".txt", lambda: raw, None, None, None, owned=False)
        (frame,) = frames
        return frame
    return read_table(input_path(source, param))


# ---------------------------------------------------------------------------------------------
# The one reading path every public function goes through


def _checked_frames(path: str | os.PathLike, rows: int | None, columns: Sequence[str] | None,
                    schema_only: bool = False) -> Generator[pd.DataFrame, None, None]:
    path = Path(path)
    if not path.exists():
        raise BertkitError(f"file not found: {path}; check the path")
    if path.is_dir():
        raise BertkitError(f"{path} is a folder; pass a data file: {formats_help()}")
    fmt, compression = input_format(path)
    if fmt not in INPUT_FORMATS:
        raise BertkitError(f"unknown data file type '{''.join(path.suffixes) or path.name}' for {path}; "
                           f"use one of {formats_help()}")
    if not path.is_file():
        raise BertkitError(f"{path} is not a regular file; pass a data file")
    if path.stat().st_size == 0:
        raise BertkitError(f"{path} is empty; it needs {_NEEDS[fmt]}")
    if fmt == ".parquet":
        if compression:
            raise BertkitError(f"{path}: parquet is compressed internally; remove the {compression} wrapper")
        return _parquet_frames(path, rows, columns, schema_only)
    opener = COMPRESSIONS[compression] if compression else open
    return _text_frames(str(path), fmt, lambda: opener(path, "rb"), compression, rows, columns)


def _text_frames(name: str, fmt: str, open_raw: Callable[[], IO[bytes]], compression: str | None,
                 rows: int | None, columns: Sequence[str] | None, owned: bool = True) -> Generator[pd.DataFrame, None, None]:
    # newline="" hands "\r" to the CSV parser untouched (it knows quoting); "\n" makes the stream split
    # lines at "\n" only, which is the .txt and JSON Lines row rule.
    newline = "" if fmt in (".csv", ".tsv") else "\n"
    with _readable(name, compression):
        raw = open_raw()
        guard = _Guard(raw, name, owned)
        with io.TextIOWrapper(io.BufferedReader(guard), encoding="utf-8-sig", errors="strict", newline=newline) as stream:
            if fmt == ".txt":
                frames = _txt_frames(stream, rows)
            elif fmt in (".jsonl", ".json"):
                frames = _json_frames(stream, name, fmt, rows)
            else:
                frames = _csv_frames(stream, name, "\t" if fmt == ".tsv" else ",", rows)
            yield from _collect(name, fmt, frames, lambda: guard.has_content, columns)


def _collect(name: str, fmt: str, frames: Iterable[pd.DataFrame], has_content: Callable[[], bool],
             columns: Sequence[str] | None) -> Iterator[pd.DataFrame]:
    """Number the rows, keep the asked columns, and say so in one line when there are no rows at all."""
    start = 0
    for frame in frames:
        if len(frame) == 0:
            continue
        if columns is not None:
            if start == 0:
                _check_columns(name, [str(c) for c in frame.columns], columns)
            frame = frame.reindex(columns=list(columns))
        frame.index = pd.RangeIndex(start, start + len(frame))
        start += len(frame)
        yield frame
    if start == 0:
        if not has_content():
            raise BertkitError(f"{name} is empty; it needs {_NEEDS[fmt]}")
        raise BertkitError(f"{name} has no data rows; it needs {_NEEDS[fmt]}")


def _check_columns(name: str, have: list[str], wanted: Sequence[str]) -> None:
    missing = [c for c in wanted if c not in have]
    if missing:
        raise BertkitError(f"{name} has no column '{missing[0]}'; its columns are: {', '.join(have) or '(none)'}")


@contextmanager
def _readable(name: str, compression: str | None) -> Iterator[None]:
    """Turn what decoding and decompressing raise into one line that says what to do."""
    try:
        yield
    except UnicodeDecodeError:
        raise BertkitError(f"{name} is not UTF-8 text; re-save it as UTF-8") from None
    except (OSError, EOFError, lzma.LZMAError, zlib.error) as e:
        what = f"a valid {compression[1:]} file" if compression else "a readable file"
        raise BertkitError(f"cannot read {name} ({e}); check that it is {what}") from None


class _Guard(io.RawIOBase):
    """The bytes of a text input, refused before any parser sees them when they cannot be UTF-8 text."""

    def __init__(self, raw: IO[bytes], name: str, owned: bool) -> None:
        super().__init__()
        self._raw, self._name, self._owned = raw, name, owned
        self._first = True
        self.has_content = False  # any byte but ASCII whitespace and the UTF-8 byte-order mark

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        if not data:
            return 0
        body = data
        if self._first:
            self._first = False
            if data.startswith(_WIDE_BOMS):
                raise BertkitError(f"{self._name} is UTF-16 or UTF-32 text (it starts with a byte-order mark); "
                                   f"re-save it as UTF-8")
            body = data.removeprefix(codecs.BOM_UTF8)
        if b"\x00" in data:
            # UTF-8 text never holds NUL; BOM-less UTF-16 of Latin text is half NULs, binary files have them too.
            raise BertkitError(f"{self._name} holds NUL bytes, so it is binary or UTF-16/UTF-32 text, not UTF-8; "
                               f"re-save it as UTF-8 text")
        if not self.has_content and body.strip():
            self.has_content = True
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        if self._owned and not self.closed:
            self._raw.close()
        super().close()


# ---------------------------------------------------------------------------------------------
# One producer per format; each yields frames of `rows` rows (all rows at once when rows is None)


def _batches(items: Iterable[Any], rows: int | None) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if rows is not None and len(batch) == rows:
            yield batch
            batch = []
    if batch:
        yield batch


def _lines(stream: Iterable[str]) -> Iterator[str]:
    """Lines by the row rule, from a stream that splits at "\\n" only: the "\\n" or "\\r\\n" that ends each is dropped."""
    for line in stream:
        if line.endswith("\n"):
            line = line[:-2] if line.endswith("\r\n") else line[:-1]
        yield line


def _txt_frames(stream: Iterable[str], rows: int | None) -> Iterator[pd.DataFrame]:
    for batch in _batches(_lines(stream), rows):
        yield pd.DataFrame({"text": batch}, dtype=object)


def _json_frames(stream: IO[str], name: str, fmt: str, rows: int | None) -> Iterator[pd.DataFrame]:
    if fmt == ".json":
        text = stream.read()  # a JSON list has to be parsed whole anyway; .jsonl is the streamed form
        if text.lstrip(_JSON_SPACE).startswith("["):
            records = _json_list(text, name)
        else:
            records = _json_lines(io.StringIO(text, newline="\n"), name)
    else:
        records = _json_lines(stream, name)
    for batch in _batches(records, rows):
        # object dtype keeps every value as JSON typed it (no int -> float for a column with gaps).
        yield pd.DataFrame(batch, dtype=object)


def _json_list(text: str, name: str) -> list[dict]:
    try:
        records = json.loads(text)
    except json.JSONDecodeError as e:
        raise BertkitError(f"{name} is not valid JSON ({e.msg} at line {e.lineno}); fix it or write one object "
                           f"per line (.jsonl)") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise BertkitError(f"{name} must hold a list of objects like {{\"text\": ..., \"label\": ...}}")
    return records


def _json_lines(stream: Iterable[str], name: str) -> Iterator[dict]:
    for lineno, line in enumerate(_lines(stream), 1):
        if not line.strip(_JSON_SPACE):
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise BertkitError(f"line {lineno} of {name} is not valid JSON ({e.msg}); each line must be one JSON object") from None
        if not isinstance(record, dict):
            raise BertkitError(f"line {lineno} of {name} is not a JSON object; each line must look like "
                               f"{{\"text\": ..., \"label\": ...}}")
        yield record


def _csv_frames(stream: IO[str], name: str, sep: str, rows: int | None) -> Iterator[pd.DataFrame]:
    # Every cell a string and no NA guessing ("NA" and "007" are texts); blank lines are rows; never take
    # the first column as an index when a row has an extra field (that would shift every cell).
    options = dict(sep=sep, dtype=str, keep_default_na=False, na_filter=False, skip_blank_lines=False, index_col=False)
    kind = "TSV" if sep == "\t" else "CSV"
    reader = _parse_csv(name, kind, lambda: pd.read_csv(stream, chunksize=rows, **options))
    if reader is None:
        return
    if rows is None:
        frames: Iterator[pd.DataFrame] = iter([reader])
    else:
        frames = iter(reader)
    while True:
        frame = _parse_csv(name, kind, lambda: next(frames, None))
        if frame is None:
            return
        if len(frame.columns) == 0:
            raise BertkitError(f"the first line of {name} is blank; it must be the header (the column names)")
        yield frame


def _parse_csv(name: str, kind: str, step: Callable[[], Any]) -> Any:
    """One pandas parsing step, with its complaints as one line; None when there is nothing to parse."""
    try:
        with warnings.catch_warnings():
            # pandas only warns when a row has more fields than the header, and drops the extra cells.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return step()
    except pd.errors.EmptyDataError:
        return None
    except pd.errors.ParserWarning:
        raise BertkitError(f"a row of {name} has more fields than the header; quote fields that hold the "
                           f"separator, or add the missing column names") from None
    except pd.errors.ParserError as e:
        raise BertkitError(f"cannot parse {name} as {kind} ({str(e).strip()}); check quoting and the number of "
                           f"fields per row") from None


def _parquet_frames(path: Path, rows: int | None, columns: Sequence[str] | None,
                    schema_only: bool) -> Generator[pd.DataFrame, None, None]:
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
        # pandas stores an unnamed index as __index_level_N__: bookkeeping, not data. A named index is data.
        names = [str(n) for n in file.schema_arrow.names if not _PANDAS_INDEX.fullmatch(str(n))]
    except Exception as e:  # pyarrow raises several unrelated types for a bad file
        raise BertkitError(f"cannot read {path} as parquet ({type(e).__name__}: {e}); check the file") from None
    if schema_only:
        yield pd.DataFrame(columns=names)
        return
    if columns is not None:
        _check_columns(str(path), names, columns)
    wanted = list(columns) if columns is not None else names
    # Python ints, not floats, for an int column with nulls: the same values in a chunk and in the whole
    # file; no pandas metadata, so a saved index stays a column like the others.
    convert = dict(integer_object_nulls=True, ignore_metadata=True)

    def batches() -> Iterator[pd.DataFrame]:
        try:
            if rows is None:
                yield file.read(columns=wanted).to_pandas(**convert)
                return
            for batch in file.iter_batches(batch_size=rows, columns=wanted):
                yield batch.to_pandas(**convert)
        except Exception as e:
            raise BertkitError(f"cannot read {path} as parquet ({type(e).__name__}: {e}); check the file") from None

    frames = batches() if rows is None else _rechunk(batches(), rows)
    yield from _collect(str(path), ".parquet", frames, lambda: True, columns)


def _rechunk(frames: Iterable[pd.DataFrame], rows: int) -> Iterator[pd.DataFrame]:
    """Exactly `rows` rows per frame (the last may be shorter), whatever sizes come in."""
    pending: list[pd.DataFrame] = []
    count = 0
    for frame in frames:
        pending.append(frame)
        count += len(frame)
        while count >= rows:
            whole = pending[0] if len(pending) == 1 else pd.concat(pending, ignore_index=True)
            yield whole.iloc[:rows]
            pending = [whole.iloc[rows:]]
            count = len(pending[0])
    if count:
        yield pending[0] if len(pending) == 1 else pd.concat(pending, ignore_index=True)
