"""Fill-mask against transformers' pipeline on a random MLM checkpoint: same ranking, scores within 1e-5."""
from __future__ import annotations

import math

import pytest
import torch

import bertkit
from bertkit.errors import BertkitError

TOL = 1e-5
TEXTS = [
    "The capital of France is [MASK].",
    "[MASK]",
    "I went to the [MASK] yesterday. " + "It was a sunny day and the weather was nice, " * 20,
    "Zoë's [MASK] in Ångström Straße.",
    "x [MASK] y",
]


@pytest.fixture(scope="module")
def mlm(tiny_mlm_dir):
    return bertkit.load(tiny_mlm_dir, device="cpu")


@pytest.fixture(scope="module")
def pipe(tiny_mlm_dir):
    from transformers import pipeline

    return pipeline("fill-mask", model=str(tiny_mlm_dir), device="cpu")


@pytest.fixture(scope="module")
def hf_mlm(tiny_mlm_dir):
    from transformers import BertForMaskedLM, BertTokenizerFast

    return BertForMaskedLM.from_pretrained(tiny_mlm_dir).eval(), BertTokenizerFast.from_pretrained(tiny_mlm_dir)


def assert_same(ours: list[dict], theirs: list[dict]) -> None:
    assert [r["id"] for r in ours] == [r["token"] for r in theirs]
    assert [r["token"] for r in ours] == [r["token_str"] for r in theirs]
    for a, b in zip(ours, theirs):
        assert abs(a["score"] - b["score"]) < TOL


def test_ranking_and_scores_equal_the_transformers_pipeline(mlm, pipe):
    results = mlm.fill_mask(TEXTS, top_k=10)
    assert len(results) == len(TEXTS)
    for text, per_mask in zip(TEXTS, results):
        assert len(per_mask) == 1 and len(per_mask[0]) == 10
        assert_same(per_mask[0], pipe(text, top_k=10))


def test_several_masks_give_a_ranked_list_per_mask(mlm, pipe):
    text = "The [MASK] sat on the [MASK] and [MASK]."
    ours = mlm.fill_mask([text], top_k=4)[0]
    theirs = pipe(text, top_k=4)
    assert len(ours) == 3
    for a, b in zip(ours, theirs):
        assert_same(a, b)
    # Each candidate's sequence fills only its own mask.
    first = ours[0][0]
    assert first["sequence"] == f"The {first['token'].removeprefix('##')} sat on the [MASK] and [MASK]."


def test_results_come_back_in_callers_order_whatever_the_batching(mlm):
    texts = TEXTS[::-1] + ["short [MASK]", "[MASK] " + "long " * 100]
    big = mlm.fill_mask(texts, top_k=3)
    small = mlm.fill_mask(texts, top_k=3, batch_tokens=40)  # forces many tiny batches
    alone = [mlm.fill_mask([t], top_k=3)[0] for t in texts]
    for a, b, c in zip(big, small, alone):
        assert [r["id"] for r in a[0]] == [r["id"] for r in b[0]] == [r["id"] for r in c[0]]
        assert all(abs(x["score"] - y["score"]) < TOL for x, y in zip(a[0], c[0]))


def test_a_single_string_is_one_text(mlm):
    assert mlm.fill_mask("a [MASK] b", top_k=2) == mlm.fill_mask(["a [MASK] b"], top_k=2)


def test_vocabulary_projection_runs_only_on_masked_positions(mlm, monkeypatch):
    seen = []
    head = mlm.network.mlm_head
    original = head.forward
    monkeypatch.setattr(head, "forward", lambda states: seen.append(states.shape[0]) or original(states))
    mlm.fill_mask(["a [MASK] b [MASK] c", "one [MASK] " + "word " * 50])
    assert sum(seen) == 3


def test_single_piece_targets_score_their_softmax_probability(mlm, pipe):
    text = "The capital of France is [MASK]."
    targets = ["paris", "london", "berlin", "the"]
    ours = mlm.fill_mask([text], targets=targets)[0][0]
    theirs = pipe(text, targets=targets, top_k=len(targets))
    assert_same(ours, theirs)
    assert {r["target"] for r in ours} == set(targets)


def test_targets_are_normalised_like_the_tokenizer_and_deduplicated(mlm):
    rows = mlm.fill_mask(["a [MASK] b"], targets=["Paris", "paris", "PARIS"])[0][0]
    assert len(rows) == 1 and rows[0]["token"] == "paris" and rows[0]["target"] == "Paris"


def test_multi_piece_target_scores_the_left_to_right_joint_probability(mlm, hf_mlm):
    """'aardvark' is aa ##rd ##var ##k: the [MASK] becomes 4 masks, filled and scored one piece at a time."""
    model, tok = hf_mlm
    text = "Yesterday I saw an [MASK] at the zoo."
    row = next(r for r in mlm.fill_mask([text], targets=["aardvark", "dog"])[0][0] if r["target"] == "aardvark")
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
    assert abs(row["log_prob"] - want) < 1e-4
    assert math.isclose(row["score"], math.exp(want), rel_tol=1e-4)
    assert row["sequence"] == "Yesterday I saw an aardvark at the zoo."


def test_multi_piece_targets_on_a_text_with_two_masks(mlm):
    rows = mlm.fill_mask(["[MASK] and [MASK]"], targets=["aardvark", "cat"])[0]
    assert len(rows) == 2 and all(len(r) == 2 for r in rows)
    assert all(r[0]["score"] >= r[1]["score"] for r in rows)


def test_a_checkpoint_without_mlm_head_says_what_to_use(minilm_dir):
    model = bertkit.load(minilm_dir, device="cpu")
    with pytest.raises(BertkitError, match="no masked-LM head") as e:
        model.fill_mask(["a [MASK]"])
    assert "\n" not in str(e.value) and "bertkit embed" in str(e.value)


def test_clear_errors_for_bad_inputs(mlm):
    with pytest.raises(BertkitError, match=r"text #1 has no \[MASK\]"):
        mlm.fill_mask(["a [MASK]", "no mask here"])
    with pytest.raises(BertkitError, match="top_k"):
        mlm.fill_mask(["a [MASK]"], top_k=0)
    with pytest.raises(BertkitError, match="targets is empty"):
        mlm.fill_mask(["a [MASK]"], targets=[])
    with pytest.raises(BertkitError, match="holds no word piece"):
        mlm.fill_mask(["a [MASK]"], targets=["   "])
    with pytest.raises(BertkitError, match="cut off"):
        mlm.fill_mask(["word " * 600 + "[MASK]"])


def test_a_truncated_text_still_fills_its_mask_and_warns(mlm):
    with pytest.warns(UserWarning, match="truncated"):
        rows = mlm.fill_mask(["[MASK] " + "word " * 600], top_k=1)
    assert len(rows[0]) == 1
