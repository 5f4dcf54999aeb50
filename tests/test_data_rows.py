"""What a row is: every input row kept, in order, the same whole (read_table) or streamed (iter_table, corpus mode)."""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bertkit.data import input_files, iter_table, load_dataset, read_chunks, read_inputs, read_table, table_columns
from bertkit.errors import BertkitError

# Characters str.splitlines() breaks on that are not line ends in a file: a .txt line keeps them.
NOT_LINE_ENDS = ["\u2028", "\u2029", "\x85", "\x0c", "\x0b", "\x1c", "\x1d", "\x1e", "\r"]
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
# Any text a UTF-8 file can hold, except NUL (refused as binary) and U+FEFF (a leading one is a byte-order mark).
CHARS = st.characters(blacklist_characters="\x00\ufeff", blacklist_categories=("Cs",))


def _streamed(path, rows, columns=None) -> pd.DataFrame:
    chunks = list(iter_table(path, rows, columns))
    assert all(len(c) == rows for c in chunks[:-1]) and 0 < len(chunks[-1]) <= rows
    starts = [c.index[0] for c in chunks]
    assert starts == list(range(0, rows * len(chunks), rows))  # each chunk's index is its rows' numbers
    return pd.concat(chunks)


def _txt_rows(content: str) -> list[str]:
    """The row rule, written independently: lines end at "\\n" or "\\r\\n"; a final newline adds no row."""
    *ended, tail = content.split("\n")
    return [line[:-1] if line.endswith("\r") else line for line in ended] + ([tail] if tail else [])


# ------------------------------------------------------------------------------------------- .txt


def test_txt_rows_are_the_lines_wc_counts(tmp_path):
    path = tmp_path / "odd.txt"
    lines = [f"before{c}after" for c in NOT_LINE_ENDS] + ["", "   ", "last"]
    path.write_bytes(("\n".join(lines) + "\n").encode("utf-8"))
    wc = path.read_bytes().count(b"\n")
    assert read_table(path)["text"].tolist() == lines and len(lines) == wc
    assert _streamed(path, 4)["text"].tolist() == lines
    with pytest.warns(UserWarning, match=r"dropped 2 invalid row\(s\).*empty 'text': 2\): rows 9, 10"):
        assert load_dataset(path, drop_invalid=True).texts == [t for t in lines if t.strip()]


def test_txt_line_endings_and_final_newline(tmp_path):
    path = tmp_path / "crlf.txt"
    path.write_bytes(b"one\r\ntwo\r\n\r\nfour")  # no final newline: the last line still counts
    assert read_table(path)["text"].tolist() == ["one", "two", "", "four"]
    path.write_bytes(b"one\n\n")  # the final newline ends the empty line; it does not add another
    assert read_table(path)["text"].tolist() == ["one", ""]


@SETTINGS
@given(pieces=st.lists(st.text(CHARS, max_size=6) | st.sampled_from(["\n", "\r\n", "\r", " ", "\u2028", "\x85"]),
                      max_size=20), rows=st.integers(1, 5))
def test_txt_read_table_and_iter_table_agree(pieces, rows):
    content = "".join(pieces)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "gen.txt"
        path.write_bytes(content.encode("utf-8"))
        if not content:
            with pytest.raises(BertkitError, match="is empty"):
                read_table(path)
            with pytest.raises(BertkitError, match="is empty"):
                list(iter_table(path, rows))
            return
        whole = read_table(path)["text"].tolist()
        assert whole == _txt_rows(content)
        assert _streamed(path, rows)["text"].tolist() == whole


# ------------------------------------------------------------------------------------------- .csv


def test_csv_whitespace_and_blank_rows_are_kept(tmp_path):
    # A whitespace-only row used to vanish (5 predictions for 6 rows); blank lines are rows with empty cells.
    path = tmp_path / "we.csv"
    path.write_text("text\ngood film\n   \nbad film\n\nfine\n\t\n")
    want = ["good film", "   ", "bad film", "", "fine", "\t"]
    assert read_table(path)["text"].tolist() == want
    assert _streamed(path, 4)["text"].tolist() == want
    assert read_inputs(str(path))["text"].tolist() == want
    with pytest.raises(BertkitError, match=r"3 invalid row\(s\).*rows 1, 3, 5"):
        load_dataset(path)


def test_csv_blank_line_in_a_labelled_file_is_an_invalid_row(tmp_path):
    path = tmp_path / "gap.csv"
    path.write_text("text,label\na,x\n\nb,y\n")
    frame = read_table(path)
    assert frame.to_dict("list") == {"text": ["a", "", "b"], "label": ["x", "", "y"]}
    with pytest.raises(BertkitError, match=r"1 invalid row\(s\).*empty 'text': 1; missing 'label': 1.*rows 1"):
        load_dataset(path)


def test_csv_row_with_an_extra_field_is_an_error_not_a_shift(tmp_path):
    # pandas used to take the first column as an index here, shifting every cell one column left.
    path = tmp_path / "extra.csv"
    path.write_text("text,label\nhello, world,pos\nfine,neg\n")
    for read in (read_table, lambda p: list(iter_table(p, 1))):
        with pytest.raises(BertkitError, match="more fields than the header"):
            read(path)


def test_csv_keeps_line_separators_inside_cells(tmp_path):
    path = tmp_path / "odd.csv"
    cells = [f"a{c}b" for c in NOT_LINE_ENDS if c != "\r"] + ['quoted\nnewline', 'quoted\r\ncrlf']
    pd.DataFrame({"text": cells}).to_csv(path, index=False)
    assert read_table(path)["text"].tolist() == cells
    assert _streamed(path, 3)["text"].tolist() == cells


