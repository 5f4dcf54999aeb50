"""Packing and the token-budget planner: nothing padded, budgets kept, every example exactly once."""
from __future__ import annotations

import random

import pytest
import torch

from bertkit.batching import group_by_budget, pack


def test_pack_layout():
    batch = pack([[101, 5, 102], [101, 102], [101]], [[0, 0, 0], [0, 1], [0]], labels=[1, 0, 2], index=[7, 3, 5])
    assert batch.input_ids.tolist() == [101, 5, 102, 101, 102, 101]
    assert batch.cu_seqlens.tolist() == [0, 3, 5, 6] and batch.cu_seqlens.dtype == torch.int32
    assert batch.positions.tolist() == [0, 1, 2, 0, 1, 0]
    assert batch.max_seqlen == 3 and batch.num_tokens == 6 and batch.num_sequences == 3
    assert batch.first_token_index.tolist() == [0, 3, 5]
    assert batch.sequence_of_token.tolist() == [0, 0, 0, 1, 1, 2]
    assert batch.labels.tolist() == [1, 0, 2] and batch.index == [7, 3, 5]
    assert [t.tolist() for t in batch.split_per_sequence(batch.input_ids)] == [[101, 5, 102], [101, 102], [101]]


def test_pack_multilabel_labels_are_float():
    batch = pack([[1, 2], [3]], labels=[[1, 0, 1], [0, 0, 1]])
    assert batch.labels.dtype == torch.float32 and batch.labels.shape == (2, 3)


def test_pack_refuses_empty():
    with pytest.raises(ValueError):
        pack([[1], []])


@pytest.mark.parametrize("shuffle", [False, True])
def test_plan_respects_budget_and_covers_everything_once(shuffle):
    rng = random.Random(0)
    lengths = [rng.randint(1, 512) for _ in range(1000)]
    groups = group_by_budget(lengths, max_tokens=4096, max_batch_size=64, shuffle=shuffle, seed=3)
    flat = sorted(i for b in groups for i in b)
    assert flat == list(range(1000))
    for b in groups:
        assert len(b) <= 64
        assert len(b) == 1 or max(lengths[i] for i in b) * len(b) <= 4096
    if not shuffle:  # sorted: padding to the longest in each batch wastes little
        real = sum(lengths)
        padded = sum(max(lengths[i] for i in b) * len(b) for b in groups)
        assert padded / real < 1.05


def test_plan_shuffle_is_seeded():
    lengths = list(range(1, 300))
    a = group_by_budget(lengths, 1024, shuffle=True, seed=1)
    assert a == group_by_budget(lengths, 1024, shuffle=True, seed=1)
    assert a != group_by_budget(lengths, 1024, shuffle=True, seed=2)


def test_plan_single_example_over_budget_gets_its_own_batch():
    assert group_by_budget([600, 3], max_tokens=512) == [[1], [0]]
