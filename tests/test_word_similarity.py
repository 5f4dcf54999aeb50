"""Word-in-context vectors: whole-word matching as the tokenizer normalises, piece pooling, occurrences, layers."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import bertkit
from bertkit.checkpoint import load_network
from bertkit.errors import BertkitError
from bertkit.model import Model
from bertkit.tokenizer import Tokenizer
from helpers import EPS32, MINILM_TERMS, assert_fp32_close, fp32_tol

RIVER = "He sat down by the bank to enjoy the view of the river."
MONEY = "She went to the bank to deposit some cash."
MONEY_2 = "He opened a savings account at the bank downtown."
LAYERS = 6
EPS64 = float(np.finfo(np.float64).eps)


def cosine_tol(model, sentences, *vectors) -> float:
    """How far a cosine may move when its word vectors (last layer) carry float32 round-off from other batches.

    Each component is within fp32_tol(H, 1536, 7) (6 layers and the embeddings; H the largest last-layer value), so
    a vector moves by at most sqrt(384) times that in norm and the cosine by at most 2 |dv| / |v| per vector; the
    result is then rounded to float32 (2^-24 more).
    """
    hidden = max(float(s.abs().max()) for s in model.hidden_states(sentences))
    dv = math.sqrt(384) * fp32_tol(hidden, MINILM_TERMS, depth=LAYERS + 1)
    return sum(2 * dv / float(np.linalg.norm(v)) for v in vectors) + EPS32 / 2


def test_a_multi_piece_word_is_the_mean_of_its_pieces(minilm):
    sentence = "Word embeddings capture meaning."
    result = minilm.word_embedding(sentence, "embeddings")
    assert result.tokens == ["em", "##bed", "##ding", "##s"]
    assert result.token_indices == [2, 3, 4, 5] and result.span == (5, 15)
    states = minilm.hidden_states([sentence])[0]
    # Last-layer round-off (6 layers and the embeddings) at the largest hidden value, plus the mean over 4 pieces.
    tol = dict(terms=MINILM_TERMS, depth=LAYERS + 1, scale=float(states.abs().max()))
    assert_fp32_close(result.vector, states[2:6].mean(0), **{**tol, "depth": LAYERS + 2}, what="mean")
    first = minilm.word_embedding(sentence, "embeddings", pooling="first").vector
    last = minilm.word_embedding(sentence, "embeddings", pooling="last").vector
    assert_fp32_close(first, states[2], **tol, what="first")
    assert_fp32_close(last, states[5], **tol, what="last")
    assert result.vector.dtype == np.float32 and result.vector.shape == (384,)


def test_a_repeated_word_lists_every_occurrence_and_uses_the_chosen_one(minilm):
    sentence = "The bank by the river is not the bank that holds my money."
    first = minilm.word_embedding(sentence, "bank")
    second = minilm.word_embedding(sentence, "bank", occurrence=1)
    assert first.occurrences == second.occurrences == [(4, 8), (33, 37)]
    assert (first.occurrence, second.occurrence) == (0, 1) and second.span == (33, 37)
    assert np.array_equal(minilm.word_embedding(sentence, "bank", occurrence=-1).vector, second.vector)
    assert not np.allclose(first.vector, second.vector)  # context differs, so do the vectors
    with pytest.raises(BertkitError, match=r"occurs 2 time\(s\).*occurrence must be 0..1"):
        minilm.word_embedding(sentence, "bank", occurrence=2)


def test_case_and_accents_match_as_the_uncased_tokenizer_normalises(minilm):
    sentence = "BANK, Bank, Bänk, banks, embankment, bank."
    hits = minilm.word_embedding(sentence, "bank").occurrences
    assert [sentence[a:b] for a, b in hits] == ["BANK", "Bank", "Bänk", "bank"]  # never 'banks' or 'embankment'
    assert minilm.word_embedding("I had a café au lait.", "CAFE").tokens == ["cafe"]


def test_a_cased_tokenizer_keeps_case_apart(tiny_base_dir):
    cased = Tokenizer.from_vocab(tiny_base_dir / "vocab.txt", lowercase=False)
    model = Model(load_network(tiny_base_dir), cased, device="cpu")
    assert model.word_embedding("The bank and the Bank.", "Bank").occurrences == [(17, 21)]
    with pytest.raises(BertkitError, match="does not occur"):
        model.word_embedding("The BANK.", "bank")


def test_a_phrase_is_matched_as_consecutive_words(minilm):
    result = minilm.word_embedding("I love New York in spring, and new york in fall.", "New York", occurrence=1)
    assert result.tokens == ["new", "york"] and result.span == (31, 39)


def test_a_missing_word_names_the_word_and_the_sentence(minilm):
    with pytest.raises(BertkitError, match="'river' does not occur as a whole word in 'She went to the bank"):
        minilm.word_embedding(MONEY, "river")
    with pytest.raises(BertkitError, match="only inside 'embankment'") as e:
        minilm.word_embedding("The embankment was steep.", "bank")
    assert "\n" not in str(e.value)
    with pytest.raises(BertkitError, match="holds no word"):
        minilm.word_embedding(MONEY, "  ")


def test_layers_index_sum4_and_concat4(minilm):
    layers = [minilm.hidden_states([RIVER], layer=i)[0][6] for i in range(7)]  # [CLS] he sat down by the bank
    scale = max(float(v.abs().max()) for v in layers)
    # Layer i's round-off: i layers after the embeddings, depth i + 1, at the largest hidden value.
    assert_fp32_close(minilm.word_embedding(RIVER, "bank", layer=0).vector, layers[0], terms=MINILM_TERMS, depth=1,
                      scale=scale, what="layer 0")
    assert_fp32_close(minilm.word_embedding(RIVER, "bank", layer=-3).vector, layers[4], terms=MINILM_TERMS, depth=5,
                      scale=scale, what="layer -3")
    summed = minilm.word_embedding(RIVER, "bank", layer="sum4").vector
    # Four layers' round-off (depth <= 7 each, values <= scale) add up, then the sum itself: 8 at 4 x scale.
    assert_fp32_close(summed, torch.stack(layers[3:]).sum(0), terms=MINILM_TERMS, depth=LAYERS + 2, scale=4 * scale,
                      what="sum4")
    concat = minilm.word_embedding(RIVER, "bank", layer="concat4").vector
    assert concat.shape == (4 * 384,)
    assert_fp32_close(concat, torch.cat(layers[3:]), terms=MINILM_TERMS, depth=LAYERS + 1, scale=scale, what="concat4")
    with pytest.raises(BertkitError, match="layer 7 does not exist"):
        minilm.word_embedding(RIVER, "bank", layer=7)
    with pytest.raises(BertkitError, match="layer must be a whole number or one of sum4, concat4, not 'sum3'"):
        minilm.word_embedding(RIVER, "bank", layer="sum3")
    with pytest.raises(BertkitError, match="pooling must be one of mean, first, last, not .max."):
        minilm.word_embedding(RIVER, "bank", pooling="max")


def test_sum4_needs_four_layers(tiny_base_dir):
    model = bertkit.load(tiny_base_dir, device="cpu")
    with pytest.raises(BertkitError, match="needs 4 layers but this model has 2"):
        model.word_embedding(RIVER, "bank", layer="sum4")


@pytest.mark.parametrize("layer", [-1, "sum4"])
def test_same_sense_is_more_similar_than_different_sense(minilm, layer):
    money = minilm.word_similarity(MONEY, MONEY_2, "bank", layer=layer).similarity
    assert money > minilm.word_similarity(RIVER, MONEY, "bank", layer=layer).similarity
    assert money > minilm.word_similarity(RIVER, MONEY_2, "bank", layer=layer).similarity


def test_similarity_of_different_words_and_occurrences(minilm):
    result = minilm.word_similarity(RIVER, "The stream was cold.", "river", word_b="stream")
    assert result.a.word == "river" and result.b.word == "stream" and -1 <= result.similarity <= 1
    a, b = result.a.vector.astype(np.float64), result.b.vector.astype(np.float64)
    # The cosine is float64 of the very vectors it returns: dot products and norms of 384 terms in any order stay
    # within 384 roundings of 2^-53 each, 4 such reductions at most (a float32 cosine would be off by ~1e-7).
    float64_cos = 4 * 384 * EPS64
    assert abs(result.similarity - a @ b / np.linalg.norm(a) / np.linalg.norm(b)) <= float64_cos
    twice = "the bank and the bank"
    assert minilm.word_similarity(twice, twice, "bank", occurrence=0, occurrence_b=1).b.occurrence == 1
    same = minilm.word_similarity(twice, twice, "bank")
    # One sentence, one occurrence: either the same vector twice (float64 round-off only) or the sentence encoded
    # twice in other batches (cosine_tol).
    assert same.similarity == pytest.approx(1.0, abs=float64_cos + cosine_tol(minilm, [twice], same.a.vector, same.b.vector))


def test_similarity_matrix_matches_pairwise_and_is_labelled(minilm):
    result = minilm.similarity_matrix([RIVER, MONEY, MONEY_2], "bank")
    m = result.matrix
    # A float64 Gram matrix of unit vectors, rounded to float32: entries within 2^-24 of their float64 values.
    assert m.shape == (3, 3) and np.allclose(m, m.T, rtol=0, atol=EPS32) and np.allclose(np.diag(m), 1.0, rtol=0, atol=EPS32)
    pairwise = minilm.word_similarity(RIVER, MONEY, "bank")
    # The same cosine from vectors of possibly other batches (see cosine_tol).
    assert abs(m[0, 1] - pairwise.similarity) <= cosine_tol(minilm, [RIVER, MONEY], pairwise.a.vector, pairwise.b.vector)
    assert all("[bank]" in label and len(label) <= 40 for label in result.labels)
    mixed = minilm.similarity_matrix([RIVER, "The stream was cold."], ["river", "stream"])
    assert [v.word for v in mixed.vectors] == ["river", "stream"]
    with pytest.raises(BertkitError, match="word has 1 values for 2 sentences"):
        minilm.similarity_matrix([RIVER, MONEY], ["bank"])
