"""Tests for bertkit.train.plots: each plot writes a valid, non-empty PNG and returns its path."""
from __future__ import annotations

import math

import numpy as np
import pytest

from bertkit.train.plots import plot_confusion_matrix, plot_similarity_matrix, plot_training_curves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path) -> None:
    data = path.read_bytes()
    assert len(data) > 1000 and data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 100 and height > 100


def _records():
    out = []
    for step in range(1, 201):
        out.append({"step": step, "epoch": step // 100, "split": "train", "loss": 2 * math.exp(-step / 80) + 0.1,
                    "lr": 5e-5 * min(1.0, step / 20)})
    for step in (100, 200):
        out.append({"step": step, "epoch": step // 100, "split": "eval", "loss": 0.6 - step / 1000,
                    "accuracy": 0.7 + step / 1000, "macro_f1": 0.65 + step / 1000})
    return out


def test_training_curves(tmp_path):
    path = plot_training_curves(_records(), tmp_path / "nested" / "curves.png")
    assert path == tmp_path / "nested" / "curves.png"
    _assert_png(path)


def test_training_curves_sparse_records(tmp_path):
    # Train loss only (no eval yet, no lr), and a NaN loss that must be skipped, not crash the plot.
    records = [{"step": 1, "split": "train", "loss": 1.0}, {"step": 2, "split": "train", "loss": float("nan")}]
    _assert_png(plot_training_curves(records, tmp_path / "sparse.png"))
    _assert_png(plot_training_curves([], tmp_path / "empty.png"))


def test_confusion_matrix(tmp_path):
    cm = [[50, 3, 1], [4, 40, 6], [0, 0, 0]]  # a class with no examples must not divide by zero
    _assert_png(plot_confusion_matrix(cm, ["negative", "neutral", "positive"], tmp_path / "cm.png", title="Test"))
    with pytest.raises(ValueError):
        plot_confusion_matrix(cm, ["a", "b"], tmp_path / "bad.png")


def test_similarity_matrix(tmp_path):
    sentences = ["A man is eating food at a table in a very long sentence that needs truncating.",
                 "A man is eating a piece of bread.", "The girl is carrying a baby."]
    rng = np.random.default_rng(0)
    sim = rng.uniform(-1, 1, (3, 3))
    _assert_png(plot_similarity_matrix(sim, sentences, tmp_path / "sim.png"))
    rect = plot_similarity_matrix(rng.uniform(0, 1, (2, 3)), (["q1", "q2"], sentences), tmp_path / "rect.png")
    _assert_png(rect)
    with pytest.raises(ValueError):
        plot_similarity_matrix(sim, ["only", "two"], tmp_path / "bad.png")


def test_label_truncation():
    from bertkit.train.plots import _truncate

    long = "word " * 20
    cut = _truncate(long)
    assert len(cut) <= 40 and cut.endswith("…")
    assert _truncate("short") == "short"