@SETTINGS
@given(records=st.lists(st.lists(st.text(CHARS | st.sampled_from(["\n", "\r", ",", '"', " "]), max_size=12),
                                 min_size=2, max_size=2), min_size=1, max_size=12),
       quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]), rows=st.integers(1, 5))
def test_csv_read_table_and_iter_table_agree(records, quoting, rows):
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, quoting=quoting, lineterminator="\r\n")
    writer.writerow(["text", "label"])
    writer.writerows(records)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "gen.csv"
        path.write_bytes(buffer.getvalue().encode("utf-8"))
        whole = read_table(path)
        assert whole.values.tolist() == records  # nothing lost, nothing split, cells as written
        assert _streamed(path, rows).values.tolist() == records


# ----------------------------------------------------------------------------------- JSON Lines


def test_jsonl_blank_lines_are_not_records_and_u2028_stays_in_a_record(tmp_path):
    path = tmp_path / "sep.jsonl"
    # A raw U+2028 is valid inside a JSON string; str.splitlines() used to cut the record in two.
    path.write_text('{"text": "a\u2028b"}\n\n   \n{"text": "c\x85d"}\r\n{"text": ""}\n', encoding="utf-8")
    want = ["a\u2028b", "c\x85d", ""]
    assert read_table(path)["text"].tolist() == want
    assert _streamed(path, 2)["text"].tolist() == want


def test_jsonl_values_keep_their_types_whole_and_streamed(tmp_path):
    path = tmp_path / "typed.jsonl"
    records = [{"text": "a", "label": 1}, {"text": "b", "label": None}, {"text": 5, "label": 2 ** 60 + 1},
               {"text": "d"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    whole = read_table(path)
    assert whole["label"].tolist()[2] == 2 ** 60 + 1  # no detour through floats
    streamed = _streamed(path, 3, ["text", "label"])
    for a, b in zip(whole.itertuples(index=False), streamed.itertuples(index=False)):
        assert [x if x == x else None for x in a] == [x if x == x else None for x in b]  # NaN == missing both ways


def test_parquet_whole_and_streamed_agree(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "p.parquet"
    texts = [f"t{i}" if i % 7 else None for i in range(50)]
    pq.write_table(pa.table({"text": texts, "n": [i if i % 5 else None for i in range(50)]}), path, row_group_size=6)
    whole = read_table(path)
    streamed = _streamed(path, 8)
    assert whole["text"].isna().tolist() == streamed["text"].isna().tolist()
    assert [t for t in whole["text"] if isinstance(t, str)] == [t for t in streamed["text"] if isinstance(t, str)]
    assert whole["n"].tolist() == streamed["n"].tolist()
    assert table_columns(path) == ["text", "n"]


# ------------------------------------------------------------------------------ read_inputs, corpus


def test_read_inputs_stdin_uses_the_txt_rule(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("a\u2028b\r\n\nc\x85d\n".encode("utf-8"))))
    assert read_inputs("-")["text"].tolist() == ["a\u2028b", "", "c\x85d"]


def test_read_inputs_stdin_through_a_real_pipe():
    code = "from bertkit.data import read_inputs; print(read_inputs('-')['text'].tolist())"
    done = subprocess.run([sys.executable, "-c", code], input="x\u2028y\r\n\n  \nlast".encode("utf-8"),
                          capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-500:]
    assert done.stdout.decode("utf-8").strip() == repr(["x\u2028y", "", "  ", "last"])


def test_read_inputs_reads_every_format(tmp_path):
    frame = pd.DataFrame({"review": ["good", "  ", "bad"]})
    frame.to_parquet(tmp_path / "r.parquet")
    frame.to_json(tmp_path / "r.jsonl", orient="records", lines=True)
    (tmp_path / "r.txt").write_text("good\n  \nbad\n")
    for name in ("r.parquet", "r.jsonl"):
        assert read_inputs(str(tmp_path / name))["review"].tolist() == ["good", "  ", "bad"]
    assert read_inputs(str(tmp_path / "r.txt"))["text"].tolist() == ["good", "  ", "bad"]


def test_corpus_chunks_keep_blank_csv_rows_and_find_text_columns_as_training_does(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("Text,other\na,1\n  ,2\n,3\nd,4\n")
    chunks = list(read_chunks(path, None, 3))
    assert [c.tolist() for c in chunks] == [["a", "  ", ""], ["d"]]
    assert [c.index[0] for c in chunks] == [0, 3]
    assert read_table(path)["Text"].tolist() == pd.concat(chunks).tolist()


def test_parquet_saved_with_an_index_reads_the_same_whole_and_streamed(tmp_path):
    frame = pd.DataFrame({"text": ["a", "b", "c", "d"], "n": [1, 2, 3, 4]})
    frame[frame["text"] != "b"].to_parquet(tmp_path / "filtered.parquet")  # stores __index_level_0__
    frame.set_index("text").to_parquet(tmp_path / "named.parquet")  # the texts are the index
    for name, want in (("filtered.parquet", ["a", "c", "d"]), ("named.parquet", ["a", "b", "c", "d"])):
        path = tmp_path / name
        assert sorted(table_columns(path)) == ["n", "text"]
        assert read_table(path)["text"].tolist() == want == _streamed(path, 3)["text"].tolist()


def test_every_input_format_is_a_corpus_file(tmp_path):
    for name in ("a.csv.gz", "b.json", "c.txt", "d.TSV", "e.jsonl.xz", "f.parquet", ".hidden.csv", "_meta.csv", "g.xlsx"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in input_files(tmp_path)] == ["a.csv.gz", "b.json", "c.txt", "d.TSV", "e.jsonl.xz",
                                                              "f.parquet"]
    with pytest.raises(BertkitError, match=r"g.xlsx is not an input file \(.csv, .tsv, .jsonl, .json, .parquet, .txt"):
        input_files(tmp_path / "g.xlsx")
