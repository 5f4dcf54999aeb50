"""Rerank: score how well each passage answers a query with a cross-encoder (a sentence-pair classifier), best first."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import torch
from typing_extensions import TypedDict  # pydantic reads typing's only from Python 3.12

from bertkit.batching import Batch
from bertkit.options import REQUIRED, option
from bertkit.tasks.base import Head, Item, Prepared, Task, closed
from bertkit.terminal import shown
from bertkit.windows import LongOptions, weights

if TYPE_CHECKING:
    from bertkit.model import Model


@dataclass(frozen=True)
class RerankOptions(LongOptions):
    query: str = option(REQUIRED, "the query the passages are scored against", short="-q", shared=False)
    top_k: Optional[int] = option(None, "keep the best K passages", ge=1, shared=False, default_help="all of them")
    raw_scores: bool = option(False, "return the classifier's logit instead of a probability", shared=False)
    return_text: bool = option(False, "include each passage's text in the answer", shared=False)


@closed
class Ranked(TypedDict, total=False):
    index: int  # the passage's position in the request
    score: float
    text: str  # only with return_text
    windows: int  # sequences the passage was read in (more than 1 only under long="chunk")


class Rerank(Task):
    """Each passage scored against the query by a cross-encoder, best first: `[{index, score}]`.

    The model is a sentence-pair classifier reading [CLS] query [SEP] passage [SEP] — one trained by
    `bertkit train --pair-column` on (query, passage, relevant?) rows, or any BERT cross-encoder in
    Hugging Face layout. With one output the score is its sigmoid; with several, the probability of
    the last label (the "relevant" class of a binary classifier). A long passage is cut into windows
    that each keep the whole query (long="chunk"); its score is the best window's by default (max).
    """

    name = "rerank"
    method = "rerank"
    summary = "Order passages by how well they answer a query (a cross-encoder)"
    Options = RerankOptions
    head = Head("classifier", "classifier head", "rerank needs a cross-encoder: train one with `bertkit train "
                "--pair-column` or pass a BERT cross-encoder folder (--model DIR)")
    leading = ("query", "texts")
    aggregations = ("max", "mean", "first")
    window_segment = 1  # the passage is cut; the query stays whole in every window
    example = {"query": "What is the capital of France?", "texts": ["Paris is the capital of France.",
                                                                     "Berlin is in Germany."]}
    Response = list[Ranked]

    def arrange(self, texts: list, pairs: list | None, options: RerankOptions) -> tuple[list, list]:
        return [options.query] * len(texts), texts

    def step(self, model: "Model", batch: Batch, items: list[Item], options: Any) -> list[torch.Tensor]:
        return list(model.network.classify(batch).float().cpu())

    def present(self, model: "Model", prepared: Prepared, results: list, options: RerankOptions) -> list[dict]:
        how = prepared.plan.aggregate
        ranked = []
        for i, (document, windows) in enumerate(zip(prepared.documents, prepared.per_input(results))):
            scores = torch.stack([_score(logits, options.raw_scores) for logits in windows])
            if how == "max" or len(windows) == 1:
                score = scores.max()
            elif how == "first":
                score = scores[0]
            else:
                w = torch.tensor(weights(document), dtype=scores.dtype)
                score = (scores * w).sum() / w.sum()
            row = {"index": i, "score": float(score), "windows": len(windows)}
            if options.return_text:
                row["text"] = prepared.texts[i]
            ranked.append(row)
        ranked.sort(key=lambda r: (-r["score"], r["index"]))
        return ranked[: options.top_k] if options.top_k else ranked

    def human(self, payload: list[dict], prepared: Prepared) -> str:
        return "\n".join(f"{r['score']:8.4f}  #{r['index']:<4} {shown(prepared.texts[r['index']][:80])}" for r in payload)

    def answer_size(self, model: "Model", prepared: Prepared, options: Any) -> int:
        return 64 * len(prepared.texts) + (sum(len(t) for t in prepared.texts) if options.return_text else 0)


def _score(logits: torch.Tensor, raw: bool) -> torch.Tensor:
    """A relevance score from a pair classifier's logits: the one logit's sigmoid, or the last label's probability."""
    if logits.numel() == 1:
        return logits[0] if raw else logits[0].sigmoid()
    return logits[-1] if raw else logits.softmax(dim=-1)[-1]
