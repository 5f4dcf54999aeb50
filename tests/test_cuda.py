"""The CUDA paths end to end (bf16 autocast, varlen attention, fused AdamW): run where a GPU exists, skipped elsewhere."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import bertkit
from bertkit.train import TrainConfig, Trainer
from helpers import dataset, sentiment_rows

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

TEXTS = ["Hello, BERT!", "The capital of France is Paris.", "a " * 300, "x", "He sat by the river bank."]


def test_model_tasks_on_cuda_match_the_cpu_within_bf16(minilm_dir):
    cpu, gpu = bertkit.load(minilm_dir, device="cpu"), bertkit.load(minilm_dir, device="cuda")
    assert gpu.device.type == "cuda"
    for want, got in zip(cpu.hidden_states(TEXTS), gpu.hidden_states(TEXTS)):
        assert got.shape == want.shape
        assert torch.nn.functional.cosine_similarity(got.float().cpu(), want).min().item() > 0.99
    a, b = cpu.embed(TEXTS), gpu.embed(TEXTS)
    assert (np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min() > 0.999


def test_classifier_predictions_agree_on_cuda(tiny_cls_dir):
    cpu, gpu = bertkit.load(tiny_cls_dir, device="cpu"), bertkit.load(tiny_cls_dir, device="cuda")
    want, got = cpu.predict(TEXTS), gpu.predict(TEXTS)
    for w, g in zip(want, got):
        for label, score in w["scores"].items():
            assert abs(g["scores"][label] - score) < 2e-2


def test_trainer_learns_on_cuda_with_bf16_autocast(tiny_base_dir):
    model = bertkit.load(tiny_base_dir, device="cuda")
    train, evaluation = dataset(sentiment_rows(160, 1)), dataset(sentiment_rows(60, 2))
    config = TrainConfig(epochs=3, lr=5e-3, batch_size=16, max_length=32, warmup_ratio=0.1, seed=0)
    result = Trainer(model, train, evaluation, config, progress=False).fit()
    assert next(model.network.parameters()).device.type == "cuda"
    assert result.metrics["accuracy"] >= 0.9


def test_compiled_model_on_cuda_matches_eager_for_any_batch_shape(minilm_dir):
    eager, fast = bertkit.load(minilm_dir, device="cuda"), bertkit.load(minilm_dir, device="cuda").compile()
    for budget in (256, 4096):
        for want, got in zip(eager.hidden_states(TEXTS, batch_tokens=budget), fast.hidden_states(TEXTS, batch_tokens=budget)):
            assert torch.nn.functional.cosine_similarity(got, want).min().item() > 0.999
            assert (got - want).abs().max().item() < 5e-2
