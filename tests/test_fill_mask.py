"""Fill-mask against transformers' pipeline on a random MLM checkpoint: same ranking, scores within float32 round-off."""
from __future__ import annotations

import math

import pytest
import torch

import bertkit
from bertkit.errors import BertkitError
from helpers import TINY_TERMS, fp32_tol

TEXTS = [
    "The capital of France is [MASK].",
    "[MASK]",
    "I went to the [MASK] yesterday. " + "It was a sunny day and the weather was nice, " * 20,
    "Zoë's [MASK] in Ångström Straße.",
    "x [MASK] y",
]


@pytest.fixture(scope="module")
def pipe(tiny_mlm_dir):
    from transformers import pipeline

    return pipeline("fill-mask", model=str(tiny_mlm_dir), device="cpu")


@pytest.fixture(scope="module")
def hf_mlm(tiny_mlm_dir):
    from transformers import BertForMaskedLM, BertTokenizerFast

    return BertForMaskedLM.from_pretrained(tiny_mlm_dir).eval(), BertTokenizerFast.from_pretrained(tiny_mlm_dir)


@pytest.fixture(scope="module")
def log_tol(hf_mlm):
    """How far a log-probability may move with float32 round-off alone (absolute; a probability's relative error).

    log p = logit - log(sum of exp(logits)): each logit is within fp32_tol(max |logit|, 512, 5) (2 layers, the
    embeddings and the head's transform and decoder), which moves log p by at most twice that; the sum runs over the
    30,522-entry vocabulary, sqrt(30522) ulps of it. A logit off by 1e-2 (a wrong weight) is far outside.
    """
    model, tok = hf_mlm
    with torch.no_grad():
        scale = max(float(model(**tok(t, return_tensors="pt")).logits.abs().max()) for t in TEXTS)
    return 2 * fp32_tol(scale, TINY_TERMS, depth=5) + fp32_tol(1.0, model.config.vocab_size)


def assert_same(ours: list[dict], theirs: list[dict], log_tol: float) -> None:
    assert [r["id"] for r in ours] == [r["token"] for r in theirs]
    assert [r["token"] for r in ours] == [r["token_str"] for r in theirs]
    for a, b in zip(ours, theirs):  # probabilities here are ~3e-5 (a near-uniform random head): compare relatively
        assert abs(a["score"] - b["score"]) <= log_tol * b["score"]


def test_ranking_and_scores_equal_the_transformers_pipeline(tiny_mlm, pipe, log_tol):
    results = tiny_mlm.fill_mask(TEXTS, top_k=10)
    assert len(results) == len(TEXTS)
    for text, per_mask in zip(TEXTS, results):
        assert len(per_mask) == 1 and len(per_mask[0]) == 10
        assert_same(per_mask[0], pipe(text, top_k=10), log_tol)


def test_several_masks_give_a_ranked_list_per_mask(tiny_mlm, pipe, log_tol):
    text = "The [MASK] sat on the [MASK] and [MASK]."
    ours = tiny_mlm.fill_mask([text], top_k=4)[0]
    theirs = pipe(text, top_k=4)
    assert len(ours) == 3
    for a, b in zip(ours, theirs):
        assert_same(a, b, log_tol)
    # One `filled` text per input, every mask replaced by its best candidate; no candidate repeats the text.
    best = [m[0]["token"] for m in ours]
    glued = [(" " + w) if not w.startswith("##") else w[2:] for w in best]
    assert ours.filled == f"The{glued[0]} sat on the{glued[1]} and{glued[2]}."
    assert not any("sequence" in c for m in ours for c in m)


def test_results_come_back_in_callers_order_whatever_the_batching(tiny_mlm, log_tol):
    texts = TEXTS[::-1] + ["short [MASK]", "[MASK] " + "long " * 100]
    big = tiny_mlm.fill_mask(texts, top_k=3)
    small = tiny_mlm.fill_mask(texts, top_k=3, batch_tokens=40)  # forces many tiny batches
    alone = [tiny_mlm.fill_mask([t], top_k=3)[0] for t in texts]
    for a, b, c in zip(big, small, alone):
        assert [r["id"] for r in a[0]] == [r["id"] for r in b[0]] == [r["id"] for r in c[0]]
        assert all(abs(x["score"] - y["score"]) <= log_tol * y["score"] for x, y in zip(a[0], c[0]))


def test_a_single_string_is_one_text(tiny_mlm):
    assert tiny_mlm.fill_mask("a [MASK] b", top_k=2) == tiny_mlm.fill_mask(["a [MASK] b"], top_k=2)


