"""Sentence embeddings: equal to sentence-transformers on MiniLM, pooled on packed tokens, every pooling checked."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

import bertkit
from bertkit.batching import pack
from bertkit.errors import BertkitError
from bertkit.tasks.embed import pool, write_embeddings
from helpers import MINILM_TERMS, TINY_TERMS, assert_fp32_close

TEXTS = [
    "Hello, BERT!",
    "",
    "x",
    "The river bank was muddy after the storm.",
    "Zoë's café in Ångström Straße served crème brûlée 🍮 — 日本語 too.",
    "He sat down by the bank to enjoy the view of the river. " * 25,  # ~350 tokens: cut at 256
    "   leading and trailing spaces   ",
    "word " * 300,  # exactly the long-text edge: 302 tokens
    "A question? An answer!",
    "Tokenization handles embeddings of unbelievable words.",
]


@pytest.fixture(scope="module")
def reference(minilm_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_dir), device="cpu")


def vector_tolerance(model, texts) -> dict:
    """assert_fp32_close arguments for unit sentence vectors of `texts`.

    A vector is the mean of hidden states (largest value H) divided by its norm |m|: hidden-state round-off (6 layers
    and the embeddings: depth 7) passes through the mean unchanged (depth 8) and is divided by |m|, and normalising
    can double a component's error (depth 9), so the scale is H / min |m|.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # long texts are cut (at 512 here, 256 when embedded: the same scale)
        hidden = max(float(s.abs().max()) for s in model.hidden_states(texts))
        norms = np.linalg.norm(model.embed(texts, normalize=False), axis=1)
    return dict(terms=MINILM_TERMS, depth=9, scale=hidden / float(norms.min()))


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return (a * b).sum(axis=1)


def test_vectors_equal_sentence_transformers_encode(minilm, reference):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the two long texts are cut at 256 tokens, as sentence-transformers does
        ours = minilm.embed(TEXTS)
    want = reference.encode(TEXTS, convert_to_numpy=True)
    assert ours.shape == want.shape == (len(TEXTS), 384) and ours.dtype == np.float32
    # The README's claim; the element-wise check below is the tight one (cos 0.99999 allows |diff| 4e-3).
    assert cosines(ours, want).min() >= 0.99999
    assert_fp32_close(ours, want, **vector_tolerance(minilm, TEXTS))  # MiniLM normalises, so the vectors agree too
    # A unit vector's norm: a float32 sum of 384 squares, sqrt(384) ulps of 1.
    assert_fp32_close(np.linalg.norm(ours, axis=1), np.ones(len(TEXTS)), terms=384)


def test_sentence_config_of_the_checkpoint_is_the_default(minilm):
    assert minilm.sentence_config["max_seq_length"] == 256
    with pytest.warns(UserWarning, match="longer than 256 tokens"):
        minilm.embed(["word " * 300])
    raw = minilm.embed(TEXTS[:3], normalize=False)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    assert_fp32_close(raw / np.linalg.norm(raw, axis=1, keepdims=True), minilm.embed(TEXTS[:3]),
                      **vector_tolerance(minilm, TEXTS[:3]))


@pytest.mark.parametrize("how", ["mean", "cls", "max", "mean_sqrt_len"])
def test_each_pooling_equals_the_same_reduction_of_hidden_states(minilm, how):
    texts = [t for t in TEXTS if len(t) < 200]
    got = minilm.embed(texts, pooling=how, normalize=False)
    states = minilm.hidden_states(texts)
    want = np.stack([{"mean": s.mean(0), "cls": s[0], "max": s.max(0).values,
                      "mean_sqrt_len": s.sum(0) / len(s) ** 0.5}[how].numpy() for s in states])
    # Hidden-state round-off (depth 7, at the largest hidden value) plus one pooling reduction.
    hidden = max(float(s.abs().max()) for s in states)
    assert_fp32_close(got, want, terms=MINILM_TERMS, depth=8, scale=hidden, what=how)


def test_pool_reduces_packed_segments_without_padding():
    lengths = [3, 1, 5]
    states = torch.randn(sum(lengths), 4)
    batch = pack([[1] * n for n in lengths])
    parts = states.split(lengths)
    # Two float32 means of at most 5 values, summed in different orders.
    assert_fp32_close(pool(states, batch, "mean"), torch.stack([p.mean(0) for p in parts]), terms=5, depth=2,
                      scale=float(states.abs().max()))
    assert torch.equal(pool(states, batch, "max"), torch.stack([p.max(0).values for p in parts]))
    assert torch.equal(pool(states, batch, "cls"), torch.stack([p[0] for p in parts]))


def test_callers_order_and_batch_budget_do_not_change_vectors(minilm):
    texts = TEXTS[:5] + ["short", "a much longer sentence than the others, with many words in it"]
    default = minilm.embed(texts)
    tiny = minilm.embed(texts, batch_tokens=32)
    alone = np.concatenate([minilm.embed([t]) for t in texts])
    tolerance = vector_tolerance(minilm, texts)  # other batches only change the order of float32 sums
    assert_fp32_close(tiny, default, **tolerance, what="batch_tokens=32")
    assert_fp32_close(alone, default, **tolerance, what="one text at a time")


def test_a_model_without_sentence_config_uses_plain_mean_pooling(tiny_base_dir):
    model = bertkit.load(tiny_base_dir, device="cpu")
    assert model.sentence_config == {}
    vectors = model.embed(["one text", "two"])
    states = model.hidden_states(["one text", "two"])
    # Two layers and the embeddings (depth 3) plus the mean, at the largest hidden value.
    assert_fp32_close(vectors, np.stack([s.mean(0).numpy() for s in states]), terms=TINY_TERMS, depth=4,
                      scale=max(float(s.abs().max()) for s in states))


def test_edge_inputs_and_errors(minilm):
    assert minilm.embed([]).shape == (0, 384)
    assert minilm.embed("just one").shape == (1, 384)
    with pytest.raises(BertkitError, match="pooling must be one of mean, cls, max, mean_sqrt_len, not 'avg'"):
        minilm.embed(["x"], pooling="avg")
    with pytest.raises(BertkitError, match="not a string"):
        minilm.embed(["ok", None])


def test_write_npy_parquet_and_json(minilm, tmp_path):
    import pandas as pd

    texts = ["first", "second one"]
    vectors = minilm.embed(texts)
    assert np.array_equal(np.load(write_embeddings(tmp_path / "v.npy", vectors, texts)), vectors)
    frame = pd.read_parquet(write_embeddings(tmp_path / "v.parquet", vectors, texts))
    assert frame["text"].tolist() == texts
    assert np.array_equal(np.stack(frame["embedding"].to_numpy()).astype(np.float32), vectors)
    data = json.loads(write_embeddings(tmp_path / "v.json", vectors, texts).read_text())
    # JSON holds each float32 as the exact float64 it widens to, so the round trip is exact.
    assert data["dim"] == 384 and data["texts"] == texts
    assert np.array_equal(np.asarray(data["embeddings"], dtype=np.float32), vectors)
    with pytest.raises(BertkitError, match=".npy"):
        write_embeddings(tmp_path / "v.txt", vectors, texts)
