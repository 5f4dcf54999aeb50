"""Unlabelled text for masked-LM training: documents streamed from a file or a folder of files, never read whole.

Files are read by bertkit.data's readers (INPUT_FORMATS, the same rows as everywhere else) and a table's
texts are in the column bertkit.data.text_column picks. What a document is:

* a table's row (CSV/TSV, JSON Lines, JSON, Parquet): one document per row;
* a `.txt` line, by default (the project's one row rule for `.txt`); with `paragraphs=True`, a
  paragraph instead: consecutive non-blank lines, joined by "\\n", up to a blank line. The choice is
  the caller's, never guessed from the file: a line-per-document file with an occasional blank line
  would otherwise merge unrelated documents.

Nothing is dropped silently: a blank or missing text is skipped and counted (`DocumentCounts.blank`),
a value that is not text (a number, a list) is a one-line error naming the file, the row and the
column, and a source with no text at all is a one-line error.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from bertkit.data import input_files, read_chunks
from bertkit.data import input_format
from bertkit.errors import BertkitError, OptionError
from bertkit.inputs import row_problem

CHUNK_ROWS = 10_000  # rows read at a time: memory stays flat however large a file is


@dataclass
class DocumentCounts:
    """What reading a source found: how many documents it gave, how many blank ones it skipped, and their size."""

    files: int = 0
    documents: int = 0
    blank: int = 0  # rows, lines or cells that were missing or only whitespace: skipped, counted here
    characters: int = 0
    sources: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the user, e.g. '1,204 documents (3.1M characters) from 2 files; 7 blank rows skipped'."""
        skipped = f"; {self.blank:,} blank row{'s' * (self.blank != 1)} skipped" if self.blank else ""
        return (f"{self.documents:,} documents ({self.characters:,} characters) from {self.files} "
                f"file{'s' * (self.files != 1)}{skipped}")


def read_documents(source: str | os.PathLike, *, text_column: str | None = None, paragraphs: bool = False,
                   counts: DocumentCounts | None = None, rows: int = CHUNK_ROWS) -> Iterator[str]:
    """The documents of a file or of every input file under a folder (in sorted order), one string each.

    `counts`, when given, is filled in as the documents are read. A source that yields no document
    raises BertkitError once it is exhausted, saying how many blank rows it held.
    """
    counts = counts if counts is not None else DocumentCounts()
    files = input_files(source)
    for path in files:
        counts.files += 1
        counts.sources.append(str(path))
        if input_format(path)[0] == ".txt":
            # A .txt file has one column, whatever text_column says for the tables beside it.
            texts = _lines(path, rows)
            if paragraphs:
                texts = _paragraphs(texts)
        else:
            texts = _cells(path, text_column, rows)
        for text in texts:
            if text is None:
                counts.blank += 1
                continue
            counts.documents += 1
            counts.characters += len(text)
            yield text
    if counts.documents == 0:
        where = str(source) if len(files) == 1 else f"{source} ({len(files)} files)"
        held = f" (only {counts.blank:,} blank rows)" if counts.blank else ""
        raise BertkitError(f"{where} holds no text to train on{held}; pass a file or folder of documents")


def _lines(path: Path, rows: int) -> Iterator[str | None]:
    """A .txt file's lines, None for a blank one."""
    for chunk in read_chunks(path, None, rows):
        for line in chunk:
            yield line if line.strip() else None


def _paragraphs(lines: Iterable[str | None]) -> Iterator[str]:
    """Runs of non-blank lines joined by newlines; blank lines only separate them, so none is counted as skipped."""
    paragraph: list[str] = []
    for line in lines:
        if line is None:
            if paragraph:
                yield "\n".join(paragraph)
                paragraph = []
        else:
            paragraph.append(line)
    if paragraph:
        yield "\n".join(paragraph)


def _cells(path: Path, text_column: str | None, rows: int) -> Iterator[str | None]:
    """A table's text column, row by row: the text, None for a blank or missing cell, an error for anything else."""
    for chunk in read_chunks(path, text_column, rows):
        for row, value in chunk.items():
            if isinstance(value, str):
                yield value if value.strip() else None
                continue
            what = f"row {row}"
            problem = row_problem(value, what)
            if problem == f"missing {what}":
                yield None
                continue
            raise OptionError("text_column", f"picks column '{chunk.name}' of {path}, but its {problem}; "
                                             f"name the column that holds the documents")
