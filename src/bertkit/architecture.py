"""The architecture in numbers: every part of a BertNetwork with its parameter count, read from the network itself."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from torch import nn

from bertkit.modeling import BertNetwork, Layer


@dataclass(frozen=True)
class Part:
    """One group of parameters: where it sits (dotted, as `layers.3.attention.query`), how many, their shape."""

    name: str
    parameters: int
    shape: str
    note: str = ""


@dataclass
class Summary:
    """A network's shape and where its parameters are. `parts` counts every parameter exactly once (a tied matrix
    appears where it lives, and as 0 with a note where it is reused), so they add up to `total`."""

    hidden_size: int
    layers: int
    heads: int
    head_size: int
    ffn_size: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    total: int  # sum(p.numel() for p in network.parameters())
    parts: list[Part] = field(default_factory=list)
    head: dict[str, int] = field(default_factory=dict)  # one attention head's share of a layer: query, key, value, output

    def count(self, prefix: str) -> int:
        """Parameters of every part under `prefix` ("embeddings", "layers.3", "layers.3.attention", "" for all)."""
        return sum(p.parameters for p in self.parts if _under(p.name, prefix))

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        lines = [f"{self.layers} layers, hidden size {self.hidden_size}, {self.heads} heads of size {self.head_size}, "
                 f"feed-forward size {self.ffn_size}, vocabulary {self.vocab_size:,}, {self.max_positions} positions",
                 "", f"{'part':<28}{'parameters':>14}   {'share':>6}   shape"]

        def row(name: str, count: int, shape: str = "", share: bool = False, note: str = "") -> None:
            shown = f"{100 * count / self.total:5.1f}%" if share and self.total else ""
            lines.append(f"{name:<28}{count:>14,}   {shown:>6}   {shape}" + (f"  ({note})" if note else ""))

        groups = dict.fromkeys(p.name.split(".")[0] for p in self.parts)
        for group in groups:
            if group == "layers":
                self._layer_rows(row)
                continue
            row(group.replace("_", " "), self.count(group), share=True)
            for p in self.parts:
                if _under(p.name, group) and p.name != group:
                    row("  " + p.name[len(group) + 1:].replace("_", " ").replace(".", " "), p.parameters, p.shape,
                        note=p.note)
        row("total", self.total)
        return "\n".join(line.rstrip() for line in lines)

    def _layer_rows(self, row) -> None:
        per_layer = [self.count(f"layers.{i}") for i in range(self.layers)]
        alike = len(set(per_layer)) == 1
        shown = range(1) if alike else range(self.layers)
        if alike:
            row(f"layers 0-{self.layers - 1} ({self.layers} x {per_layer[0]:,})", sum(per_layer), share=True)
        for i in shown:
            prefix = f"layers.{i}"
            if not alike:
                row(f"layer {i}", per_layer[i], share=True)
            for p in self.parts:
                if _under(p.name, prefix):
                    row("  " + p.name[len(prefix) + 1:].replace(".", " ").replace("_", " "), p.parameters, p.shape,
                        note=p.note)
        h, d, hd = self.head, self.hidden_size, self.head_size
        row(f"  of which one head (of {self.heads})", h["query"] + h["key"] + h["value"],
            f"its query, key, value: 3 x ({d} x {hd} + {hd})")
        row("  and its share of output", h["output"], f"{hd} x {d} of the output projection")


def _under(name: str, prefix: str) -> bool:
    return not prefix or name == prefix or name.startswith(prefix + ".")


def summarize(network: BertNetwork) -> Summary:
    """Every parameter of `network` in its named part (embeddings, each layer's attention and feed-forward,
    the heads), with the network's shape; the parts add up to the parameter count."""
    c = network.config
    d, hd = c.hidden_size, c.head_dim
    parts: list[Part] = []
    emb = network.encoder.embeddings
    parts += [_embedding("embeddings.word", emb.word), _embedding("embeddings.position", emb.position),
              _embedding("embeddings.token_type", emb.token_type), _norm("embeddings.norm", emb.norm)]
    for i, layer in enumerate(network.encoder.layers):
        parts += _layer_parts(f"layers.{i}", layer)
    if network.pooler is not None:
        parts.append(_linear("pooler", network.pooler.dense))
    if network.mlm_head is not None:
        head = network.mlm_head
        parts += [_linear("mlm_head.transform", head.dense), _norm("mlm_head.norm", head.norm),
                  Part("mlm_head.decoder", head.bias.numel(), f"bias {head.bias.numel()}",
                       f"its {c.vocab_size} x {d} matrix is embeddings.word, tied: counted there")]
    if network.classifier is not None:
        parts.append(_linear("classifier", network.classifier.linear))
    total = sum(p.numel() for p in network.parameters())
    left = total - sum(p.parameters for p in parts)
    if left:  # a module this summary does not know: shown, so the parts still add up
        parts.append(Part("other", left, "", "not itemised"))
    head = {"query": d * hd + hd, "key": d * hd + hd, "value": d * hd + hd, "output": hd * d}
    return Summary(d, c.num_hidden_layers, c.num_attention_heads, hd, c.intermediate_size, c.vocab_size,
                   c.max_position_embeddings, c.type_vocab_size, total, parts, head)


def _layer_parts(prefix: str, layer: Layer) -> list[Part]:
    qkv, d = layer.attention.qkv, layer.attention.out.in_features
    # query, key and value are one stacked matrix (one matmul makes all three): each is a third of its rows.
    thirds = [Part(f"{prefix}.attention.{name}", qkv.weight[k * d:(k + 1) * d].numel() + qkv.bias[k * d:(k + 1) * d].numel(),
                   f"{d} x {d} + {d}") for k, name in enumerate(("query", "key", "value"))]
    return thirds + [_linear(f"{prefix}.attention.output", layer.attention.out),
                     _norm(f"{prefix}.attention.norm", layer.attention_norm),
                     _linear(f"{prefix}.feed_forward.up", layer.ffn.up), _linear(f"{prefix}.feed_forward.down", layer.ffn.down),
                     _norm(f"{prefix}.feed_forward.norm", layer.ffn_norm)]


def _linear(name: str, linear: nn.Linear) -> Part:
    n_in, n_out = linear.in_features, linear.out_features
    return Part(name, linear.weight.numel() + linear.bias.numel(), f"{n_in} x {n_out} + {n_out}")


def _embedding(name: str, table: nn.Embedding) -> Part:
    return Part(name, table.weight.numel(), f"{table.num_embeddings} x {table.embedding_dim}")


def _norm(name: str, norm: nn.LayerNorm) -> Part:
    return Part(name, norm.weight.numel() + norm.bias.numel(), f"LayerNorm {norm.weight.numel()} (scale, shift)")
