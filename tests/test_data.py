"""Tests for bertkit.data: reading every table format, label handling, errors, splits and split checks."""
from __future__ import annotations

import bz2
import gzip
import json
import random

import numpy as np
import pandas as pd
import pytest

from bertkit.data import (BUILTIN_DATASETS, LABEL_COLUMNS, TextDataset, check_splits, list_datasets, load_dataset,
                          looks_sorted_by_label, pick_column, read_table, stratified_split, text_column,
                          train_val_test_split)
from bertkit.errors import BertkitError, OptionError

# Texts with the characters that break naive parsers: commas, quotes, newlines, tabs, non-ASCII, "NA".
TRICKY = ['plain', 'has, a comma', 'has "quotes"', 'two\nlines', 'tab\there', 'café ☕', 'NA', '007']
LABELS = ["pos", "neg", "neu", "pos", "neg", "neu", "pos", "neg"]


def _frame() -> pd.DataFrame:
    return pd.DataFrame({"text": TRICKY, "label": LABELS})


@pytest.fixture(scope="module")
def builtins() -> dict[str, TextDataset]:
    return {name: load_dataset(name) for name in BUILTIN_DATASETS}


# ----------------------------------------------------------------------------------------- formats


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".json", ".parquet", ".csv.bz2", ".csv.gz", ".jsonl.gz"])
def test_round_trip_each_format(tmp_path, suffix):
    df = _frame()
    path = tmp_path / f"data{suffix}"
    base = suffix.split(".")[1]
    compression = {"bz2": "bz2", "gz": "gzip"}.get(suffix.rsplit(".", 1)[-1]) if suffix.count(".") > 1 else None
    if base in ("csv", "tsv"):
        df.to_csv(path, sep="\t" if base == "tsv" else ",", index=False, compression=compression)
    elif base == "jsonl":
        df.to_json(path, orient="records", lines=True, force_ascii=False, compression=compression)
    elif base == "json":
        path.write_text(json.dumps(df.to_dict(orient="records"), ensure_ascii=False), encoding="utf-8")
    else:
        df.to_parquet(path)
    table = read_table(path)
    assert table["text"].tolist() == TRICKY
    ds = load_dataset(path)
    assert ds.texts == TRICKY
    assert ds.label_names == ["neg", "neu", "pos"]  # sorted, whatever the order of appearance
    assert [ds.label_names[i] for i in ds.labels] == LABELS
    assert ds.row_ids == list(range(len(TRICKY)))
    assert ds.source == str(path)


