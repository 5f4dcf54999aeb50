"""Masked-LM evaluation: the figures against their definitions, the unigram baseline, sums that add across shards, fixed
evaluation masks, and a tiny model that learns (a minimal stand-in loop: loss falls, top-1 beats the baseline)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bertkit.config import BertConfig
from bertkit.modeling import BertNetwork
from bertkit.pretrain import (EVAL_STREAM, MLMScores, Masker, MaskedLM, MaskedWindows, UnigramBaseline, evaluate_mlm,
                              evaluation_batches, masked_batch, masked_lm_loss, prepare_data, score_batches,
                              score_logits)
from bertkit.tokenizer import Tokenizer

SPECIALS = [0, 100, 101, 102, 103]


def test_score_logits_follows_the_definitions():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 40, generator=g)
    targets = torch.randint(0, 40, (50,), generator=g)
    scores = score_logits(logits, targets)
    ranks = (logits > logits[torch.arange(50), targets][:, None]).sum(-1)  # how many logits beat the target's
    nll = -torch.log_softmax(logits, -1)[torch.arange(50), targets]
    assert scores.count == 50 and scores.top1 == int((ranks == 0).sum()) and scores.top5 == int((ranks < 5).sum())
    assert math.isclose(scores.loss_sum, float(nll.sum()), rel_tol=1e-6)
    figures = scores.figures()
    assert math.isclose(figures["perplexity"], math.exp(figures["loss"]))
    assert MLMScores().figures()["loss"] is None  # nothing masked: no figure, not a division by zero


def test_scores_add_up_across_shards_and_survive_an_all_reduce_tensor():
    a, b = MLMScores(3.5, 1, 2, 4), MLMScores(1.25, 0, 1, 2)
    assert a + b == MLMScores(4.75, 1, 3, 6)
    assert MLMScores.from_tensor(a.as_tensor() + b.as_tensor()) == a + b


def test_the_unigram_baseline_predicts_by_training_frequency():
    baseline = UnigramBaseline(10, [0, 1])
    baseline.update(np.array([5, 5, 5, 7, 7, 9, 1, 1, 1, 1]))  # a special token counted is never predicted
    assert baseline.ranking(3) == [5, 7, 9] and baseline.ranking(5) == [5, 7, 9, 2, 3]  # ties: lower id first
    log_p = baseline.log_probs()
    # add-one over the 8 ordinary ids, the 6 ordinary tokens counted: (count + 1) / (6 + 8); specials impossible
    assert math.isclose(float(log_p[5].exp()), (3 + 1) / (6 + 8)) and math.isclose(float(log_p[2].exp()), 1 / 14)
    assert math.isclose(float(log_p.exp().sum()), 1.0) and log_p[0] == -math.inf
    scores = baseline.score(torch.tensor([5, 7, 4, 5]))  # 4 is sixth: outside the top 5
    assert (scores.top1, scores.top5, scores.count) == (2, 3, 4)
    assert math.isclose(scores.loss_sum, -float(log_p[[5, 7, 4, 5]].sum()))
    again = UnigramBaseline.from_state_dict(baseline.state_dict())
    assert np.array_equal(again.counts, baseline.counts) and again.ranking() == baseline.ranking()


SENTENCES = [
    "the cat chased the mouse across the kitchen floor.",
    "the dog chased the ball across the garden lawn.",
    "a bird sang a song in the tall green tree.",
    "my sister drinks hot coffee every morning before work.",
    "paris is the capital of france and berlin is the capital of germany.",
    "the children played football in the park after school.",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, minilm_dir):
    path = tmp_path_factory.mktemp("mlm") / "corpus.txt"
    path.write_text("\n".join(SENTENCES * 40) + "\n", encoding="utf-8")
    tokenizer = Tokenizer.from_dir(minilm_dir)
    data = prepare_data(tokenizer, path, max_length=32, limit=512, eval_fraction=0.2, seed=0, progress=False)
    masker = Masker.for_tokenizer(tokenizer)
    held_out = evaluation_batches(data.eval, masker, seed=0, max_tokens=4096)
    assert len(held_out) == 1  # every held-out window in one batch
    return data, masker, held_out


@pytest.fixture()
def one_thread():
    """Tiny matrices gain nothing from threads, and on a shared machine their threads wait on each other (8x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_evaluation_is_the_loss_of_fixed_masks_and_the_baseline_scores_the_same_tokens(corpus, tiny_mlm, one_thread):
    data, masker, held_out = corpus
    network = tiny_mlm.network
    first = evaluate_mlm(network, held_out, data.baseline)
    again = evaluate_mlm(network, evaluation_batches(data.eval, masker, seed=0, max_tokens=4096), data.baseline)
    assert first == again  # the evaluation masks are the same every time
    model, unigram = first["model"], first["unigram"]
    assert model["masked_tokens"] == unigram["masked_tokens"] == held_out[0].num_masked > 50
    with torch.no_grad():
        logits = MaskedLM(network)(held_out[0])
    assert math.isclose(model["loss"], float(masked_lm_loss(logits, held_out[0].targets)), rel_tol=1e-5)
    assert model["top1"] == int((logits.argmax(-1) == held_out[0].targets).sum()) / held_out[0].num_masked
    # In small batches, or a window per shard as processes would split them, the sums are the same.
    small = evaluation_batches(data.eval, masker, seed=0, max_tokens=100)
    shards = [masked_batch(data.eval, [i], masker, seed=0, epoch=0, stream=EVAL_STREAM) for i in range(len(data.eval))]
    assert len(small) > 5 and sum(b.num_masked for b in small) == held_out[0].num_masked
    whole = score_batches(network, held_out)
    for parts in (small, shards):
        assert math.isclose(score_batches(network, parts).loss_sum, whole.loss_sum, rel_tol=1e-5)
    # The unigram baseline, on this corpus, guesses "the" every time.
    assert data.baseline.ranking(1) == [1996]
    assert unigram["top1"] == int((held_out[0].targets == 1996).sum()) / held_out[0].num_masked


def test_a_tiny_model_learns_context_beyond_the_unigram_baseline(corpus, one_thread):
    """A stand-in loop (the trainer drives the real one): AdamW on a 2-layer, 32-wide random BERT, fresh masks each
    step, 100 steps of 8 windows."""
    data, masker, held_out = corpus
    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    network = BertNetwork(config, pooler=False, mlm_head=True)
    before = evaluate_mlm(network, held_out, data.baseline)
    model = MaskedLM(network.train())
    examples = MaskedWindows(data.train, masker, seed=0)
    optimizer = torch.optim.AdamW(network.parameters(), lr=5e-3, weight_decay=0.01)
    losses = []
    for step in range(100):
        batch = examples.batch(np.random.default_rng(step).permutation(len(examples))[:8], epoch=step)
        loss = masked_lm_loss(model(batch), batch.targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    after = evaluate_mlm(network, held_out, data.baseline)
    assert np.mean(losses[-10:]) < 0.4 * np.mean(losses[:10])
    assert after["model"]["loss"] < 0.4 * before["model"]["loss"]
    unigram = after["unigram"]
    assert after["model"]["loss"] < unigram["loss"] and after["model"]["top5"] > unigram["top5"]
    assert after["model"]["top1"] > unigram["top1"] + 0.1, (after, unigram)
