"""Our encoder and heads against transformers on the same checkpoints, fp32, max abs difference.

Tolerances come from helpers.fp32_tol: sqrt(longest reduction) ulps of the largest value per stacked block (MiniLM's
hidden states are ~10 in size, so the last layer's bound is ~2e-4; measured differences are ~5e-6, and a wrong
weight or a missing LayerNorm gives 1e-2 or more)."""
from __future__ import annotations

import math

import pytest
import torch
from helpers import MINILM_TERMS, TINY_TERMS, assert_fp32_close, hf_padded_inputs, packed, random_sequences, unpad

from bertkit.checkpoint import load_network

# Depth (stacked blocks whose round-off adds up): embeddings, then one per layer, then one per head layer.
MINILM_LAYERS = 6
TINY_LAYERS = 2
COMPOSITIONS = {
    "lengths_1_to_512": ([1, 2, 3, 17, 64, 128, 255, 300, 511, 512], False),
    "one_token_texts": ([1, 1, 1, 1], False),
    "pairs_with_token_types": ([12, 40, 7, 90, 33], True),
    "mixed_short_and_long": ([2, 512, 3, 500, 1, 260, 5], False),
    "single_text": ([77], False),
}


@pytest.fixture(scope="module")
def minilm_pair(minilm_dir):
    from transformers import BertModel

    return load_network(minilm_dir).eval(), BertModel.from_pretrained(minilm_dir).eval()


@pytest.mark.parametrize("composition", list(COMPOSITIONS))
def test_minilm_last_hidden_state_matches_transformers(minilm_pair, composition):
    ours, ref = minilm_pair
    lengths, pairs = COMPOSITIONS[composition]
    ids, types = random_sequences(lengths, seed=len(lengths), pair_split=pairs)
    with torch.no_grad():
        got = ours(packed(ids, types))
        want = unpad(ref(**hf_padded_inputs(ids, types)).last_hidden_state, ids)
    assert_fp32_close(got, want, terms=MINILM_TERMS, depth=MINILM_LAYERS + 1, what=composition)


def test_minilm_pooler_and_all_layers_match(minilm_pair):
    ours, ref = minilm_pair
    ids, types = random_sequences([5, 40, 13], seed=3)
    batch = packed(ids, types)
    with torch.no_grad():
        layers = ours(batch, all_layers=True)
        pooled = ours.pooled(layers[-1], batch)
        out = ref(**hf_padded_inputs(ids, types), output_hidden_states=True)
    assert len(layers) == len(out.hidden_states) == 7
    for i, (got, want) in enumerate(zip(layers, out.hidden_states)):
        assert_fp32_close(got, unpad(want, ids), terms=MINILM_TERMS, depth=i + 1, what=f"layer {i}")
    # The pooler's tanh(dense) is one more block, and its input is the last layer (scale ~10, not the pooled ~1).
    assert_fp32_close(pooled, out.pooler_output, terms=MINILM_TERMS, depth=MINILM_LAYERS + 2,
                      scale=float(out.last_hidden_state.abs().max()), what="pooler")


@pytest.mark.parametrize("composition", ["lengths_1_to_512", "pairs_with_token_types", "mixed_short_and_long"])
def test_mlm_logits_match_transformers(tiny_mlm_dir, composition):
    from transformers import BertForMaskedLM

    ours = load_network(tiny_mlm_dir).eval()
    ref = BertForMaskedLM.from_pretrained(tiny_mlm_dir).eval()
    lengths, pairs = COMPOSITIONS[composition]
    ids, types = random_sequences(lengths, seed=11, pair_split=pairs)
    with torch.no_grad():
        got = ours.mlm_head(ours(packed(ids, types)))
        want = unpad(ref(**hf_padded_inputs(ids, types)).logits, ids)
    # Layers, then the head's transform and the decoder (2 blocks); round-off scales with the logits' size (~1).
    assert_fp32_close(got, want, terms=TINY_TERMS, depth=TINY_LAYERS + 3, what=composition)


