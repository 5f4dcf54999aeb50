"""Attention weights: for every text, each chosen layer's and head's attention probabilities over the text's tokens."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional, Union

from typing_extensions import TypedDict  # pydantic reads typing's only from Python 3.12

import numpy as np
import torch

from bertkit.batching import Batch
from bertkit.display import Results, attention_png
from bertkit.errors import OptionError
from bertkit.options import Options, option
from bertkit.tasks.base import JSON_NUMBER, Item, Prepared, Task, closed

if TYPE_CHECKING:
    from bertkit.model import Model

# Where a head's attention goes, in words: each is the share of a token's attention, averaged over the text's tokens.
FOCUS = {
    "cls": "[CLS]",  # the first token
    "sep": "[SEP]",  # the separator(s) closing each segment
    "self": "itself",
    "word": "its own word",  # every piece of the token's word, itself included (a special token: itself)
    "previous": "the previous token",
    "next": "the next token",
}


@dataclass(frozen=True)
class AttentionOptions(Options):
    layers: Optional[Union[int, list[int]]] = option(
        None, "the layers to return, counted from 0 (-1: the last)", short="--layer", split=",", metavar="L",
        default_help="every layer")
    heads: Optional[Union[int, list[int]]] = option(
        None, "the heads to return in each of those layers, counted from 0 (-1: the last)", short="--head", split=",",
        metavar="H", default_help="every head")


@dataclass
class AttentionWeights:
    """One text's attention: `weights[l, h, i, j]` is how much token i attends to token j in layer `layers[l]`,
    head `heads[h]`; each row sums to 1 over the text's own tokens."""

    text: str
    pair: str | None
    tokens: list[str]
    type_ids: list[int]  # 0 for the first text's tokens, 1 for the pair's
    layers: list[int]
    heads: list[int]
    weights: np.ndarray  # float32 [layers, heads, n_tokens, n_tokens]
    focus: dict[str, np.ndarray]  # FOCUS key -> [layers, heads]: where each head's attention goes, on average
    truncated: int = 0  # tokens cut from a text longer than the model reads

    def head(self, layer: int, head: int) -> np.ndarray:
        """The [n_tokens, n_tokens] matrix of one layer and head, by the model's numbering (as `layers` / `heads` hold)."""
        return self.weights[_position(self.layers, layer, "layer"), _position(self.heads, head, "head")]

    def to_dict(self) -> dict:
        return {"text": self.text, "pair": self.pair, "tokens": self.tokens, "type_ids": self.type_ids,
                "layers": self.layers, "heads": self.heads, "attention": self.weights.tolist(),
                "focus": {k: v.tolist() for k, v in self.focus.items()}, "truncated": self.truncated}

    def _repr_png_(self) -> bytes:  # a notebook shows one head's view, or the layer x head grid
        return attention_png(self)


def _position(chosen: list[int], number: int, what: str) -> int:
    if number not in chosen:
        raise OptionError(what, f"{number} was not asked for; this answer holds {what}s {', '.join(map(str, chosen))}")
    return chosen.index(number)


@closed
class AttentionRow(TypedDict):
    text: str
    pair: Optional[str]
    tokens: list[str]
    type_ids: list[int]
    layers: list[int]
    heads: list[int]
    attention: list[list[list[list[float]]]]  # [layers][heads][token][token]
    focus: dict[str, list[list[float]]]  # FOCUS key -> [layers][heads]
    truncated: int


