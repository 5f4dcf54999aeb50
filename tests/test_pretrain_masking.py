"""Masked-LM masking: 15% of tokens, 80/10/10, whole words, specials untouched (within binomial bounds on a large
sample), and the same mask for a window whatever batch or process it lands in, a fresh one each epoch."""
from __future__ import annotations

import math

import numpy as np
import pytest

from bertkit.errors import OptionError
from bertkit.pretrain import (EVAL_STREAM, MASKING, DocumentTokens, Masker, TokenWindows, WindowPacker, masked_batch,
                              window_keys)

VOCAB, PAD, UNK, CLS, SEP, MASK = 30522, 0, 100, 101, 102, 103
SPECIALS = [PAD, UNK, CLS, SEP, MASK]
SIGMAS = 5  # a bound this wide fails by chance about once in 1.7 million checks (two-sided)


def masker(masking: str = "whole-word", mask_prob: float = 0.15) -> Masker:
    return Masker(VOCAB, MASK, SPECIALS, mask_prob, masking)


def synthetic_windows(n_tokens: int = 60_000, seed: int = 0) -> TokenWindows:
    """Documents of words of 1-4 pieces (ids 1000-29999; 2% of words a lone [UNK]), packed into windows of 128."""
    rng = np.random.default_rng(seed)
    sizes = rng.choice([1, 2, 3, 4], p=[0.6, 0.25, 0.1, 0.05], size=n_tokens)
    ids = rng.integers(1000, 30000, int(sizes.sum()))
    starts = np.zeros(len(ids), bool)
    starts[np.cumsum(sizes) - sizes] = True
    unknown = np.flatnonzero(starts)[rng.random(len(sizes)) < 0.02]
    ids[unknown] = UNK
    ids = ids[:n_tokens]
    starts = starts[:n_tokens]
    packer = WindowPacker(128, CLS, SEP)
    cuts = np.flatnonzero(starts)[:: 25]  # documents of 25 words
    for a, b in zip(cuts, list(cuts[1:]) + [len(ids)]):
        packer.add(DocumentTokens(ids[a:b].astype(np.int32), starts[a:b]))
    return packer.finish()


def within(observed: float, expected: float, n: int) -> bool:
    """|observed - expected| within SIGMAS binomial standard deviations of a fraction of n draws."""
    return abs(observed - expected) <= SIGMAS * math.sqrt(expected * (1 - expected) / n)


@pytest.fixture(scope="module")
def windows() -> TokenWindows:
    return synthetic_windows()


@pytest.mark.parametrize("masking", MASKING)
def test_masking_statistics_hold_within_binomial_bounds(windows, masking):
    m = masker(masking)
    batch = masked_batch(windows, range(len(windows)), m, seed=11, epoch=0)
    original = torch_to_numpy(windows.tokens)
    inputs = batch.batch.input_ids.numpy()
    positions, targets = batch.positions.numpy(), batch.targets.numpy()
    candidates = int((~np.isin(original, SPECIALS)).sum())
    assert candidates > 50_000

    # Specials are never chosen, and the targets are the original ids.
    assert not np.isin(original[positions], SPECIALS).any()
    assert np.array_equal(targets, original[positions])
    # 15% of the candidates.
    assert within(len(positions) / candidates, 0.15, candidates), len(positions) / candidates
    # 80% [MASK], 10% a random token, 10% unchanged, among the chosen.
    chosen = inputs[positions]
    n = len(positions)
    as_mask = chosen == MASK
    unchanged = chosen == targets
    randomised = ~as_mask & ~unchanged
    assert within(as_mask.mean(), 0.8, n) and within(randomised.mean(), 0.1, n) and within(unchanged.mean(), 0.1, n)
    # A random token is never a special one, and is spread over the vocabulary.
    assert not np.isin(chosen[randomised], SPECIALS).any()
    assert len(np.unique(chosen[randomised])) > 0.9 * randomised.sum()
    # Nothing outside the chosen positions changed.
    untouched = np.ones(len(inputs), bool)
    untouched[positions] = False
    assert np.array_equal(inputs[untouched], original[untouched])

    # Whole words: each word is chosen whole or not at all (and under `token`, some words are cut).
    word = np.cumsum(windows.word_starts) - 1
    picked = np.zeros(len(inputs), bool)
    picked[positions] = True
    words = ~np.isin(original, SPECIALS)
    per_word_picked = np.bincount(word[words], weights=picked[words])
    per_word_size = np.bincount(word[words])
    partly = (per_word_picked > 0) & (per_word_picked < per_word_size)
    if masking == "whole-word":
        assert not partly.any()
    else:
        assert partly.sum() > 100


