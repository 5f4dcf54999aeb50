"""Test helpers: random id sequences and transformers' padded forward, cut back to packed form."""
from __future__ import annotations

import torch

from bertkit.batching import Batch, pack


def random_sequences(lengths, seed=0, pair_split=None):
    """[CLS] random ids [SEP] sequences of exactly the given lengths (length 1 is a lone [CLS])."""
    g = torch.Generator().manual_seed(seed)
    ids, types = [], []
    for n in lengths:
        body = torch.randint(1000, 30000, (max(n - 2, 0),), generator=g).tolist()
        seq = ([101] + body + [102])[:n]
        ids.append(seq)
        if pair_split:  # second half is segment B
            cut = n // 2
            types.append([0] * cut + [1] * (n - cut))
        else:
            types.append([0] * n)
    return ids, types


def hf_padded_inputs(ids, types):
    L = max(len(s) for s in ids)
    x = torch.zeros(len(ids), L, dtype=torch.long)
    t = torch.zeros_like(x)
    m = torch.zeros_like(x)
    for i, (s, ty) in enumerate(zip(ids, types)):
        x[i, : len(s)] = torch.tensor(s)
        t[i, : len(s)] = torch.tensor(ty)
        m[i, : len(s)] = 1
    return dict(input_ids=x, token_type_ids=t, attention_mask=m)


def unpad(padded: torch.Tensor, ids) -> torch.Tensor:
    return torch.cat([padded[i, : len(s)] for i, s in enumerate(ids)])


def packed(ids, types) -> Batch:
    return pack(ids, types)
