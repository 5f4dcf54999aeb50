"""Labels are names: the classes are the distinct values found, one spelling rule for every source; texts must be strings."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bertkit.data import class_order, label_name, load_dataset
from bertkit.errors import BertkitError

TEXTS = ["first", "second", "third", "fourth"]


def _csv(path, labels):
    pd.DataFrame({"text": TEXTS[: len(labels)], "label": labels}).to_csv(path, index=False)
    return path


def _jsonl(path, labels):
    path.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in zip(TEXTS, labels)))
    return path


def _names(ds):
    return [ds.label_names[i] for i in ds.labels]


# ------------------------------------------------------------------------------- classes are values


@pytest.mark.parametrize("big", [100_000, 10**12])
def test_sparse_integer_labels_make_two_classes(tmp_path, big):
    # Used to build big + 1 classes (74.5 GiB for 100,000; the kernel killed 10**12).
    ds = load_dataset(_csv(tmp_path / "sparse.csv", [0, big, 0, big]))
    assert ds.label_names == ["0", str(big)] and ds.labels == [0, 1, 0, 1]


def test_integer_classes_in_numeric_order_others_by_code_point():
    assert class_order(["10", "2", "-1", "0"]) == ["-1", "0", "2", "10"]
    assert class_order(["10", "2", "b", "A"]) == ["10", "2", "A", "b"]
    assert class_order(["01", "1"]) == ["01", "1"]  # equal as numbers, distinct as names, still a fixed order
    ds = load_dataset(pd.DataFrame({"text": TEXTS[:3], "label": [10, 2, 9]}))
    assert ds.label_names == ["2", "9", "10"]


# ---------------------------------------------------------------------------- one spelling rule


@pytest.mark.parametrize("value, name", [
    ("1", "1"), (1, "1"), (1.0, "1"), (np.int64(1), "1"), (np.float32(1.0), "1"), (" 1 ", "1"),
    ("01", "01"), ("1.0", "1.0"), (0.5, "0.5"), (np.float32(0.1), "0.1"), (-0.0, "0"),
    (True, "True"), (np.bool_(False), "False"), ("true", "true"), (10**12, "1000000000000"),
    (None, None), (float("nan"), None), (pd.NA, None), ("", None), ("   ", None),
])
def test_label_name_rule(value, name):
    assert label_name(value) == name


def test_a_label_is_the_same_class_in_every_format(tmp_path):
    """CSV cells are text, JSONL and Parquet typed, a DataFrame anything: 1, "1" and 1.0 are one class."""
    csv = load_dataset(_csv(tmp_path / "a.csv", ["1", "2", "1", "2"]))
    jsonl = load_dataset(_jsonl(tmp_path / "a.jsonl", [1, 2, 1.0, "2"]))
    parquet_path = tmp_path / "a.parquet"
    # An int column with a gap is stored as floats by pandas: 1.0, 2.0, NaN.
    pd.DataFrame({"text": TEXTS, "label": [1, 2, None, 1]}).to_parquet(parquet_path)
    with pytest.raises(BertkitError, match=r"1 invalid row\(s\).*missing 'label': 1.*rows 2"):
        load_dataset(parquet_path)
    with pytest.warns(UserWarning, match="dropped 1 invalid row"):
        parquet = load_dataset(parquet_path, drop_invalid=True)
    frame = load_dataset(pd.DataFrame({"text": TEXTS, "label": [np.int64(1), 2.0, "1", 2]}))
    for ds in (csv, jsonl, parquet, frame):
        assert ds.label_names == ["1", "2"]
    assert _names(jsonl) == ["1", "2", "1", "2"] and _names(parquet) == ["1", "2", "1"]


def test_text_spellings_stay_distinct(tmp_path):
    # "01" and "1" used to merge into the int 1; "1.0" in a CSV is the text "1.0".
    ds = load_dataset(_csv(tmp_path / "codes.csv", ["01", "1", "1.0", "01"]))
    assert ds.label_names == ["01", "1", "1.0"] and _names(ds) == ["01", "1", "1.0", "01"]


def test_bools_are_named_as_pandas_writes_them(tmp_path):
    frame = pd.DataFrame({"text": TEXTS, "label": [True, False, True, False]})
    frame.to_csv(tmp_path / "b.csv", index=False)
    frame.to_parquet(tmp_path / "b.parquet")
    _jsonl(tmp_path / "b.jsonl", [True, False, True, False])
    for source in (frame, tmp_path / "b.csv", tmp_path / "b.parquet", tmp_path / "b.jsonl"):
        ds = load_dataset(source)
        assert ds.label_names == ["False", "True"] and _names(ds) == ["True", "False", "True", "False"]


def test_non_whole_floats_are_names_not_errors():
    ds = load_dataset(pd.DataFrame({"text": TEXTS[:3], "label": [0.5, 1.0, 0.25]}))
    assert ds.label_names == ["0.25", "0.5", "1"]


def test_a_dict_label_is_a_one_line_error(tmp_path):
    path = tmp_path / "odd.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": {"k": 1}}\n')
    with pytest.raises(BertkitError) as err:
        load_dataset(path)
    assert "is a dict, not a class name in row 1" in str(err.value) and "\n" not in str(err.value)


# ----------------------------------------------------------------------- label_names map names


def test_label_names_are_matched_by_name_never_by_position():
    data = pd.DataFrame({"text": TEXTS[:2], "label": [1, 0]})
    with pytest.raises(BertkitError, match="unknown label '1' .*known labels: LABEL_0, LABEL_1 .*by name"):
        load_dataset(data, label_names=["LABEL_0", "LABEL_1"])
    ds = load_dataset(data, label_names=["1", "0"])  # a model's order, matched by name
    assert ds.label_names == ["1", "0"] and ds.labels == [0, 1]
    assert load_dataset(data, label_names=[0, 1]).labels == [1, 0]  # given names follow the same spelling rule
    # A model trained on labels 0 and 2 knows the names "0" and "2", not three positions.
    gap = load_dataset(pd.DataFrame({"text": TEXTS[:2], "label": [2.0, 0]}), label_names=["0", "2"])
    assert gap.labels == [1, 0]


def test_hf_class_label_ids_become_their_names():
    class ClassLabel:
        names = ["neg", "pos"]

    class Sequence:
        feature = ClassLabel()

    class FakeHF:
        features = {"text": object(), "label": ClassLabel(), "tags": Sequence()}

        def to_pandas(self):
            return pd.DataFrame({"text": ["bad", "good", "unlabelled"], "label": [0, 1, -1],
                                 "tags": [[1], [0, 1], []]})

    with pytest.warns(UserWarning, match=r"dropped 1 invalid row.*missing 'label'"):
        ds = load_dataset(FakeHF(), drop_invalid=True)
    assert ds.label_names == ["neg", "pos"] and ds.labels == [0, 1]
    # Matched by name against a model whose order differs.
    with pytest.warns(UserWarning, match="dropped 1 invalid row"):
        assert load_dataset(FakeHF(), drop_invalid=True, label_names=["pos", "neg"]).labels == [1, 0]
    multi = load_dataset(FakeHF(), label_column="tags", multi_label=True)
    assert multi.label_names == ["neg", "pos"] and multi.labels == [[0, 1], [1, 1], [0, 0]]


def test_multi_label_ints_are_names(tmp_path):
    path = tmp_path / "ml.parquet"
    pq.write_table(pa.table({"text": ["a", "b"], "labels": [[0, 20], [20]]}), path)
    ds = load_dataset(path, multi_label=True)  # used to be 21 classes, 0..20
    assert ds.label_names == ["0", "20"] and ds.labels == [[1, 1], [0, 1]]


# ----------------------------------------------------------------------- texts: the prediction rule


def test_texts_that_are_not_strings_are_invalid_rows(tmp_path):
    # train used to turn 5, {"a": 1} and [1] into the texts "5", "{'a': 1}", "[1]"; predict refuses them.
    path = tmp_path / "mixed.jsonl"
    rows = [{"text": "fine", "label": "a"}, {"text": 5, "label": "b"}, {"text": {"a": 1}, "label": "a"},
            {"text": [1], "label": "b"}, {"text": "  ", "label": "a"}, {"label": "b"}, {"text": "ok", "label": "b"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(BertkitError) as err:
        load_dataset(path)
    msg = str(err.value)
    assert "5 invalid row(s)" in msg and "rows 1, 2, 3, 4, 5" in msg and "\n" not in msg
    assert "'text' is an int, not a string: 1" in msg and "empty 'text': 1" in msg and "missing 'text': 1" in msg
    with pytest.warns(UserWarning, match="dropped 5 invalid row"):
        ds = load_dataset(path, drop_invalid=True)
    assert ds.texts == ["fine", "ok"] and ds.row_ids == [0, 6]


def test_int_text_column_in_a_dataframe_is_refused():
    with pytest.raises(BertkitError, match=r"'text' is an int, not a string: 2"):
        load_dataset(pd.DataFrame({"text": [1, 2], "label": ["a", "b"]}))
