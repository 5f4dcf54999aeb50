"""Long documents: windows are planned exactly, every task reads past the model's limit, short texts never change."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import bertkit
from bertkit.errors import OptionError
from bertkit.windows import chunk_ranges, head_tail_ranges

LONG = ("The river ran slow past the old mill. " * 30 + "I sat on the bank to watch the water. "
        + "Fish rose under the willows all afternoon. " * 30)
SHORT = "I sat on the bank to watch the water."
STRATEGIES = [{"long": "truncate"}, {"long": "truncate", "side": "left"}, {"long": "head+tail", "head": 3},
              {"long": "chunk", "stride": 5}, {"long": "chunk", "aggregate": "max"}]


# -- planning windows -------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None, derandomize=True)
@given(n=st.integers(1, 400), budget=st.integers(2, 64), data=st.data())
def test_chunks_cover_every_token_within_the_budget_with_the_overlap_asked(n, budget, data):
    stride = data.draw(st.integers(0, budget - 1))
    ranges = chunk_ranges(list(range(n)), budget, stride)  # every token its own word: no boundary to respect
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    assert all(0 < b - a <= budget for a, b in ranges)
    for (a1, b1), (a2, b2) in zip(ranges, ranges[1:]):
        assert a1 < a2 <= b1 and b1 < b2  # progress, no gap
        assert b1 - a2 == min(stride, b1 - a1 - 1)  # the overlap is the stride (less only for a window that short)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(words=st.lists(st.integers(1, 6), min_size=1, max_size=120), budget=st.integers(8, 40), data=st.data())
def test_chunks_cut_between_words_when_a_boundary_is_near(words, budget, data):
    word_ids = [w for w, pieces in enumerate(words) for _ in range(pieces)]
    stride = data.draw(st.integers(0, budget // 2))
    ranges = chunk_ranges(word_ids, budget, stride)
    n = len(word_ids)
    assert ranges[-1][1] == n and all(b - a <= budget for a, b in ranges)
    covered = set()
    for a, b in ranges:
        covered.update(range(a, b))
        if b < n:  # an end inside a word only when no boundary lies in the window's second half
            inside = word_ids[b] == word_ids[b - 1]
            assert not inside or all(word_ids[k] == word_ids[k - 1] for k in range(a + budget // 2 + 1, b))
    assert covered == set(range(n))
    for (a1, b1), (a2, _) in zip(ranges, ranges[1:]):
        assert b1 - a2 >= min(stride, b1 - a1 - 1)


def test_head_tail_keeps_the_start_and_the_end():
    assert head_tail_ranges(10, 20, 128) == [(0, 10)]  # fits: everything
    assert head_tail_ranges(1000, 510, 128) == [(0, 128), (618, 1000)]  # Sun et al.'s 128 + 382
    assert head_tail_ranges(1000, 510, 0) == [(490, 1000)]  # the last 510: truncation from the left
    with pytest.raises(OptionError, match="stride must be less than"):
        chunk_ranges(list(range(10)), 4, 4)


# -- every task: a text that fits is untouched by every strategy ---------------------------------------------
@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda s: "-".join(map(str, s.values())))
def test_a_text_that_fits_gives_exactly_the_same_answer_under_every_strategy(minilm, tiny_mlm, tiny_cls, strategy):
    texts = [SHORT, "A second, different one."]
    assert np.array_equal(minilm.embed(texts, **strategy), minilm.embed(texts))
    assert minilm.similarity([SHORT, "She paid at the bank."], "bank", **{k: v for k, v in strategy.items()
                                                                        if k != "aggregate"}).similarity == \
        minilm.similarity([SHORT, "She paid at the bank."], "bank").similarity
    assert [e.ids for e in minilm.tokenize(texts, **strategy)] == [e.ids for e in minilm.tokenize(texts)]
    assert tiny_cls.predict(texts, **strategy) == tiny_cls.predict(texts)
    masked = ["The [MASK] sat on the mat.", "a [MASK] b [MASK]"]
    plain = {k: v for k, v in strategy.items() if k != "aggregate"}
    assert tiny_mlm.fill_mask(masked, top_k=3, **plain) == tiny_mlm.fill_mask(masked, top_k=3)


# -- long texts --------------------------------------------------------------------------------------
def _windows(model, text, limit, **strategy):
    from bertkit.tasks import get
    from bertkit.tasks.base import documents

    options = get("embed").Options(**strategy)
    return documents(model, [text], None, limit, options)[0]


def test_a_long_embedding_is_the_token_weighted_mean_of_its_windows_embedded_one_by_one(minilm):
    vector = minilm.embed([LONG], long="chunk", stride=32)[0]
    document = _windows(minilm, LONG, 256, long="chunk", stride=32)  # MiniLM embeds 256 tokens
    assert len(document.windows) >= 3 and document.unseen == 0
    one_by_one = []
    for window in document.windows:  # each window run alone, as its own batch, unnormalised
        batch = bertkit.pack([window.ids], [window.type_ids])
        with torch.inference_mode():
            one_by_one.append(minilm.network(batch).float().mean(dim=0))
    weights = torch.tensor([len(w.ids) - 2 for w in document.windows], dtype=torch.float32)[:, None]
    want = torch.nn.functional.normalize((torch.stack(one_by_one) * weights).sum(0) / weights.sum(), dim=-1)
    # float32 over 384 dims and a few hundred tokens: sums in another order differ by ~1e-7 relative
    assert np.abs(vector - want.numpy()).max() < 1e-5
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-6)


def test_chunked_classification_aggregates_window_probabilities(tiny_cls):
    texts = [LONG, SHORT]
    rows = {how: tiny_cls.predict(texts, long="chunk", aggregate=how) for how in ("mean", "max", "first", "vote")}
    document = _windows(tiny_cls, LONG, 512, long="chunk")
    probs = []
    for window in document.windows:
        with torch.inference_mode():
            probs.append(tiny_cls.network.classify(bertkit.pack([window.ids], [window.type_ids]))[0].softmax(-1))
    probs = torch.stack(probs)
    weights = torch.tensor([len(w.ids) - 2 for w in document.windows], dtype=torch.float32)[:, None]
    mean = ((probs * weights).sum(0) / weights.sum()).tolist()
    assert list(rows["mean"][0]["scores"].values()) == pytest.approx(mean, abs=1e-6)
    assert list(rows["first"][0]["scores"].values()) == pytest.approx(probs[0].tolist(), abs=1e-6)
    top = probs.amax(0)
    assert list(rows["max"][0]["scores"].values()) == pytest.approx((top / top.sum()).tolist(), abs=1e-6)
    votes = torch.bincount(probs.argmax(1), minlength=3).float() / len(probs)
    assert list(rows["vote"][0]["scores"].values()) == pytest.approx(votes.tolist(), abs=1e-9)
    for how, answer in rows.items():
        assert answer[0]["windows"] == len(document.windows) and answer[0]["truncated"] == 0, how
        assert answer[1] == tiny_cls.predict([SHORT])[0] | {}, how  # the short text: one window, unchanged
    cut = tiny_cls.predict([LONG])[0]
    assert cut["windows"] == 1 and cut["truncated"] == len(document.full.ids) - 512


def test_each_mask_is_read_from_the_window_where_it_has_most_context(tiny_mlm):
    text = "Words fill the page. " * 150 + "The [MASK] sat on the mat." + " More words follow here." * 150
    document = _windows(tiny_mlm, text, 512, long="chunk", stride=128)
    got = tiny_mlm.fill_mask([text], top_k=5, long="chunk", stride=128)[0][0]
    mask = next(j for j, t in enumerate(document.full.ids[1:-1]) if t == tiny_mlm.tokenizer.mask_id)
    from bertkit.windows import best_window

    w = best_window(document, mask, mask)
    window = document.windows[w]
    context = min(mask - document.starts[w], document.starts[w] + len(window.ids) - 3 - mask)
    assert context >= 128 // 2  # the window chosen has the mask well inside it
    batch = bertkit.pack([window.ids], [window.type_ids])
    with torch.inference_mode():
        logits = tiny_mlm.network.mlm_head(tiny_mlm.network(batch)[1 + mask - document.starts[w]])
    want = logits.softmax(-1).topk(5)
    assert [c["id"] for c in got] == want.indices.tolist()
    assert [c["score"] for c in got] == pytest.approx(want.values.tolist(), abs=1e-6)
    with pytest.raises(bertkit.BertkitError, match="was cut off.*long='chunk'"):
        tiny_mlm.fill_mask([text])


def test_the_word_is_read_from_the_window_where_it_has_most_context(minilm):
    long = "The river was calm. " * 100 + "I sat on the bank and fished. " + "The water was cold. " * 100
    chunked = minilm.similarity([long, "She paid at the bank."], "bank", long="chunk")
    assert chunked.a.tokens == ["bank"] and chunked.a.occurrences and chunked.a.span == (long.index("bank"),
                                                                                          long.index("bank") + 4)


def test_bad_long_options_are_one_line_errors_naming_the_option(minilm, tiny_cls):
    with pytest.raises(OptionError, match="aggregate cannot be 'vote' for embed"):
        minilm.embed([LONG], long="chunk", aggregate="vote")
    with pytest.raises(OptionError, match="max_windows is 2, but a text needs"):
        tiny_cls.predict([LONG * 3], long="chunk", max_windows=2)
    with pytest.raises(OptionError, match="long must be one of truncate, head"):
        minilm.embed(["x"], long="middle")
    with pytest.raises(OptionError, match="aggregate cannot be 'mean' for similarity"):
        minilm.similarity(["a bank", "the bank"], "bank", aggregate="mean")
