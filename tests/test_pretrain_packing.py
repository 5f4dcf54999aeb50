"""Masked-LM packing: every token once and in order, framing, short documents kept whole, one document per sequence,
word starts from the tokenizer, and the one-pass preparation (split by document, counts, baseline, errors)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bertkit.errors import BertkitError, OptionError
from bertkit.pretrain import DocumentTokens, check_max_length, pack_documents, prepare_data, tokenize_documents
from bertkit.tokenizer import Tokenizer

CLS, SEP = 101, 102


@pytest.fixture(scope="module")
def tokenizer(minilm_dir) -> Tokenizer:
    return Tokenizer.from_dir(minilm_dir)


def documents(lengths: list[int]) -> list[DocumentTokens]:
    """Documents whose tokens are all distinct (1000, 1001, ...), with a word start every third token."""
    counter = itertools.count(1000)
    docs = []
    for n in lengths:
        ids = np.array([next(counter) for _ in range(n)], dtype=np.int32)
        docs.append(DocumentTokens(ids, np.arange(n) % 3 == 0))
    return docs


def window_of_each_token(windows) -> dict[int, int]:
    return {int(t): w for w in range(len(windows)) for t in windows.window(w)[0] if t not in (CLS, SEP)}


@settings(max_examples=150, deadline=None, derandomize=True)
@given(lengths=st.lists(st.integers(1, 40), min_size=1, max_size=30), max_length=st.integers(3, 24), pack=st.booleans())
def test_every_token_once_in_order_framed_and_within_the_window(lengths, max_length, pack):
    docs = documents(lengths)
    windows = pack_documents(docs, max_length, CLS, SEP, pack=pack)
    body = windows.tokens[(windows.tokens != CLS) & (windows.tokens != SEP)]
    assert body.tolist() == np.concatenate([d.ids for d in docs]).tolist()  # each token exactly once, in order
    assert windows.documents == len(docs)
    assert windows.offsets[-1] == windows.num_tokens and all(2 < n <= max_length for n in windows.lengths)
    for w in range(len(windows)):
        ids, starts = windows.window(w)
        assert ids[0] == CLS and ids[-1] == SEP and CLS not in ids[1:]
        assert not np.any((ids[1:] == SEP) & (ids[:-1] == SEP))  # never [SEP][SEP]
        assert starts[1] and not starts[0] and not starts[-1]  # a window's first piece begins a word
    where = window_of_each_token(windows)
    body_room = max_length - 2
    for doc in docs:
        spans = {where[int(t)] for t in doc.ids}
        if len(doc) <= body_room:
            assert len(spans) == 1  # a document that fits a window is never cut
        else:
            assert len(spans) == -(-len(doc) // body_room)  # a long one takes as few windows as it can
    if not pack:  # one document per sequence: no window holds tokens of two documents
        owner = {int(t): k for k, d in enumerate(docs) for t in d.ids}
        for w in range(len(windows)):
            assert len({owner[int(t)] for t in windows.window(w)[0] if t not in (CLS, SEP)}) == 1


@settings(max_examples=100, deadline=None, derandomize=True)
@given(lengths=st.lists(st.integers(1, 12), min_size=2, max_size=30), max_length=st.integers(14, 30))
def test_packed_windows_are_full_a_short_document_moves_on_only_when_it_does_not_fit(lengths, max_length):
    docs = documents(lengths)
    windows = pack_documents(docs, max_length, CLS, SEP)
    where = window_of_each_token(windows)
    for doc in docs[1:]:
        w = where[int(doc.ids[0])]
        if w > 0 and doc.ids[0] == windows.window(w)[0][1]:  # it opens window w: it did not fit in w - 1
            assert windows.lengths[w - 1] + 1 + len(doc) > max_length


def test_word_starts_come_from_the_tokenizer(tokenizer):
    (doc,) = tokenize_documents(tokenizer, ["Tokenization isn't hard."])
    pieces = [tokenizer.id_to_token(int(i)) for i in doc.ids]
    assert pieces == ["token", "##ization", "isn", "'", "t", "hard", "."]
    assert doc.word_starts.tolist() == [True, False, True, True, True, True, True]
    assert [len(d) for d in tokenize_documents(tokenizer, ["a b", "\u200b", "c"], batch=2)] == [2, 0, 1]


def test_window_length_is_checked_against_the_model():
    assert check_max_length(512, 512) == 512
    with pytest.raises(OptionError, match="max_length is 513, longer than the 512 positions this model reads; use at most 512"):
        check_max_length(513, 512)
    with pytest.raises(OptionError, match="too short"):
        check_max_length(2, 512)
    with pytest.raises(OptionError, match="whole number"):
        check_max_length(12.5, 512)


def write_corpus(path, n=200):
    lines = []
    for i in range(n):
        lines.append(f"document number {i} talks about topic {i % 7} at some length." if i % 10 else "")
    path.write_text("\n".join(lines) + "\n\u200b\n", encoding="utf-8")  # the last one has no tokens at all
    return path


def test_prepare_splits_by_document_counts_everything_and_is_seeded(tmp_path, tokenizer):
    corpus = write_corpus(tmp_path / "c.txt")
    data = prepare_data(tokenizer, corpus, max_length=48, limit=512, eval_fraction=0.2, seed=3, progress=False)
    read = data.report["data"]
    assert (read["documents"], read["blank_skipped"], read["no_tokens_skipped"]) == (181, 20, 1)
    train, held = data.report["train"], data.report["eval"]
    assert train["documents"] + held["documents"] == 180 and 15 < held["documents"] < 60
    # The baseline counted the training documents' pieces, nothing else.
    counts = np.bincount(data.train.tokens, minlength=tokenizer.vocab_size)
    counts[[CLS, SEP]] = 0
    assert np.array_equal(counts, data.baseline.counts) and data.baseline.total == train["tokens"] - 2 * train["windows"] - (
        train["documents"] - train["windows"])  # minus [CLS]/[SEP] framing and the [SEP] between documents
    lines = data.describe()
    assert lines[0] == "read: 181 documents (9,802 characters) from 1 file; 20 blank rows skipped; 1 without tokens skipped"
    assert lines[1].startswith(f"training: {train['documents']} documents in {train['windows']} windows")
    assert lines[2].startswith("held out: ") and lines[2].endswith("at most 48 a window)")
    again = prepare_data(tokenizer, corpus, max_length=48, limit=512, eval_fraction=0.2, seed=3, progress=False)
    assert np.array_equal(again.eval.tokens, data.eval.tokens)
    other = prepare_data(tokenizer, corpus, max_length=48, limit=512, eval_fraction=0.2, seed=4, progress=False)
    assert not np.array_equal(other.eval.tokens, data.eval.tokens)


def test_prepare_with_eval_data_or_without_evaluation(tmp_path, tokenizer):
    corpus = write_corpus(tmp_path / "c.txt")
    (tmp_path / "e.txt").write_text("held out text.\nmore of it.\n")
    data = prepare_data(tokenizer, corpus, max_length=48, limit=512, eval_data=tmp_path / "e.txt", progress=False)
    assert data.report["train"]["documents"] == 180 and data.report["eval"]["documents"] == 2
    none = prepare_data(tokenizer, corpus, max_length=48, limit=512, eval_fraction=0, progress=False)
    assert none.eval is None and none.report["eval"] is None


def test_prepare_refuses_what_cannot_work(tmp_path, tokenizer):
    corpus = write_corpus(tmp_path / "c.txt", n=3)
    with pytest.raises(OptionError, match="eval_fraction 0.01 of 2 documents held out none"):
        prepare_data(tokenizer, corpus, max_length=48, limit=512, eval_fraction=0.01, progress=False)
    with pytest.raises(OptionError, match="eval_fraction must be a fraction"):
        prepare_data(tokenizer, corpus, max_length=48, limit=512, eval_fraction=1.0, progress=False)
    with pytest.raises(OptionError, match="longer than the 128 positions"):
        prepare_data(tokenizer, corpus, max_length=256, limit=128, progress=False)
    (tmp_path / "z.txt").write_text("\u200b\n\u200b\n")
    with pytest.raises(BertkitError, match="holds no document with tokens to train on .*2 without tokens"):
        prepare_data(tokenizer, tmp_path / "z.txt", max_length=48, limit=512, progress=False)
