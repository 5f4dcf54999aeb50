"""Tokenize: word pieces, ids, character offsets and word ids per text, as the model will read them (no network run)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from typing_extensions import TypedDict  # pydantic reads typing's only from Python 3.12

from bertkit.options import Options, option
from bertkit.tasks.base import Prepared, Task, closed
from bertkit.tokenizer import Encoding

if TYPE_CHECKING:
    from bertkit.model import Model


@dataclass(frozen=True)
class TokenizeOptions(Options):
    max_length: Optional[int] = option(None, "truncate to this many tokens, cut tokens reported", ge=1,
                                       default_help="the model's limit")


@closed
class TokenizeRow(TypedDict):
    text: str
    tokens: list[str]
    ids: list[int]
    offsets: list[list[int]]
    word_ids: list[Optional[int]]
    type_ids: list[int]
    special_tokens_mask: list[int]
    n_truncated: int


class Tokenize(Task):
    """Split texts into word pieces; pairs are encoded as [CLS] a [SEP] b [SEP]."""

    name = "tokenize"
    method = "tokenize"
    summary = "Show word pieces, ids and character offsets"
    Options = TokenizeOptions
    pair_name = "pairs"
    uses_network = False
    example = {"texts": ["Hello, BERT!"]}
    Response = list[TokenizeRow]

    def max_length(self, model: "Model", options: TokenizeOptions) -> int:
        return min(options.max_length or model.max_length, model.max_length)

    def present(self, model: "Model", prepared: Prepared, results: list, options: Any) -> list[Encoding]:
        return list(prepared.encodings)

    def payload(self, answer: list[Encoding], prepared: Prepared, options: Any) -> list[dict]:
        return [{"text": t, **e.to_dict()} for t, e in zip(prepared.texts, answer)]

    def human(self, payload: list[dict], prepared: Prepared) -> str:
        lines = []
        for row in payload:
            lines.append(" ".join(row["tokens"]))
            lines.append(" ".join(str(i) for i in row["ids"]))
            if row["n_truncated"]:
                lines.append(f"(truncated: {row['n_truncated']} tokens cut)")
        return "\n".join(lines)