@pytest.mark.parametrize("composition", ["lengths_1_to_512", "pairs_with_token_types", "one_token_texts"])
def test_classifier_logits_match_transformers(tiny_cls_dir, composition):
    from transformers import BertForSequenceClassification

    ours = load_network(tiny_cls_dir).eval()
    ref = BertForSequenceClassification.from_pretrained(tiny_cls_dir).eval()
    lengths, pairs = COMPOSITIONS[composition]
    ids, types = random_sequences(lengths, seed=5, pair_split=pairs)
    with torch.no_grad():
        got = ours.classify(packed(ids, types))
        want = ref(**hf_padded_inputs(ids, types)).logits
    # Layers, then pooler and classifier (2 blocks); round-off scales with the logits' own size, as for the MLM head.
    assert_fp32_close(got, want, terms=TINY_TERMS, depth=TINY_LAYERS + 3, what=composition)
    assert ours.config.label_names == ["negative", "neutral", "positive"]


def test_packing_is_invisible_each_sequence_alone_equals_batched(minilm_pair):
    """Packed dense layers + padded-view SDPA give what each text run on its own gives."""
    ours, _ = minilm_pair
    ids, types = random_sequences([3, 129, 1, 64, 512], seed=7)
    with torch.no_grad():
        together = ours(packed(ids, types))
        alone = torch.cat([ours(packed([s], [t])) for s, t in zip(ids, types)])
    assert_fp32_close(together, alone, terms=MINILM_TERMS, depth=MINILM_LAYERS + 1)


def test_padded_sdpa_forced_equals_default_path(minilm_pair):
    ours, _ = minilm_pair
    ids, types = random_sequences([9, 30, 2], seed=8)
    batch = packed(ids, types)
    with torch.no_grad():
        default = ours(batch)
        forced = ours(batch, force_padded_attention=True)
    assert_fp32_close(default, forced, terms=MINILM_TERMS, depth=MINILM_LAYERS + 1)


def test_the_tolerance_still_sees_a_small_bug(minilm_pair):
    """The derived bound is no blanket: a LayerNorm weight off by 0.1% in one layer fails it (a real bug, a swapped
    tensor or a missing LayerNorm, is off by far more)."""
    import copy

    ours, ref = minilm_pair
    broken = copy.deepcopy(ours)
    ids, types = random_sequences([12, 40, 7], seed=5)
    with torch.no_grad():
        broken.encoder.layers[3].ffn_norm.weight.mul_(1.001)
        got = broken(packed(ids, types))
        want = unpad(ref(**hf_padded_inputs(ids, types)).last_hidden_state, ids)
    with pytest.raises(AssertionError, match=r"max \|diff\|"):
        assert_fp32_close(got, want, terms=MINILM_TERMS, depth=MINILM_LAYERS + 1)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_varlen_matches_padded_sdpa_and_transformers(minilm_dir):
    """On CUDA the flash varlen kernel must agree with padded SDPA and with transformers (bf16 tolerance)."""
    from transformers import BertModel

    ours = load_network(minilm_dir).cuda().eval()
    ref = BertModel.from_pretrained(minilm_dir).cuda().eval()
    ids, types = random_sequences([1, 7, 512, 130, 64, 2], seed=9)
    batch = packed(ids, types).to("cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        varlen = ours(batch).float()
        padded = ours(batch, force_padded_attention=True).float()
        want = unpad(ref(**{k: v.cuda() for k, v in hf_padded_inputs(ids, types).items()}).last_hidden_state.float(), ids)
    with torch.no_grad():
        fp32 = ours(batch)

    def rel(a, b):  # per token: bf16 rounding is relative, so its error is measured against the token's own norm
        return ((a - b).norm(dim=-1) / b.norm(dim=-1)).max().item()

    # bf16 keeps 8 significant bits: each rounding is off by <= u = 2^-8 relative. Per layer, autocast rounds the
    # inputs and weights of 5 matmuls and the attention's q, k, v and probabilities: ~12 roundings, 72 over 6 layers,
    # adding like a random walk: sqrt(72) u ~ 0.033 per path. Once two paths differ (another attention kernel),
    # every later rounding differs too, so two bf16 paths differ by sqrt(2 * 72) u ~ 0.047. A token attending to the
    # wrong sequence, or a lost mask, is off by 0.3 or more.
    bf16_pair = math.sqrt(2 * 72) * 2 ** -8
    assert rel(varlen, padded) <= bf16_pair
    assert rel(varlen, want) <= bf16_pair
    # Against fp32 only one side rounds, but 716 tokens sample the tail of the spread: the same bound, as a cosine
    # (1 - cos = rel^2 / 2 for small rel).
    assert torch.nn.functional.cosine_similarity(varlen, fp32).min().item() >= 1 - bf16_pair ** 2 / 2