def test_txt_one_text_per_line(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("first, with comma\nsecond \"quoted\"\n", encoding="utf-8")
    ds = load_dataset(path)
    assert ds.texts == ["first, with comma", 'second "quoted"']
    assert ds.labels is None and ds.label_names == []


def test_bz2_txt_and_bom(tmp_path):
    path = tmp_path / "texts.txt.bz2"
    path.write_bytes(bz2.compress("\ufeffalpha\nbeta\n".encode("utf-8")))
    assert read_table(path)["text"].tolist() == ["alpha", "beta"]
    csv = tmp_path / "bom.csv"
    csv.write_bytes("\ufefftext,label\nx,1\n".encode("utf-8"))
    assert list(read_table(csv).columns) == ["text", "label"]


def test_missing_empty_and_unknown_files(tmp_path):
    with pytest.raises(BertkitError, match="file not found"):
        read_table(tmp_path / "nope.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(BertkitError, match="is empty"):
        read_table(empty)
    blank = tmp_path / "blank.jsonl.gz"
    blank.write_bytes(gzip.compress(b"\n\n"))
    with pytest.raises(BertkitError, match="is empty"):
        read_table(blank)
    header_only = tmp_path / "header.csv"
    header_only.write_text("text,label\n")
    with pytest.raises(BertkitError, match="no data rows"):
        read_table(header_only)
    odd = tmp_path / "data.xlsx"
    odd.write_text("x")
    with pytest.raises(BertkitError, match=r"unknown data file type '\.xlsx'.*\.csv"):
        read_table(odd)
    with pytest.raises(BertkitError, match="no file or built-in dataset named 'not_a_dataset'.*rotten_tomatoes"):
        load_dataset("not_a_dataset")


def test_bad_json_line_is_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": \n')
    with pytest.raises(BertkitError, match="line 2 of .*bad.jsonl is not valid JSON"):
        read_table(path)


# ------------------------------------------------------------------------------------------ labels


def test_label_names_given_preserve_order_and_map_by_name():
    ds = load_dataset(_frame(), label_names=["pos", "neg", "neu"])
    assert ds.label_names == ["pos", "neg", "neu"]
    assert ds.labels == [0, 1, 2, 0, 1, 2, 0, 1]
    assert ds.label_counts() == {"pos": 3, "neg": 3, "neu": 2}


def test_unknown_label_names_the_label_and_row():
    df = pd.DataFrame({"text": ["a", "b", "c"], "label": ["neg", "pos", "meh"]})
    with pytest.raises(BertkitError) as err:
        load_dataset(df, label_names=["neg", "pos"])
    msg = str(err.value)
    assert "'meh'" in msg and "row 2" in msg and "neg, pos" in msg and "\n" not in msg


def test_integer_labels_are_names(tmp_path):
    path = tmp_path / "ints.csv"
    path.write_text("text,label\na,0\nb,2\nc,1\nd,10\n")
    ds = load_dataset(path)  # read as strings by the CSV reader; the classes are the values found, in numeric order
    assert ds.label_names == ["0", "1", "2", "10"]
    assert [ds.label_names[i] for i in ds.labels] == ["0", "2", "1", "10"]
    # A model's names are matched by name, never by position.
    with pytest.raises(BertkitError, match="unknown label '1' in row 0 .*known labels: negative, positive.*by name"):
        load_dataset(pd.DataFrame({"text": ["a", "b"], "label": [1, 0]}), label_names=["negative", "positive"])
    stars = load_dataset(pd.DataFrame({"text": ["a", "b"], "label": [5, 1]}), label_names=["1", "5"])
    assert stars.labels == [1, 0]
    halves = load_dataset(pd.DataFrame({"text": ["a", "b"], "label": [1.0, 0.5]}))
    assert halves.label_names == ["0.5", "1"] and halves.labels == [1, 0]


def test_column_detection_and_missing_column_message():
    df = pd.DataFrame({"Sentence": ["a", "b"], "category": ["x", "y"], "other": [1, 2]})
    ds = load_dataset(df)
    assert ds.texts == ["a", "b"] and ds.label_names == ["x", "y"]
    with pytest.raises(BertkitError) as err:
        load_dataset(df, text_column="txt")
    assert err.value.param == "text_column"
    assert str(err.value) == "text_column is 'txt', but the DataFrame has no column 'txt'; its columns are: Sentence, category, other"
    with pytest.raises(OptionError, match="label_column is 'lbl', but the DataFrame has no column 'lbl'"):
        load_dataset(df, label_column="lbl")
    with pytest.raises(OptionError, match=r"text_column is needed: .* no text column \(looked for text, sentence.*columns are: a, b"):
        load_dataset(pd.DataFrame({"a": [1], "b": [2]}))


def test_one_column_picker_for_training_prediction_and_corpus_mode():
    # `Text` trained but failed predict: both now find it, ignoring case, after exact names.
    assert text_column(["id", "Text"]) == "Text"
    assert text_column(["TEXT", "text"]) == "text"
    assert text_column(["body"]) == "body"  # a single column is the text
    assert load_dataset(pd.DataFrame({"id": [1], "Text": ["hello"]})).texts == ["hello"]
    assert pick_column(["Label", "x"], None, LABEL_COLUMNS, "label", "label_column", required=False) == "Label"
    assert pick_column(["x", "y"], None, LABEL_COLUMNS, "label", "label_column", required=False) is None
    with pytest.raises(OptionError) as err:
        text_column(["Text", "b"], "text", where="we.csv")
    assert err.value.param == "text_column"
    assert str(err.value) == ("text_column is 'text', but we.csv has no column 'text' (did you mean 'Text'?); "
                              "its columns are: Text, b")
    with pytest.raises(OptionError, match=r"^review_col is needed: the input has no text column"):
        text_column(["a", "b"], None, "review_col")


def test_text_pairs():
    df = pd.DataFrame({"premise": ["p1", "p2"], "hypothesis": ["h1", "h2"], "label": ["yes", "no"]})
    ds = load_dataset(df, text_column="premise", pair_column="hypothesis")
    assert ds.text_pairs == ["h1", "h2"]
    assert ds.subset([1]).text_pairs == ["h2"]


def test_invalid_rows_raise_or_drop_with_warning():
    df = pd.DataFrame({"text": ["ok", "", "fine", None, "  ", "good"], "label": ["a", "b", None, "a", "b", "a"]})
    with pytest.raises(BertkitError) as err:
        load_dataset(df)
    msg = str(err.value)
    assert "4 invalid row(s)" in msg and "rows 1, 2, 3, 4" in msg and "--drop-invalid" in msg
    with pytest.warns(UserWarning, match="dropped 4 invalid row"):
        ds = load_dataset(df, drop_invalid=True)
    assert ds.texts == ["ok", "good"] and ds.row_ids == [0, 5]


def test_multi_label_from_strings_and_lists(tmp_path):
    df = pd.DataFrame({"text": ["a", "b", "c"], "labels": ["sports, news", "", "news"]})
    ds = load_dataset(df, multi_label=True)
    assert ds.multi_label and ds.label_names == ["news", "sports"]
    assert ds.labels == [[1, 1], [0, 0], [1, 0]]
    assert ds.label_counts() == {"news": 2, "sports": 1}
    path = tmp_path / "ml.jsonl"
    path.write_text('{"text": "a", "labels": ["x", "y"]}\n{"text": "b", "labels": []}\n')
    ds2 = load_dataset(path, multi_label=True, label_names=["y", "x", "z"])
    assert ds2.labels == [[1, 1, 0], [0, 0, 0]]
    with pytest.raises(OptionError, match="multi_label is not set, but 'labels' in .* holds lists"):
        load_dataset(path)
    parquet = tmp_path / "ml.parquet"
    pd.DataFrame({"text": ["a", "b"], "labels": [[0, 2], [1]]}).to_parquet(parquet)
    assert load_dataset(parquet, multi_label=True).labels == [[1, 0, 1], [0, 1, 0]]


def test_hf_like_object_uses_declared_class_names():
    class ClassLabel:
        names = ["neg", "pos"]

    class FakeHF:
        features = {"text": object(), "label": ClassLabel()}

        def to_pandas(self):
            return pd.DataFrame({"text": ["bad", "good"], "label": [0, 1]})

    ds = load_dataset(FakeHF())
    assert ds.label_names == ["neg", "pos"] and ds.labels == [0, 1]


def test_fingerprint_and_subset():
    ds = load_dataset(_frame())
    assert ds.fingerprint() == load_dataset(_frame()).fingerprint()
    other = load_dataset(_frame().assign(label=list(reversed(LABELS))))
    assert ds.fingerprint() != other.fingerprint()
    sub = ds.subset([3, 1])
    assert sub.texts == [TRICKY[3], TRICKY[1]] and sub.row_ids == [3, 1] and sub.label_names == ds.label_names


# -------------------------------------------------------------------------------------------- builtins


def test_builtins_sizes_and_labels(builtins):
    rt, sms, trec = builtins["rotten_tomatoes"], builtins["sms_spam"], builtins["trec"]
    assert len(rt) == 12808 and rt.label_counts() == {"rotten": 5405, "fresh": 7403}
    assert len(sms) == 4837 and sms.label_counts() == {"ham": 4199, "spam": 638}
    # 15,452 lines, 5,382 distinct; one question is listed under two fine NUM labels -> 5,381 rows.
    assert len(trec) == 5381 and trec.label_names == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
    assert sum(trec.label_counts().values()) == 5381
    # Row ids point into the original file: plot rows come first in the Rotten Tomatoes CSV.
    assert rt.row_ids[0] == 1097 and all(t.strip() for t in rt.texts)


def test_list_datasets():
    info = {d["name"]: d for d in list_datasets()}
    assert set(info) == {"rotten_tomatoes", "sms_spam", "trec"}
    assert info["sms_spam"]["rows"] == 4837 and info["sms_spam"]["label_names"] == ["ham", "spam"]
    assert info["trec"]["path"].endswith("question_labels.txt")


# ------------------------------------------------------------------------------------------- splits


def test_stratified_split_deterministic_and_proportional(builtins):
    ds = builtins["trec"]
    train, test = stratified_split(ds, test_size=0.2, seed=7)
    again_train, again_test = stratified_split(ds, test_size=0.2, seed=7)
    assert test.row_ids == again_test.row_ids and train.row_ids == again_train.row_ids
    assert stratified_split(ds, test_size=0.2, seed=8)[1].row_ids != test.row_ids
    assert len(train) + len(test) == len(ds) and abs(len(test) - 0.2 * len(ds)) <= len(ds.label_names)
    assert sorted(train.row_ids + test.row_ids) == sorted(ds.row_ids)
    for name, total in ds.label_counts().items():
        assert abs(test.label_counts()[name] - 0.2 * total) <= 1


def test_split_keeps_small_classes_on_both_sides():
    labels = ["big"] * 50 + ["two"] * 2 + ["one"]
    ds = load_dataset(pd.DataFrame({"text": [f"t{i}" for i in range(53)], "label": labels}))
    train, test = stratified_split(ds, test_size=0.1, seed=0)
    assert test.label_counts()["two"] == 1 and train.label_counts()["two"] == 1
    assert train.label_counts()["one"] == 1 and test.label_counts()["one"] == 0


def test_train_val_test_split(builtins):
    train, val, test = train_val_test_split(builtins["sms_spam"], val_size=0.1, test_size=0.2, seed=0)
    n = len(builtins["sms_spam"])
    assert abs(len(test) - 0.2 * n) <= 2 and abs(len(val) - 0.1 * n) <= 2
    assert len(set(train.row_ids) | set(val.row_ids) | set(test.row_ids)) == n
    assert all(s.label_counts()["spam"] > 0 for s in (train, val, test))
    with pytest.raises(BertkitError, match="test_size"):
        stratified_split(builtins["sms_spam"], test_size=1.5)


def test_multi_label_split_stratifies_on_first_label():
    rows = [[1, 0], [0, 1], [1, 1], [0, 0]] * 10
    ds = TextDataset(texts=[f"t{i}" for i in range(40)], labels=rows, label_names=["a", "b"])
    train, test = stratified_split(ds, test_size=0.25, seed=1)
    assert len(test) == 10 and test.multi_label


# ------------------------------------------------------------------------------------------- checks


def _shuffled(n_per_class: int, classes: list[str], seed: int = 0) -> TextDataset:
    rng = random.Random(seed)
    labels = [c for c in classes for _ in range(n_per_class)]
    rng.shuffle(labels)
    return load_dataset(pd.DataFrame({"text": [f"text number {i}" for i in range(len(labels))], "label": labels}),
                        label_names=classes)


def test_looks_sorted_by_label():
    assert looks_sorted_by_label(["a"] * 50 + ["b"] * 50)
    assert looks_sorted_by_label([0] * 30 + [1] * 30 + [2] * 30)
    rng = random.Random(0)
    for seed in range(20):  # shuffles, including imbalanced ones, never look sorted
        labels = ["a"] * 95 + ["b"] * 5 if seed % 2 else ["a"] * 50 + ["b"] * 50
        random.Random(seed).shuffle(labels)
        assert not looks_sorted_by_label(labels)
    assert not looks_sorted_by_label(["a"] * 5 + ["b"] * 5)  # too short to judge
    assert not looks_sorted_by_label(["a"] * 19 + ["b"])  # sorted by accident is unavoidable here
    assert not looks_sorted_by_label([rng.choice("ab") for _ in range(1000)])


def test_check_splits_clean_on_shuffled_split():
    ds = _shuffled(40, ["neg", "pos", "neu"])
    train, val, test = train_val_test_split(ds, 0.15, 0.15, seed=0)
    assert check_splits({"train": train, "validation": val, "test": test}) == []


def test_check_splits_single_class():
    ds = _shuffled(30, ["neg", "pos"])
    one = ds.subset([i for i, y in enumerate(ds.labels) if y == 0])
    warns = check_splits({"train": ds, "test": one})
    assert any("split 'test' has a single class (neg)" in w for w in warns)


def test_check_splits_missing_class():
    ds = _shuffled(30, ["neg", "pos", "neu"])
    no_neu = ds.subset([i for i, y in enumerate(ds.labels) if y != 2])
    warns = check_splits({"train": ds, "validation": no_neu})
    assert any("neu in 'train' but missing from 'validation'" in w for w in warns)
    assert not any("single class" in w for w in warns)


def test_check_splits_sorted():
    ds = _shuffled(30, ["neg", "pos"])
    order = sorted(range(len(ds)), key=lambda i: ds.labels[i])
    warns = check_splits({"train": ds.subset(order), "test": ds.subset(range(10))})
    assert any("split 'train' looks sorted by label" in w for w in warns)


def test_check_splits_duplicates_across_splits():
    train = _shuffled(30, ["neg", "pos"])
    test = load_dataset(pd.DataFrame({"text": ["  TEXT number 3 ", "text   number 4", "brand new"],
                                      "label": ["neg", "pos", "neg"]}), label_names=["neg", "pos"])
    warns = check_splits({"train": train, "test": test})
    assert any(w.startswith("2 of 3 text(s) in 'test' also appear in 'train'") for w in warns)


def test_check_splits_builtin_trec_is_clean(builtins):
    train, val, test = train_val_test_split(builtins["trec"], 0.1, 0.1, seed=0)
    assert check_splits({"train": train, "validation": val, "test": test}) == []


def test_sms_spam_has_duplicates_that_cross_splits(builtins):
    # The corpus repeats messages; check_splits must say so rather than let test scores flatter the model.
    train, test = stratified_split(builtins["sms_spam"], 0.2, seed=0)
    assert any("also appear in 'train'" in w for w in check_splits({"train": train, "test": test}))


def test_int_label_array_numpy():
    ds = TextDataset(texts=["a", "b"], labels=[0, 1], label_names=["x", "y"])
    assert looks_sorted_by_label(np.repeat([0, 1], 30))
    assert ds.label_counts() == {"x": 1, "y": 1} and not ds.multi_label
