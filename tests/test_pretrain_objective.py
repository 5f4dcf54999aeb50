"""The masked-LM objective against transformers: the loss of one masked batch equals BertForMaskedLM's with the same
labels, and a freshly added head is BERT's initialisation, saved as a BertForMaskedLM transformers loads with equal
logits (and our fill-mask runs on)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import bertkit
from bertkit.checkpoint import load_network, save_network
from bertkit.pretrain import Masker, MaskedLM, ensure_mlm_head, masked_batch, masked_lm_loss, pack_documents, tokenize_documents
from bertkit.tokenizer import Tokenizer
from helpers import TINY_TERMS, assert_fp32_close, fp32_tol

TEXTS = [
    "The quick brown fox jumps over the lazy dog while the farmer watches from his unbelievably small tractor.",
    "Masked language models learn by restoring hidden words from their context.",
    "Tokenization splits rare words into pieces; whole-word masking hides every piece of a word together.",
    "Paris is the capital of France, and Berlin is the capital of Germany.",
] * 3


def masked_windows(folder, max_length=40, seed=0):
    tokenizer = Tokenizer.from_dir(folder)
    windows = pack_documents(tokenize_documents(tokenizer, TEXTS), max_length, tokenizer.cls_id, tokenizer.sep_id)
    return masked_batch(windows, range(len(windows)), Masker.for_tokenizer(tokenizer), seed=seed, epoch=0)


def hf_inputs(batch):
    """The masked windows padded for transformers, with labels -100 everywhere but the masked positions."""
    seqs = batch.batch.split_per_sequence(batch.batch.input_ids)
    longest = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), longest, dtype=torch.long)
    attention = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    flat_labels = torch.full_like(batch.batch.input_ids, -100)
    flat_labels[batch.positions] = batch.targets
    for i, (s, lab) in enumerate(zip(seqs, batch.batch.split_per_sequence(flat_labels))):
        ids[i, : len(s)], attention[i, : len(s)], labels[i, : len(s)] = s, 1, lab
    return dict(input_ids=ids, attention_mask=attention, token_type_ids=torch.zeros_like(ids), labels=labels)


def test_the_loss_equals_transformers_bert_for_masked_lm(tiny_mlm_dir):
    from transformers import BertForMaskedLM

    batch = masked_windows(tiny_mlm_dir)
    assert batch.num_masked > 20 and batch.batch.num_sequences > 1
    network = load_network(tiny_mlm_dir)
    with torch.no_grad():
        ours = masked_lm_loss(MaskedLM(network)(batch), batch.targets)
    hf = BertForMaskedLM.from_pretrained(tiny_mlm_dir).eval()
    with torch.no_grad():
        out = hf(**hf_inputs(batch))
    masked_logits = out.logits[hf_inputs(batch)["labels"] != -100]
    # Each token's loss is logsumexp(logits) - its logit: a logit's float32 drift (2 layers, embeddings, the head's
    # transform and decoder: depth 5) twice, the sum over the vocabulary once; the mean over M adds sqrt(M) ulps.
    scale = float(masked_logits.abs().max())
    tol = 2 * fp32_tol(scale, TINY_TERMS, depth=5) + fp32_tol(1.0, hf.config.vocab_size) + fp32_tol(float(out.loss), batch.num_masked)
    assert abs(float(ours) - float(out.loss)) <= tol, (float(ours), float(out.loss), tol)
    assert math.isclose(float(ours), math.log(hf.config.vocab_size), rel_tol=0.2)  # a random head: near-uniform


def test_a_new_head_is_berts_initialisation_and_saves_as_bert_for_masked_lm(tiny_base_dir, tmp_path):
    from transformers import BertForMaskedLM

    model = bertkit.load(tiny_base_dir, device="cpu")
    network = model.network
    assert network.mlm_head is None
    said = ensure_mlm_head(network)
    assert said and "new one" in said and "\n" not in said
    assert ensure_mlm_head(network) is None  # a head present is kept
    head = network.mlm_head
    assert torch.equal(head.bias, torch.zeros_like(head.bias))
    assert torch.equal(head.norm.weight, torch.ones_like(head.norm.weight)) and not head.norm.bias.any()
    assert not head.dense.bias.any()
    std = network.config.initializer_range
    assert abs(float(head.dense.weight.detach().std()) - std) < 0.1 * std
    assert head.word_embeddings[0] is network.encoder.embeddings.word  # the decoder is the embedding matrix
    with torch.no_grad():  # a trained head's bias is not zero: make sure it is saved and read back under its name
        head.bias.normal_(0, 0.5)

    folder = model.save(tmp_path / "mlm")
    hf, info = BertForMaskedLM.from_pretrained(folder, output_loading_info=True)
    assert not info["missing_keys"] and not info["mismatched_keys"]
    hf.eval()
    batch = masked_windows(folder)
    with torch.no_grad():
        ours = MaskedLM(network.eval())(batch)
        theirs = hf(**{k: v for k, v in hf_inputs(batch).items() if k != "labels"}).logits
    theirs = torch.cat([t[: len(s)] for t, s in zip(theirs, batch.batch.split_per_sequence(batch.batch.input_ids))])
    assert_fp32_close(ours, theirs[batch.positions], terms=TINY_TERMS, depth=5, what="MLM logits")

    reloaded = bertkit.load(folder, device="cpu")
    assert reloaded.network.mlm_head is not None
    assert torch.equal(reloaded.network.mlm_head.bias, head.bias)
    assert len(reloaded.fill_mask(["The capital of France is [MASK]."], top_k=3)[0][0]) == 3


def test_a_saved_network_round_trips(tiny_base_dir, tmp_path):
    network = load_network(tiny_base_dir)
    ensure_mlm_head(network)
    save_network(network, tmp_path / "n")
    again = load_network(tmp_path / "n")
    for (name, a), (_, b) in zip(network.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_the_loss_is_float32_cross_entropy_of_the_masked_rows(reduction):
    logits = torch.randn(7, 11, dtype=torch.bfloat16)
    targets = torch.tensor([0, 3, 10, 2, 2, 5, 9])
    got = masked_lm_loss(logits, targets, reduction)
    assert got.dtype == torch.float32
    want = -torch.log_softmax(logits.float(), -1)[torch.arange(7), targets]
    assert torch.allclose(got, want.sum() if reduction == "sum" else want.mean())
    assert np.isfinite(float(masked_lm_loss(logits[:0], targets[:0], "sum")))
