"""Masked-LM text sources: what a document is in each format, a folder streamed, blanks counted, bad input refused."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from bertkit.errors import BertkitError, OptionError
from bertkit.pretrain import DocumentCounts, read_documents


def read(source, **kwargs) -> tuple[list[str], DocumentCounts]:
    counts = DocumentCounts()
    return list(read_documents(source, counts=counts, **kwargs)), counts


def test_txt_is_a_line_per_document_and_blank_lines_are_counted(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("first line\n\n  \nsecond line\r\nthird\n", encoding="utf-8")
    docs, counts = read(path)
    assert docs == ["first line", "second line", "third"]
    assert (counts.documents, counts.blank, counts.files) == (3, 2, 1)
    assert counts.characters == sum(map(len, docs))
    assert "2 blank rows skipped" in counts.summary()


def test_txt_paragraphs_join_lines_up_to_a_blank_line(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("one a\none b\n\n\ntwo\n  \nthree a\nthree b", encoding="utf-8")
    docs, counts = read(path, paragraphs=True)
    assert docs == ["one a\none b", "two", "three a\nthree b"]
    assert counts.blank == 0  # blank lines separate paragraphs: nothing is skipped


def test_tables_give_a_row_per_document_from_the_picked_column(tmp_path):
    pd.DataFrame({"id": [1, 2, 3], "body": ["alpha", "", "gamma, with a comma"]}).to_csv(tmp_path / "a.csv", index=False)
    docs, counts = read(tmp_path / "a.csv", text_column="body")
    assert docs == ["alpha", "gamma, with a comma"] and counts.blank == 1
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps(r) for r in [{"text": "x y"}, {"text": None}, {"other": 1}]))
    docs, counts = read(tmp_path / "b.jsonl")  # the usual name 'text' is found; a missing key is a missing value
    assert docs == ["x y"] and counts.blank == 2
    pd.DataFrame({"Content": ["p", None, "q"]}).to_parquet(tmp_path / "c.parquet")
    docs, counts = read(tmp_path / "c.parquet")
    assert docs == ["p", "q"] and counts.blank == 1


def test_a_folder_is_streamed_file_by_file_in_sorted_order(tmp_path):
    (tmp_path / "b.txt").write_text("b1\nb2\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.jsonl").write_text('{"text": "c1"}\n')
    (tmp_path / "a.csv").write_text("text\na1\n")
    (tmp_path / "notes.md").write_text("not an input file\n")
    documents = read_documents(tmp_path, counts=(counts := DocumentCounts()))
    assert next(documents) == "a1" and counts.files == 1  # nothing past the first file has been read yet
    assert list(documents) == ["b1", "b2", "c1"]
    assert counts.files == 3


def test_a_column_that_is_not_text_is_a_one_line_error(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "fine"}\n{"text": 7}\n')
    with pytest.raises(OptionError, match=r"text_column picks column 'text' of .*a\.jsonl, but its row 1 is an int, "
                                          r"not a string") as e:
        read(tmp_path / "a.jsonl")
    assert "\n" not in str(e.value)
    pd.DataFrame({"n": [1, 2]}).to_parquet(tmp_path / "n.parquet")
    with pytest.raises(OptionError, match="row 0 is an int, not a string"):
        read(tmp_path / "n.parquet")
    with pytest.raises(OptionError, match="no column 'body'"):
        read(tmp_path / "a.jsonl", text_column="body")


def test_an_empty_corpus_is_a_one_line_error(tmp_path):
    (tmp_path / "blank.txt").write_text("\n \n\t\n")
    with pytest.raises(BertkitError, match=r"holds no text to train on \(only 3 blank rows\)"):
        read(tmp_path / "blank.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BertkitError, match="holds no input files"):
        read(tmp_path / "empty")
    with pytest.raises(BertkitError, match="does not exist"):
        read(tmp_path / "missing.txt")
