"""modeling.py's network read from padded [B, L] inputs, as ONNX consumers feed it: the graph that export traces."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bertkit.attention import AttentionLayout
from bertkit.modeling import BertNetwork

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class PaddedNetwork(nn.Module):
    """The same Embeddings and Layer modules, on a padded batch: `last_hidden_state` [B, L, hidden], then the
    classifier's `logits` [B, labels] or the pooled `sentence_embedding` [B, hidden] (`pooling`, `normalize`)."""

    def __init__(self, network: BertNetwork, pooling: str | None = None, normalize: bool = False):
        super().__init__()
        self.network, self.pooling, self.normalize = network, pooling, normalize

    @property
    def output_names(self) -> list[str]:
        second = "logits" if self.network.classifier is not None else "sentence_embedding"
        return ["last_hidden_state", second]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, L = input_ids.shape
        encoder = self.network.encoder
        # A token's position inside its own sequence, as packed batches count it (right or left padding alike).
        positions = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)
        x = encoder.embeddings(input_ids, positions, token_type_ids)
        x = x.reshape(B * L, x.shape[-1])
        layout = AttentionLayout.padded(attention_mask)
        for layer in encoder.layers:
            x = layer(x, layout)
        states = x.reshape(B, L, x.shape[-1])
        if self.network.classifier is not None:
            return states, self.network.logits(self.network.pooler(states[:, 0]))
        vectors = pool_padded(states, attention_mask, self.pooling or "mean")
        return states, F.normalize(vectors, dim=-1) if self.normalize else vectors


def pool_padded(states: torch.Tensor, attention_mask: torch.Tensor, how: str) -> torch.Tensor:
    """bertkit.pooling.pool's poolings on a padded batch [B, L, d]: padding never counts."""
    if how == "cls":
        return states[:, 0]
    real = attention_mask.unsqueeze(-1).to(states.dtype)
    if how == "max":
        return states.masked_fill(real == 0, -math.inf).amax(dim=1)
    lengths = real.sum(dim=1)
    sums = (states * real).sum(dim=1)
    return sums / (lengths.sqrt() if how == "mean_sqrt_len" else lengths)
