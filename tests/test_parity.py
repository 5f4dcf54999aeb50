"""Our encoder and heads against transformers on the same checkpoints: within 1e-5 (fp32, max abs)."""
from __future__ import annotations

import pytest
import torch
from helpers import hf_padded_inputs, packed, random_sequences, unpad

from bertkit.checkpoint import load_network

TOL = 1e-5
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
    assert got.shape == want.shape
    assert (got - want).abs().max().item() < TOL


def test_minilm_pooler_and_all_layers_match(minilm_pair):
    ours, ref = minilm_pair
    ids, types = random_sequences([5, 40, 13], seed=3)
    batch = packed(ids, types)
    with torch.no_grad():
        layers = ours(batch, all_layers=True)
        pooled = ours.pooled(layers[-1], batch)
        out = ref(**hf_padded_inputs(ids, types), output_hidden_states=True)
    assert len(layers) == len(out.hidden_states) == 7
    for got, want in zip(layers, out.hidden_states):
        assert (got - unpad(want, ids)).abs().max().item() < TOL
    assert (pooled - out.pooler_output).abs().max().item() < TOL


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
    assert (got - want).abs().max().item() < TOL


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
    assert (got - want).abs().max().item() < TOL
    assert ours.config.label_names == ["negative", "neutral", "positive"]


def test_packing_is_invisible_each_sequence_alone_equals_batched(minilm_pair):
    """Packed dense layers + padded-view SDPA give what each text run on its own gives."""
    ours, _ = minilm_pair
    ids, types = random_sequences([3, 129, 1, 64, 512], seed=7)
    with torch.no_grad():
        together = ours(packed(ids, types))
        alone = torch.cat([ours(packed([s], [t])) for s, t in zip(ids, types)])
    assert (together - alone).abs().max().item() < TOL


def test_padded_sdpa_forced_equals_default_path(minilm_pair):
    ours, _ = minilm_pair
    ids, types = random_sequences([9, 30, 2], seed=8)
    batch = packed(ids, types)
    with torch.no_grad():
        default = ours(batch)
        forced = ours(batch, force_padded_attention=True)
    assert (default - forced).abs().max().item() < TOL


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
    assert (varlen - padded).abs().max().item() < 5e-2
    assert (varlen - want).abs().max().item() < 1e-1
    assert torch.nn.functional.cosine_similarity(varlen, fp32).min().item() > 0.999