def torch_to_numpy(a):
    return np.asarray(a, dtype=np.int64)


def test_a_window_gets_the_same_mask_in_any_batch_and_a_fresh_one_each_epoch(windows):
    m = masker()
    alone = masked_batch(windows, [5], m, seed=1, epoch=2)
    among = masked_batch(windows, [9, 5, 0], m, seed=1, epoch=2)
    lengths = among.batch.lengths.tolist()
    start = lengths[0]
    mine = (among.positions >= start) & (among.positions < start + lengths[1])
    assert np.array_equal(among.batch.input_ids[start:start + lengths[1]], alone.batch.input_ids)
    assert np.array_equal(among.positions[mine] - start, alone.positions)
    assert np.array_equal(among.targets[mine], alone.targets)
    # Dealt over two processes (a window per rank, as DDP shards a global batch), the masks are the same too.
    for rank_share in ([9, 0], [5]):
        part = masked_batch(windows, rank_share, m, seed=1, epoch=2)
        assert part.batch.index == rank_share
    again = masked_batch(windows, [5], m, seed=1, epoch=2)
    assert np.array_equal(again.batch.input_ids, alone.batch.input_ids)
    next_epoch = masked_batch(windows, [5], m, seed=1, epoch=3)
    other_seed = masked_batch(windows, [5], m, seed=2, epoch=2)
    evaluation = masked_batch(windows, [5], m, seed=1, epoch=2, stream=EVAL_STREAM)
    for other in (next_epoch, other_seed, evaluation):
        assert not np.array_equal(other.positions, alone.positions)


def test_a_window_key_depends_on_its_four_numbers_only():
    a = window_keys(7, 1, [3, 4])
    assert np.array_equal(a, window_keys(7, 1, [3, 4])) and a[0] != a[1]
    assert a[0] == window_keys(7, 1, [9, 3])[1]
    assert window_keys(7, 2, [3])[0] != a[0] and window_keys(8, 1, [3])[0] != a[0]
    assert window_keys(7, 1, [3], EVAL_STREAM)[0] != a[0]
    assert window_keys(-1, 0, [0])[0] == window_keys(2**64 - 1, 0, [0])[0]  # any int seed works


def test_a_short_window_is_masked_without_bias():
    """floor(p * n + u): a window of 3 candidates gets 0 or 1 masks, 0.45 on average, not always 0 (round) or 1 (max 1)."""
    n = 20_000
    tokens = np.tile([CLS, 2000, 2001, 2002, SEP], n)
    starts = np.tile([False, True, True, True, False], n)
    masked = masker("token").mask(tokens, starts, [5] * n, window_keys(0, 0, range(n)))
    counts = np.bincount(masked.positions // 5, minlength=n)
    assert set(counts.tolist()) == {0, 1} and within(counts.mean(), 0.45, n)


def test_the_word_that_crosses_the_budget_is_taken_by_chance_so_the_count_is_right_on_average():
    """Ten 2-piece words, 20 candidates, p = 0.15: a budget of exactly 3 that whole words cannot hit. The crossing word
    is taken half the time (4 tokens) and left half the time (2): 3 on average, where skipping it would give 2."""
    n = 20_000
    window = [CLS] + list(range(2000, 2020)) + [SEP]
    tokens = np.tile(window, n)
    starts = np.tile([False] + [True, False] * 10 + [False], n)
    masked = masker("whole-word").mask(tokens, starts, [22] * n, window_keys(0, 0, range(n)))
    counts = np.bincount(masked.positions // 22, minlength=n)
    assert set(counts.tolist()) == {2, 4} and abs(counts.mean() - 3) <= SIGMAS * 1 / math.sqrt(n)


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, "0.15", True, float("nan")])
def test_mask_prob_outside_zero_one_is_refused(bad):
    with pytest.raises(OptionError, match=r"mask_prob must be a fraction between 0 and 1"):
        masker(mask_prob=bad)


def test_an_unknown_masking_is_refused():
    with pytest.raises(OptionError, match="masking must be one of whole-word, token"):
        masker("span")
