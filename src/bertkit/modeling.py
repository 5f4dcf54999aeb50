"""BERT in plain PyTorch, read top to bottom: embeddings, post-LayerNorm layers, the encoder, the heads.

Every module works on *packed* tokens: a tensor [T, hidden] holding all the batch's sequences end
to end, with no padding (see batching.Batch). Only attention has to know where one sequence ends
and the next begins, and it asks attention.py for that.
"""
from __future__ import annotations

from functools import partial
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from bertkit.attention import AttentionLayout, attend
from bertkit.batching import Batch
from bertkit.config import BertConfig
from bertkit.errors import BertkitError

ACTIVATIONS = {
    "gelu": F.gelu,  # the exact, erf-based GELU of the original BERT
    "gelu_new": partial(F.gelu, approximate="tanh"),
    "gelu_pytorch_tanh": partial(F.gelu, approximate="tanh"),
    "relu": F.relu,
}


# 1. Embeddings: a token's vector is the sum of what it is, where it is, and which segment it is in.
class Embeddings(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.word = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        """[T] ids → [T, hidden]. It takes the id tensors rather than a Batch so that it can be compiled
        (accel) without guarding on the batch's host-side fields."""
        x = self.word(input_ids) + self.position(positions) + self.token_type(token_type_ids)
        return self.dropout(self.norm(x))


# 2. Self-attention: one matmul makes queries, keys and values for all heads at once; then, in every
#    head, each token takes a softmax-weighted mix of its own sequence's values: its context.
class SelfAttention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)  # [query; key; value] stacked
        # Blends the heads' contexts. Layer applies it as the first step after attention (as
        # transformers' BertSelfOutput does), so that step is dense arithmetic like the rest of the layer.
        self.out = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_p = config.attention_probs_dropout_prob

    def forward(self, x: torch.Tensor, layout: AttentionLayout) -> torch.Tensor:
        """Each token's contexts, the heads side by side: [T, hidden] (before `out`)."""
        return self.context(self.qkv(x), layout)

    def context(self, qkv: torch.Tensor, layout: AttentionLayout) -> torch.Tensor:
        """`forward` after the projection: split `qkv` = self.qkv(x) into heads, attend within each sequence."""
        q, k, v = self.split_heads(qkv)
        context = attend(q, k, v, layout, self.dropout_p if self.training else 0.0)
        return context.reshape(qkv.shape[0], self.num_heads * self.head_dim)

    def split_heads(self, qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[T, 3 * hidden] -> queries, keys and values, each [T, heads, head_dim]."""
        return qkv.view(qkv.shape[0], 3, self.num_heads, self.head_dim).unbind(dim=1)

    def written_out(self, x: torch.Tensor, lengths: Sequence[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """`forward` with the attention probabilities formed explicitly, one sequence at a time.

        Returns the context [T, hidden] (as `forward`) and, per sequence of n tokens, its probabilities
        [heads, n, n]: row i is how token i spreads its attention over its own sequence's tokens.
        The kernels `forward` uses never build these matrices; looking inside does (bertkit.tasks.attention).
        """
        q, k, v = self.split_heads(self.qkv(x))
        sizes = list(lengths)
        probabilities, contexts = [], []
        for q1, k1, v1 in zip(q.split(sizes), k.split(sizes), v.split(sizes)):
            q1, k1, v1 = (t.transpose(0, 1) for t in (q1, k1, v1))  # one sequence: [heads, n, head_dim]
            scores = (q1 @ k1.transpose(1, 2)).float() * self.head_dim ** -0.5  # float32 whatever the weights are
            p = torch.softmax(scores, dim=-1)
            probabilities.append(p)
            mixed = F.dropout(p, self.dropout_p, self.training).to(v1.dtype) @ v1  # [heads, n, head_dim]
            contexts.append(mixed.transpose(0, 1).reshape(-1, self.num_heads * self.head_dim))
        return torch.cat(contexts), probabilities


# 3. Feed-forward: widen, apply the non-linearity, narrow back.
class FeedForward(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.up = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = ACTIVATIONS[config.hidden_act]
        self.down = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.act(self.up(x)))


# 4. A layer: attention, then everything else. Each sub-block's output is dropped out, added to its
#    input, then normalised (post-LN).
class Layer(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = SelfAttention(config)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn = FeedForward(config)
        self.ffn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, layout: AttentionLayout) -> torch.Tensor:
        return self.after_attention(x, self.attention(x, layout))

    def after_attention(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """The rest of the layer, given its input `x` and the attention's `context`.

        A method of its own because it is all dense [T, hidden] arithmetic, unlike attention whose
        shapes depend on the batch's sequences: accel compiles it on its own.
        """
        x = self.attention_norm(x + self.dropout(self.attention.out(context)))
        return self.ffn_norm(x + self.dropout(self.ffn(x)))


# 5. The encoder: embeddings followed by N identical layers.
class Encoder(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(Layer(config) for _ in range(config.num_hidden_layers))

    def forward(self, batch: Batch, all_layers: bool = False, force_padded_attention: bool = False):
        """The last layer's states [T, hidden]; with `all_layers`, a list of num_layers + 1 of them
        (the embedding output first, as in transformers' `hidden_states`)."""
        layout = AttentionLayout.for_batch(batch, force_padded=force_padded_attention)
        x = self.embeddings(batch.input_ids, batch.positions, batch.token_type_ids)
        states = [x]
        for layer in self.layers:
            x = layer(x, layout)
            if all_layers:
                states.append(x)
        return states if all_layers else x


# 6. Heads. The pooler turns each sequence's [CLS] vector into a sentence summary.
class Pooler(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, cls_states: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(cls_states))


class MaskedLMHead(nn.Module):
    """Predicts the vocabulary at chosen positions; its output matrix *is* the word-embedding matrix."""

    def __init__(self, config: BertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = ACTIVATIONS[config.hidden_act]
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.word_embeddings = [word_embeddings]  # a list, so the tied matrix is not registered twice
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.act(self.dense(states)))
        return F.linear(h, self.word_embeddings[0].weight, self.bias)


class SequenceClassifier(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(p)
        self.linear = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(pooled))


# 7. The whole network: the encoder plus whichever heads the checkpoint has.
class BertNetwork(nn.Module):
    # Why this network may only run inference, e.g. its weights were rounded for speed (None: it may
    # do anything). One line saying what to do instead; training and saving refuse with it.
    inference_only: str | None

    def __init__(self, config: BertConfig, pooler: bool = True, mlm_head: bool = False, classifier: bool = False):
        super().__init__()
        self.config = config
        self.inference_only = None
        self.encoder = Encoder(config)
        self.pooler = Pooler(config) if pooler or classifier else None
        self.mlm_head = MaskedLMHead(config, self.encoder.embeddings.word) if mlm_head else None
        self.classifier = SequenceClassifier(config) if classifier else None
        self.apply(self._init_weights)

    @property
    def heads(self) -> list[str]:
        return [name for name in ("pooler", "mlm_head", "classifier") if getattr(self, name) is not None]

    def forward(self, batch: Batch, **kwargs) -> torch.Tensor:
        return self.encoder(batch, **kwargs)

    def pooled(self, states: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The pooler's output for each sequence, from its first ([CLS]) token's state: [B, hidden]."""
        return self.pooler(states[batch.first_token_index])

    def logits(self, pooled: torch.Tensor) -> torch.Tensor:
        """Classifier logits [B, num_labels] from the pooled vectors."""
        return self.classifier(pooled)

    def classify(self, batch: Batch) -> torch.Tensor:
        """Classifier logits for each sequence: [B, num_labels]."""
        return self.logits(self.pooled(self.encoder(batch), batch))

    def train(self, mode: bool = True) -> "BertNetwork":
        """nn.Module.train, refused while `inference_only` gives a reason."""
        if mode and self.inference_only:
            raise BertkitError(self.inference_only)
        return super().train(mode)

    def add_classifier(self, id2label: dict[int, str], problem_type: str | None = None) -> None:
        """Put a freshly initialised classifier (and a pooler, if missing) on top of the encoder."""
        self.config.id2label = dict(id2label)
        self.config.problem_type = problem_type
        if self.pooler is None:
            self.pooler = Pooler(self.config)
            self.pooler.apply(self._init_weights)
        self.classifier = SequenceClassifier(self.config)
        self.classifier.apply(self._init_weights)
        device = self.encoder.embeddings.word.weight.device
        self.to(device)

    def add_mlm_head(self) -> None:
        """Put a freshly initialised masked-LM head on the encoder: BERT's recipe, its decoder the word embeddings."""
        self.mlm_head = MaskedLMHead(self.config, self.encoder.embeddings.word)  # bias starts at zero
        self.mlm_head.apply(self._init_weights)
        self.mlm_head.to(self.encoder.embeddings.word.weight)  # its device and dtype

    def _init_weights(self, module: nn.Module) -> None:
        # The same recipe as the original BERT, so fresh heads train like transformers' do.
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