class Attention(Task):
    """Per text, its tokens and the attention probabilities `[layers, heads, n_tokens, n_tokens]` of every chosen
    layer and head (all by default): row i is how token i spreads its attention over the text's tokens (it sums
    to 1; padding never takes part). The same numbers as transformers' `output_attentions=True` (eager attention).

    Each head's `focus` says where its attention goes on average: to [CLS], to [SEP], to the token itself, to its
    own word's pieces, to the previous or the next token; heads that specialise stand out there. Pairs are read
    as [CLS] a [SEP] b [SEP]. The answer grows with layers x heads x tokens squared: ask for the layers and heads
    you want to look at. One text's answer is a set of matrices, not a row, so there is no table or corpus mode.
    """

    name = "attention"
    method = "attention"
    summary = "Attention weights of every layer and head, per text"
    Options = AttentionOptions
    pair_name = "pairs"
    table = False  # matrices per text, not a value per row: no table files, no corpus mode
    example = {"texts": ["The cat sat on the mat."], "layers": [0], "heads": [0, 1]}
    Response = list[AttentionRow]
    smaller_answer = "fewer layers or heads (layers, heads), fewer texts, or shorter texts"

    def prepare(self, model: "Model", prepared: Prepared, options: AttentionOptions) -> None:
        chosen(model, options)  # an unknown layer or head fails before any work
        super().prepare(model, prepared, options)

    def step(self, model: "Model", batch: Batch, items: list[Item], options: AttentionOptions) -> list[torch.Tensor]:
        layers, heads = chosen(model, options)
        encoder, lengths = model.network.encoder, batch.lengths.tolist()
        kept: dict[int, list[torch.Tensor]] = {}  # layer -> per sequence [heads, n, n]
        x = encoder.embeddings(batch.input_ids, batch.positions, batch.token_type_ids)
        for number, layer in enumerate(encoder.layers[: max(layers) + 1]):  # later layers cannot change these
            context, probabilities = layer.attention.written_out(x, lengths)
            if number in layers:
                kept[number] = [p[heads].float().cpu() for p in probabilities]
            x = layer.after_attention(x, context)
        return [torch.stack([kept[number][b] for number in layers]) for b in range(len(items))]

    def present(self, model: "Model", prepared: Prepared, results: list, options: AttentionOptions) -> list[AttentionWeights]:
        layers, heads = chosen(model, options)
        pairs = prepared.pairs or [None] * len(prepared.texts)
        answers = []
        for text, pair, encoding, cut, (weights,) in zip(prepared.texts, pairs, prepared.encodings, prepared.truncated,
                                                          prepared.per_input(results)):
            weights = weights.numpy()
            answers.append(AttentionWeights(text, pair, list(encoding.tokens), list(encoding.type_ids), layers, heads,
                                            weights, focus(weights, encoding, model.tokenizer.cls_id,
                                                           model.tokenizer.sep_id), cut))
        return Results(answers)

    def payload(self, answer: list[AttentionWeights], prepared: Prepared, options: Any) -> list[dict]:
        return [a.to_dict() for a in answer]

    def answer_size(self, model: "Model", prepared: Prepared, options: AttentionOptions) -> int:
        # layers x heads x tokens²: one 100-token text is 72 x 10,000 numbers on MiniLM, 17 MB of JSON.
        layers, heads = chosen(model, options)
        per_head = [len(item) ** 2 + len(FOCUS) for item in prepared.items]
        words = sum(2 * len(t) + 200 for t in prepared.texts) + sum(len(p) for p in prepared.pairs or [])
        return words + sum(30 * len(item) for item in prepared.items) + len(layers) * len(heads) * sum(per_head) * JSON_NUMBER

    def human(self, payload: list[dict], prepared: Prepared) -> str:
        lines = []
        for row in payload:
            lines.append(" ".join(row["tokens"]))
            one = len(row["layers"]) == 1 and len(row["heads"]) == 1
            for a, layer in enumerate(row["layers"]):
                for b, head in enumerate(row["heads"]):
                    shares = "  ".join(f"{FOCUS[k]} {row['focus'][k][a][b]:.2f}" for k in FOCUS)
                    lines.append(f"  layer {layer} head {head}: {shares}")
                    if one:
                        lines += _matrix(row["tokens"], row["attention"][a][b])
            if not one:
                lines.append("  (one layer and head, --layer L --head H, prints its matrix; --json gives every value)")
        return "\n".join(lines)

    def plot(self, answer: list[AttentionWeights], path: str, options: AttentionOptions) -> None:
        from bertkit.plots.attention import plot_attention

        plot_attention(answer, path)


def chosen(model: "Model", options: AttentionOptions) -> tuple[list[int], list[int]]:
    """The layers and heads asked for, as the model numbers them (0 first); unknown ones are an OptionError."""
    config = model.config
    return (_numbers(options.layers, config.num_hidden_layers, "layers"),
            _numbers(options.heads, config.num_attention_heads, "heads"))


def _numbers(given: int | list[int] | None, count: int, name: str) -> list[int]:
    if given is None:
        return list(range(count))
    values = [given] if isinstance(given, int) else list(given)
    if not values:
        raise OptionError(name, f"is empty; give at least one, or leave {{name}} out for all {count}")
    bad = [v for v in values if not -count <= v < count]
    if bad:
        raise OptionError(name, f"has {bad[0]}, which this model does not have: it has {name} 0 to {count - 1} "
                                f"(-1 is the last)")
    return [v % count for v in values]


def focus(weights: np.ndarray, encoding, cls_id: int, sep_id: int) -> dict[str, np.ndarray]:
    """Per layer and head, the share of a token's attention (averaged over the tokens) each FOCUS target gets."""
    n = weights.shape[-1]
    ids = np.asarray(encoding.ids)
    # A word is known by its segment and number (a pair numbers its words afresh); a special token is its own word.
    word = np.array([-1 - i if w is None else t * n + w for i, (w, t) in enumerate(zip(encoding.word_ids, encoding.type_ids))])
    same_word = (word[:, None] == word[None, :]).astype(weights.dtype)
    eye = np.eye(n, dtype=weights.dtype)
    rows = {
        "cls": weights[..., ids == cls_id].sum(-1),
        "sep": weights[..., ids == sep_id].sum(-1),
        "self": (weights * eye).sum(-1),
        "word": (weights * same_word).sum(-1),
        "previous": (weights * np.eye(n, k=-1, dtype=weights.dtype)).sum(-1),
        "next": (weights * np.eye(n, k=1, dtype=weights.dtype)).sum(-1),
    }
    # The first token has no previous one and the last no next one: average over the tokens that do.
    spans = {"previous": slice(1, None), "next": slice(None, n - 1)}
    return {k: (v[..., spans.get(k, slice(None))].mean(-1) if n > 1 or k not in spans
                else np.zeros(v.shape[:-1], dtype=v.dtype)) for k, v in rows.items()}


def _matrix(tokens: list[str], rows: list[list[float]]) -> list[str]:
    width = max(6, *(len(t) for t in tokens))
    lines = ["    " + " " * width + " ".join(f"{t[:6]:>6}" for t in tokens)]
    lines += [f"    {t:<{width}}" + " ".join(f"{v:6.2f}" for v in row) for t, row in zip(tokens, rows)]
    return lines