def test_vocabulary_projection_runs_only_on_masked_positions(tiny_mlm, monkeypatch):
    seen = []
    head = tiny_mlm.network.mlm_head
    original = head.forward
    monkeypatch.setattr(head, "forward", lambda states: seen.append(states.shape[0]) or original(states))
    tiny_mlm.fill_mask(["a [MASK] b [MASK] c", "one [MASK] " + "word " * 50])
    assert sum(seen) == 3


def test_single_piece_targets_score_their_softmax_probability(tiny_mlm, pipe, log_tol):
    text = "The capital of France is [MASK]."
    targets = ["paris", "london", "berlin", "the"]
    ours = tiny_mlm.fill_mask([text], targets=targets)[0][0]
    theirs = pipe(text, targets=targets, top_k=len(targets))
    assert_same(ours, theirs, log_tol)
    assert {r["target"] for r in ours} == set(targets)


def test_targets_are_normalised_like_the_tokenizer_and_deduplicated(tiny_mlm):
    rows = tiny_mlm.fill_mask(["a [MASK] b"], targets=["Paris", "paris", "PARIS"])[0][0]
    assert len(rows) == 1 and rows[0]["token"] == "paris" and rows[0]["target"] == "Paris"


def test_multi_piece_target_scores_the_left_to_right_joint_probability(tiny_mlm, hf_mlm, log_tol):
    """'aardvark' is aa ##rd ##var ##k: the [MASK] becomes 4 masks, filled and scored one piece at a time."""
    model, tok = hf_mlm
    text = "Yesterday I saw an [MASK] at the zoo."
    row = next(r for r in tiny_mlm.fill_mask([text], targets=["aardvark", "dog"])[0][0] if r["target"] == "aardvark")
    assert row["pieces"] == ["aa", "##rd", "##var", "##k"] and row["id"] is None
    pieces = tok("aardvark", add_special_tokens=False)["input_ids"]
    ids = tok(text)["input_ids"]
    pos = ids.index(tok.mask_token_id)
    want = 0.0
    for k in range(len(pieces)):
        seq = ids[:pos] + pieces[:k] + [tok.mask_token_id] * (len(pieces) - k) + ids[pos + 1:]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([seq])).logits[0, pos + k]
        want += logits.log_softmax(-1)[pieces[k]].item()
    # A sum of 4 log-probabilities, each within log_tol; the score is its exp, so that is its relative error.
    assert abs(row["log_prob"] - want) <= 4 * log_tol
    assert math.isclose(row["score"], math.exp(want), rel_tol=4 * log_tol)
    answer = tiny_mlm.fill_mask([text], targets=["aardvark", "dog"])[0]
    assert answer.filled == f"Yesterday I saw an {answer[0][0]['token']} at the zoo."  # the best target, decoded whole


def test_multi_piece_targets_on_a_text_with_two_masks(tiny_mlm):
    rows = tiny_mlm.fill_mask(["[MASK] and [MASK]"], targets=["aardvark", "cat"])[0]
    assert len(rows) == 2 and all(len(r) == 2 for r in rows)
    assert all(r[0]["score"] >= r[1]["score"] for r in rows)


def test_a_checkpoint_without_mlm_head_says_what_to_use(minilm_dir):
    model = bertkit.load(minilm_dir, device="cpu")
    with pytest.raises(BertkitError, match="no masked-LM head") as e:
        model.fill_mask(["a [MASK]"])
    assert "\n" not in str(e.value) and "bertkit embed" in str(e.value)


def test_clear_errors_for_bad_inputs(tiny_mlm):
    with pytest.raises(BertkitError, match=r"texts\[1\] has no \[MASK\] token"):
        tiny_mlm.fill_mask(["a [MASK]", "no mask here"])
    with pytest.raises(BertkitError, match="top_k"):
        tiny_mlm.fill_mask(["a [MASK]"], top_k=0)
    with pytest.raises(BertkitError, match="targets is empty"):
        tiny_mlm.fill_mask(["a [MASK]"], targets=[])
    with pytest.raises(BertkitError, match="holds no word piece"):
        tiny_mlm.fill_mask(["a [MASK]"], targets=["   "])
    with pytest.raises(BertkitError, match="cut off"):
        tiny_mlm.fill_mask(["word " * 600 + "[MASK]"])


def test_a_truncated_text_still_fills_its_mask_and_warns(tiny_mlm):
    with pytest.warns(UserWarning, match="truncated"):
        rows = tiny_mlm.fill_mask(["[MASK] " + "word " * 600], top_k=1)
    assert len(rows[0]) == 1
