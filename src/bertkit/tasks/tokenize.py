"""Tokenize: word pieces, ids, character offsets and word ids per text, as the model will read them (no network run)."""
from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from typing_extensions import TypedDict  # pydantic reads typing's only from Python 3.12

from bertkit.display import Results
from bertkit.options import option
from bertkit.tasks.base import Prepared, Task, closed
from bertkit.terminal import shown
from bertkit.tokenizer import Encoding
from bertkit.windows import Aggregation, LongOptions, content_length

if TYPE_CHECKING:
    from bertkit.model import Model


@dataclass(frozen=True)
class TokenizeOptions(LongOptions):
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
    windows: list[list[int]]  # [first, end) token positions of the text each sequence the model reads holds


class Tokenize(Task):
    """Split texts into word pieces; pairs are encoded as [CLS] a [SEP] b [SEP].

    Under long="chunk" the answer is the whole text's tokens, and `windows` says which of them each
    window the model reads holds; otherwise it is the one sequence the model reads.
    """

    name = "tokenize"
    method = "tokenize"
    summary = "Show word pieces, ids and character offsets"
    Options = TokenizeOptions
    pair_name = "pairs"
    uses_network = False
    aggregations = typing.get_args(Aggregation)  # it only shows the windows: any aggregation a later call uses is fine
    example = {"texts": ["Hello, BERT!"]}
    Response = list[TokenizeRow]

    def max_length(self, model: "Model", options: TokenizeOptions) -> int:
        return min(options.max_length or model.max_length, model.max_length)

    def present(self, model: "Model", prepared: Prepared, results: list, options: Any) -> list[Encoding]:
        return Results(d.full if len(d.windows) > 1 else d.windows[0] for d in prepared.documents)

    def payload(self, answer: list[Encoding], prepared: Prepared, options: Any) -> list[dict]:
        rows = []
        for text, encoding, document in zip(prepared.texts, answer, prepared.documents):
            if len(document.windows) > 1:  # content token j sits at position 1 + j of the whole text's tokens
                spans = [[1 + a, 1 + a + content_length(w)] for a, w in zip(document.starts, document.windows)]
            else:
                spans = [[1, 1 + content_length(encoding)]]
            rows.append({"text": text, **encoding.to_dict(), "windows": spans})
        return rows

    def answer_size(self, model: "Model", prepared: Prepared, options: Any) -> int:
        # Per token its piece, id, offsets, word id, type id and special flag: under chunk, the whole text's tokens.
        shown = self.present(model, prepared, [], options)
        return sum(len(t) + 100 + sum(len(piece) + 40 for piece in e.tokens) for t, e in zip(prepared.texts, shown))

    def human(self, payload: list[dict], prepared: Prepared) -> str:
        lines = []
        for row in payload:
            lines.append(" ".join(shown(t) for t in row["tokens"]))
            lines.append(" ".join(str(i) for i in row["ids"]))
            if row["n_truncated"]:
                lines.append(f"(truncated: {row['n_truncated']} tokens cut)")
            if len(row["windows"]) > 1:
                lines.append("windows (token positions): " + "  ".join(f"{a}-{b - 1}" for a, b in row["windows"]))
        return "\n".join(lines)
