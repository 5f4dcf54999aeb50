"""bertkit.load and Model.hidden_states: texts in, one tensor per text out, equal to transformers."""
from __future__ import annotations

import pytest
import torch

import bertkit
from bertkit.errors import BertkitError
from helpers import MINILM_TERMS, TINY_TERMS, assert_fp32_close

# Depth of round-off (helpers.fp32_tol): the embeddings, then one per layer.
MINILM_DEPTH = 7
TINY_DEPTH = 3

TEXTS = [
    "Hello, BERT!",
    "",
    "The capital of France is [MASK].",
    "He sat down by the bank to enjoy the view of the river. " * 20,  # long: ~280 tokens
    "Zoë's café in Ångström Straße served crème brûlée 🍮 — 日本語 too.",
    "x",
]


@pytest.fixture(scope="module")
def minilm():
    """Loaded through the bundled alias (not conftest's folder path), since these tests check alias loading."""
    return bertkit.load("minilm", device="cpu")


def test_load_alias_gives_model_with_tokenizer_encoder_and_heads(minilm, minilm_dir):
    assert minilm.folder == minilm_dir
    assert minilm.network.heads == ["pooler"]
    assert minilm.config.hidden_size == 384 and minilm.max_length == 512
    assert minilm.num_parameters() == 22_713_216
    assert minilm.sentence_config == {"pooling": "mean", "normalize": True, "max_seq_length": 256}


def test_hidden_states_match_transformers_in_callers_order(minilm, minilm_dir):
    from transformers import BertModel, BertTokenizerFast

    ref = BertModel.from_pretrained(minilm_dir).eval()
    tok = BertTokenizerFast.from_pretrained(minilm_dir)
    states = minilm.hidden_states(TEXTS)
    assert len(states) == len(TEXTS)
    for text, got in zip(TEXTS, states):
        inputs = tok(text, return_tensors="pt")
        with torch.no_grad():
            want = ref(**inputs).last_hidden_state[0]
        assert got.shape == want.shape  # special tokens included
        assert_fp32_close(got, want, terms=MINILM_TERMS, depth=MINILM_DEPTH, what=repr(text[:20]))


def test_hidden_states_of_a_chosen_layer_and_pairs(minilm, minilm_dir):
    from transformers import BertModel, BertTokenizerFast

    ref = BertModel.from_pretrained(minilm_dir).eval()
    tok = BertTokenizerFast.from_pretrained(minilm_dir)
    got = minilm.hidden_states(["a question?"], layer=3, pairs=["an answer."])[0]
    with torch.no_grad():
        want = ref(**tok("a question?", "an answer.", return_tensors="pt"), output_hidden_states=True).hidden_states[3][0]
    assert_fp32_close(got, want, terms=MINILM_TERMS, depth=4)  # embeddings and 3 layers
    with pytest.raises(BertkitError, match="layer 9"):
        minilm.hidden_states(["x"], layer=9)


def test_batch_budget_does_not_change_results(minilm):
    big = minilm.hidden_states(TEXTS)
    small = minilm.hidden_states(TEXTS, batch_tokens=64)  # forces many tiny batches
    for a, b in zip(big, small):  # other batches change only the order of float32 sums
        assert_fp32_close(b, a, terms=MINILM_TERMS, depth=MINILM_DEPTH)


def test_over_long_text_is_truncated_loudly(minilm):
    with pytest.warns(UserWarning, match="truncated"):
        out = minilm.hidden_states(["word " * 600])
    assert out[0].shape[0] == 512


def test_bad_inputs_are_clear(minilm):
    with pytest.raises(BertkitError, match="not a string"):
        minilm.hidden_states(["ok", 3])
    with pytest.raises(BertkitError, match="pairs"):
        minilm.hidden_states(["a", "b"], pairs=["only one"])


def test_model_save_round_trip_with_tokenizer(minilm, tmp_path):
    minilm.save(tmp_path)
    again = bertkit.load(tmp_path, device="cpu")
    assert again.tokenizer.encode("Hello, BERT!").ids == minilm.tokenizer.encode("Hello, BERT!").ids
    a, b = minilm.hidden_states(["same numbers?"])[0], again.hidden_states(["same numbers?"])[0]
    assert torch.equal(a, b)


def test_transformers_saves_we_load_same_outputs(tiny_cls_dir, tmp_path):
    import transformers

    ref = transformers.BertForSequenceClassification.from_pretrained(tiny_cls_dir).eval()
    ref.save_pretrained(tmp_path)
    transformers.AutoTokenizer.from_pretrained(tiny_cls_dir).save_pretrained(tmp_path)
    ours = bertkit.load(tmp_path, device="cpu")
    tok = transformers.BertTokenizerFast.from_pretrained(tmp_path)
    with torch.no_grad():
        want = ref.bert(**tok("transformers wrote this", return_tensors="pt")).last_hidden_state[0]
    assert_fp32_close(ours.hidden_states(["transformers wrote this"])[0], want, terms=TINY_TERMS, depth=TINY_DEPTH)
    assert ours.labels == ["negative", "neutral", "positive"]


def test_compiled_model_gives_eager_numbers_for_any_batch_shape(tiny_cls_dir):
    """Model.compile() is shape-generic (no bucketing): every task's batches run and match eager within float32 round-off."""
    eager, fast = bertkit.load(tiny_cls_dir, device="cpu"), bertkit.load(tiny_cls_dir, device="cpu").compile()
    assert fast.compiled and fast.info()["compiled"] and not eager.compiled
    texts = TEXTS[:1] + TEXTS[2:]
    for budget in (64, 512):  # different packed token counts, different sequence counts
        for want, got in zip(eager.hidden_states(texts, batch_tokens=budget), fast.hidden_states(texts, batch_tokens=budget)):
            assert_fp32_close(got, want, terms=TINY_TERMS, depth=TINY_DEPTH)  # compiled kernels fuse and reorder sums
    for want, got in zip(eager.hidden_states(texts, layer=1), fast.hidden_states(texts, layer=1)):
        assert_fp32_close(got, want, terms=TINY_TERMS, depth=2)
    assert [r["label"] for r in eager.predict(texts)] == [r["label"] for r in fast.predict(texts)]
