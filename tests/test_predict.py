"""Classification inference against transformers' text-classification pipeline; every row kept, bad rows flagged."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

import bertkit
from bertkit.errors import BertkitError
from bertkit.tasks.predict import predict_table, write_predictions
from helpers import EPS32, TINY_TERMS, fp32_tol, write_tiny

TEXTS = [
    "A wonderful, moving film.",
    "x",
    "Terrible. I walked out after twenty minutes and never looked back. " * 8,
    "Zoë's café in Ångström Straße 🍮",
    "ok",
]


def reference(folder, inputs):
    from transformers import pipeline

    return pipeline("text-classification", model=str(folder), top_k=None, device="cpu")(inputs)


def score_rtol(folder, texts, pairs=None) -> float:
    """Relative tolerance of a softmax or sigmoid score from float32 round-off alone.

    |d log p| <= 2 max |d logit| for a softmax (<= |d logit| for a sigmoid); each logit is within
    fp32_tol(max |logit|, 512, 5) (2 layers, the embeddings, pooler and classifier); the score's own arithmetic
    (exp, a sum of 3, a division) adds <= 8 ulps. A logit off by 1e-2 of its size (a wrong weight) is far outside.
    """
    from transformers import AutoTokenizer, BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        logits = model(**tok(texts, pairs, padding=True, truncation=True, return_tensors="pt")).logits
    return 2 * fp32_tol(float(logits.abs().max()), TINY_TERMS, depth=5) + 8 * EPS32


def assert_same(ours: dict, theirs: list[dict], rtol: float) -> None:
    assert ours["label"] == theirs[0]["label"]  # the pipeline ranks best first
    assert set(ours["scores"]) == {t["label"] for t in theirs}
    for t in theirs:
        assert abs(ours["scores"][t["label"]] - t["score"]) <= rtol * t["score"]


def test_labels_and_scores_equal_the_transformers_pipeline(tiny_cls, tiny_cls_dir):
    rows = tiny_cls.predict(TEXTS)
    assert len(rows) == len(TEXTS)
    rtol = score_rtol(tiny_cls_dir, TEXTS)
    for ours, theirs in zip(rows, reference(tiny_cls_dir, TEXTS)):
        assert_same(ours, theirs, rtol)
        assert ours["truncated"] == 0 and ours["error"] is None
        # Three float32 probabilities, each within 5 roundings of 2^-24 (exp, a 3-term sum, a division), then summed.
        assert abs(sum(ours["scores"].values()) - 1) <= 4 * EPS32
    assert list(rows[0]["scores"]) == ["negative", "neutral", "positive"]


def test_text_pairs_equal_the_pipeline(tiny_cls, tiny_cls_dir):
    a, b = ["Is it raining?", "Who wrote it?"], ["Yes, heavily.", "Nobody knows, really."]
    rows = tiny_cls.predict(a, pairs=b)
    rtol = score_rtol(tiny_cls_dir, a, b)
    for ours, theirs in zip(rows, reference(tiny_cls_dir, [{"text": x, "text_pair": y} for x, y in zip(a, b)])):
        assert_same(ours, theirs, rtol)


def test_order_is_kept_whatever_the_batching(tiny_cls):
    texts = TEXTS * 3
    assert [r["label"] for r in tiny_cls.predict(texts, batch_tokens=24)] == [r["label"] for r in tiny_cls.predict(texts)]


def test_empty_and_invalid_rows_are_flagged_never_dropped(tiny_cls, tiny_cls_dir):
    rows = tiny_cls.predict(["good", "", "   ", None, float("nan"), 3, "bad"])
    assert len(rows) == 7
    assert [r["error"] for r in rows] == [None, "empty text", "empty text", "missing text", "missing text",
                                          "text is an int, not a string", None]
    assert all(r["label"] is None and r["scores"] is None for r in rows[1:6])
    alone = tiny_cls.predict(["good"])[0]["scores"]  # another batch: equal up to float32 round-off
    rtol = score_rtol(tiny_cls_dir, ["good", "bad"])
    assert rows[0]["scores"].keys() == alone.keys()
    assert all(abs(rows[0]["scores"][k] - v) <= rtol * v for k, v in alone.items())
    pairs = tiny_cls.predict(["a", "b"], pairs=["x", ""])
    assert pairs[0]["error"] is None and pairs[1]["error"] == "empty pair"


def test_truncated_texts_are_counted_and_flagged(tiny_cls):
    long = "word " * 600
    with pytest.warns(UserWarning, match="truncated"):
        rows = tiny_cls.predict(["short", long])
    full = len(tiny_cls.tokenizer.encode(long))
    assert rows[0]["truncated"] == 0 and rows[1]["truncated"] == full - 512 and rows[1]["label"] is not None


def test_multi_label_uses_sigmoid_and_a_threshold(tmp_path, minilm_dir):
    folder = write_tiny("cls", tmp_path / "multi", minilm_dir, seed=4, problem_type="multi_label_classification",
                        id2label={0: "sports", 1: "politics", 2: "tech"}, label2id={"sports": 0, "politics": 1, "tech": 2})
    model = bertkit.load(folder, device="cpu")
    texts = ["The match ended in a draw.", "New chips and new laws."]
    rows = model.predict(texts)
    rtol = score_rtol(folder, texts)
    for ours, theirs in zip(rows, reference(folder, texts)):
        for t in theirs:
            assert abs(ours["scores"][t["label"]] - t["score"]) <= rtol * t["score"]
        assert abs(sum(ours["scores"].values()) - 1) > 1e-3  # independent sigmoids, not a softmax
        assert ours["labels"] == [n for n, p in sorted(ours["scores"].items(), key=lambda kv: -kv[1]) if p >= 0.5]
        assert ours["label"] == (ours["labels"][0] if ours["labels"] else None)
    everything = model.predict(texts, threshold=0.0)
    assert all(len(r["labels"]) == 3 for r in everything)
    assert model.predict(texts, threshold=1.0)[0]["labels"] == []  # sigmoids of these small logits stay below 1
    with pytest.raises(BertkitError, match="threshold must be at most 1"):
        model.predict(texts, threshold=1.01)


def test_a_model_without_classifier_says_how_to_get_one(minilm_dir):
    with pytest.raises(BertkitError, match="no classifier head; train one with `bertkit train`") as e:
        bertkit.load(minilm_dir, device="cpu").predict(["hello"])
    assert "\n" not in str(e.value)


def test_table_in_table_out_keeps_every_row_and_the_gold_label(tiny_cls, tmp_path):
    frame = pd.DataFrame({"id": [7, 8, 9], "review": ["great", "", "awful"], "label": ["positive", "neutral", "negative"]})
    table, rows = predict_table(tiny_cls, frame)
    assert table["id"].tolist() == [7, 8, 9] and table["label"].tolist() == ["positive", "neutral", "negative"]
    assert pd.isna(table["predicted_label"][1]) and table["error"][1] == "empty text" and pd.isna(table["error"][0])
    assert {f"score_{n}" for n in tiny_cls.labels} <= set(table.columns)
    for suffix in ("csv", "jsonl", "json", "parquet"):
        path = write_predictions(table, tmp_path / f"out.{suffix}")
        back = {"csv": pd.read_csv, "parquet": pd.read_parquet,
                "jsonl": lambda p: pd.read_json(p, lines=True), "json": pd.read_json}[suffix](path)
        assert len(back) == 3 and back["id"].tolist() == [7, 8, 9]
        assert back["predicted_label"].tolist()[0] == rows[0]["label"]
    record = json.loads((tmp_path / "out.jsonl").read_text().splitlines()[1])
    assert record["predicted_label"] is None and record["score_neutral"] is None and record["error"] == "empty text"
    with pytest.raises(BertkitError, match="the input has no text column"):
        predict_table(tiny_cls, pd.DataFrame({"a": ["x"], "b": ["y"]}))
    with pytest.raises(BertkitError, match="no column 'body'"):
        predict_table(tiny_cls, frame, "body")
    with pytest.raises(BertkitError, match="use a file ending in"):
        write_predictions(table, tmp_path / "out.xlsx")


def test_the_docstring_names_every_field_a_row_has():
    """Predict's docstring opens with the row's keys: every key of PredictRow a row always has (`text` is the
    command line's and the server's, `labels` multi-label models' only)."""
    import re

    from bertkit.tasks.predict import Predict, PredictRow

    named = set(re.findall(r'"(\w+)"', Predict.__doc__.splitlines()[0]))
    assert named == set(PredictRow.__annotations__) - {"text", "labels"}
