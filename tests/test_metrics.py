"""Tests for bertkit.train.metrics, checked against scikit-learn on seeded random predictions."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from bertkit.train.metrics import classification_report, format_report, multilabel_report

# Metrics are float64 ratios of integer counts (macro averages over at most 25 classes): other formulas or orders of
# summation differ by a few roundings of 2^-53 each, under 1e-14 relative; one count off in 1000 is 1e-3.
EXACT = dict(rel=1e-12, abs=1e-15)


def _noisy(seed: int, n: int, k: int, keep: float = 0.6):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, k, n)
    y_pred = np.where(rng.random(n) < keep, y_true, rng.integers(0, k, n))
    return y_true, y_pred


@pytest.mark.parametrize("seed,n,k", [(0, 200, 3), (1, 57, 5), (2, 1000, 2), (3, 13, 7)])
def test_classification_report_matches_sklearn(seed, n, k):
    y_true, y_pred = _noisy(seed, n, k)
    names = [f"c{i}" for i in range(k)]
    r = classification_report(y_true, y_pred, names, loss=0.25)
    assert r["n"] == n and r["loss"] == 0.25
    assert r["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred), **EXACT)
    assert r["macro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro", zero_division=0), **EXACT)
    assert r["confusion_matrix"] == skm.confusion_matrix(y_true, y_pred, labels=range(k)).tolist()
    p, rc, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=range(k), zero_division=0)
    for i, name in enumerate(names):
        got = r["per_class"][name]
        assert got["precision"] == pytest.approx(p[i], **EXACT) and got["recall"] == pytest.approx(rc[i], **EXACT)
        assert got["f1"] == pytest.approx(f[i], **EXACT) and got["support"] == s[i]


def test_zero_division_and_absent_classes():
    # Class 2 never occurs and is never predicted; class 1 is never predicted.
    y_true = [0, 0, 1, 1]
    y_pred = [0, 0, 0, 0]
    r = classification_report(y_true, y_pred, ["a", "b", "c"])
    assert r["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    assert r["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert r["macro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro", zero_division=0), **EXACT)
    assert "loss" not in r
    empty = classification_report([], [], ["a", "b"])
    assert empty["accuracy"] == 0.0 and empty["macro_f1"] == 0.0 and empty["n"] == 0


def test_scores_argmax_and_bad_ids():
    logits = np.array([[2.0, 0.1], [0.0, 3.0], [1.0, 0.5]])
    r = classification_report([0, 1, 1], logits, ["a", "b"])
    assert r["accuracy"] == pytest.approx(2 / 3, **EXACT)
    with pytest.raises(ValueError, match="outside 0..1"):
        classification_report([0, 2], [0, 1], ["a", "b"])
    with pytest.raises(ValueError, match="entries"):
        classification_report([0, 1], [0], ["a", "b"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multilabel_report_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    y_true = (rng.random((120, 4)) < 0.3).astype(int)
    y_pred = np.where(rng.random((120, 4)) < 0.7, y_true, rng.random((120, 4)) < 0.3).astype(int)
    y_pred[:, 3] = 0  # a label never predicted exercises zero division
    names = ["w", "x", "y", "z"]
    r = multilabel_report(y_true, y_pred, names, loss=1.5)
    assert r["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred), **EXACT)
    assert r["macro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro", zero_division=0), **EXACT)
    assert r["micro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="micro", zero_division=0), **EXACT)
    p, rc, f, s = skm.precision_recall_fscore_support(y_true, y_pred, zero_division=0)
    for i, name in enumerate(names):
        got = r["per_class"][name]
        assert (got["precision"], got["recall"], got["f1"], got["support"]) == pytest.approx((p[i], rc[i], f[i], s[i]), **EXACT)
    assert r["loss"] == 1.5 and r["n"] == 120


def test_format_report():
    y_true, y_pred = _noisy(0, 300, 3)
    text = format_report(classification_report(y_true, y_pred, ["negative", "neutral", "positive"], loss=0.5))
    lines = text.splitlines()
    assert lines[0].startswith("n=300  accuracy=") and "macro_f1=" in lines[0] and "loss=0.5000" in lines[0]
    assert any(line.startswith("neutral") for line in lines)
    assert "confusion matrix (rows = true, columns = predicted):" in text
    ml = format_report(multilabel_report([[1, 0], [0, 1]], [[1, 0], [1, 1]], ["a", "b"]))
    assert "micro_f1=" in ml and "confusion" not in ml
    big = format_report(classification_report(*_noisy(1, 500, 25), [f"c{i}" for i in range(25)]))
    assert "omitted" in big
