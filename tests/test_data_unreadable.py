"""Unreadable inputs are one line in every reader: binary, UTF-16/32 with or without a byte-order mark, folders, broken files."""
from __future__ import annotations

import bz2
import codecs
import gzip
import io
import sys

import pytest

from bertkit.data import iter_table, load_dataset, read_chunks, read_inputs, read_table, table_columns
from bertkit.errors import BertkitError

TEXT = "text,label\nhello,pos\nbye,neg\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01" + bytes(range(256))

# name -> (file name, bytes, what the one line must say)
CASES = {
    "utf16-le-bom": ("data.csv", codecs.BOM_UTF16_LE + TEXT.encode("utf-16-le"), "UTF-16 or UTF-32"),
    "utf16-be-bom": ("data.txt", codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be"), "UTF-16 or UTF-32"),
    "utf16-no-bom": ("data.csv", TEXT.encode("utf-16-le"), "NUL bytes"),
    "utf32-bom": ("data.jsonl", '{"text": "a"}\n'.encode("utf-32"), "UTF-16 or UTF-32"),
    "png-as-csv": ("image.csv", PNG, "NUL bytes"),
    "latin1": ("data.txt", "café\nnaïve\n".encode("latin-1"), "not UTF-8"),
    "gzip-named-csv": ("data.csv", gzip.compress(TEXT.encode()), "not UTF-8"),
    "broken-gzip": ("data.csv.gz", b"this is not gzip", "valid gz file"),
    "truncated-bz2": ("data.jsonl.bz2", bz2.compress(b'{"text": "a"}\n' * 1000)[:40], "valid bz2 file"),
    "not-parquet": ("data.parquet", TEXT.encode(), "as parquet"),
    # Past the first block read: a streamed reader must refuse it too, not only a sniff of the head.
    "late-nul": ("late.txt", b"fine line\n" * 5000 + b"bin\x00ary\n", "NUL bytes"),
    "late-bad-utf8": ("late.csv", b"text\n" + b"fine\n" * 5000 + b"caf\xe9\n", "not UTF-8"),
}


def _every_reader():
    return {
        "read_table": read_table,
        "iter_table": lambda p: list(iter_table(p, 7)),
        "table_columns": lambda p: table_columns(p, 100_000),
        "read_inputs": lambda p: read_inputs(str(p)),
        "load_dataset": load_dataset,
        "data.read_chunks": lambda p: list(read_chunks(p, "text", 7)),
    }


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert message and "\n" not in message and "Traceback" not in message
    return message


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("reader", sorted(_every_reader()))
def test_unreadable_file_is_one_line_in_every_reader(tmp_path, case, reader):
    name, data, says = CASES[case]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(BertkitError) as err:
        _every_reader()[reader](path)
    assert says in _one_line(err)


@pytest.mark.parametrize("reader", sorted(_every_reader()))
def test_a_folder_is_one_line_in_every_reader(tmp_path, reader):
    folder = tmp_path / "inputs.csv"
    folder.mkdir()
    with pytest.raises(BertkitError) as err:
        _every_reader()[reader](folder)
    assert "folder" in _one_line(err)


@pytest.mark.parametrize("reader", sorted(_every_reader()))
def test_a_missing_file_is_one_line_in_every_reader(tmp_path, reader):
    with pytest.raises(BertkitError) as err:
        _every_reader()[reader](tmp_path / "nope.csv")
    assert "nope.csv" in _one_line(err)


def test_read_inputs_names_its_option(tmp_path):
    with pytest.raises(BertkitError) as err:
        read_inputs(str(tmp_path), param="input")
    assert err.value.param == "input" and str(err.value).startswith("input ") and "is a folder" in str(err.value)


def test_stdin_that_is_not_utf8_is_one_line(monkeypatch):
    for data, says in ((codecs.BOM_UTF16_LE + "a\nb\n".encode("utf-16-le"), "UTF-16"), (b"a\x00b", "NUL"),
                       (b"caf\xe9", "not UTF-8"), (b"", "stdin is empty")):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
        with pytest.raises(BertkitError) as err:
            read_inputs("-")
        assert says in _one_line(err)


def test_a_utf8_byte_order_mark_is_allowed_and_dropped(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(codecs.BOM_UTF8 + TEXT.encode())
    assert list(read_table(path).columns) == ["text", "label"]
    assert list(next(iter_table(path, 1)).columns) == ["text", "label"]
