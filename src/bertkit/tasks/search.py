"""Search: embed queries like the index's rows were embedded, find their nearest rows, optionally rerank with a cross-encoder."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import torch
from typing_extensions import TypedDict  # pydantic reads typing's only from Python 3.12

from bertkit.batching import Batch
from bertkit.index import EXACT_BELOW, check_model, open_index
from bertkit.options import REQUIRED, option
from bertkit.tasks.base import Item, Prepared, Task, closed
from bertkit.tasks.registry import get
from bertkit.terminal import shown
from bertkit.windows import LongOptions

if TYPE_CHECKING:
    from bertkit.model import Model


@dataclass(frozen=True)
class SearchOptions(LongOptions):
    index: str = option(REQUIRED, "the index folder to search (made by `bertkit index build`)", positional=True,
                        server=False)
    top_k: int = option(10, "hits per query", ge=1, shared=False)
    exact: Optional[bool] = option(None, "compare with every row (true) or search the graph (false)", shared=False,
                                   default_help=f"every row below {EXACT_BELOW:,} rows, the graph above")
    rerank: Optional[str] = option(None, "a cross-encoder (folder or hub id) that reorders the best `candidates` hits",
                                   server=False, shared=False)
    candidates: Optional[int] = option(None, "hits the cross-encoder rescores", ge=1, shared=False,
                                       default_help="5 x top_k")


@closed
class SearchHit(TypedDict, total=False):
    id: str
    score: float  # cosine (or inner product) with the query
    text: Optional[str]
    metadata: Optional[dict[str, Any]]
    rerank_score: float  # only with a cross-encoder


@closed
class SearchRow(TypedDict):
    query: str
    hits: list[SearchHit]


class Search(Task):
    """For each query, the index rows nearest to it, best first: `[{id, score, text, metadata}]`.

    Queries are embedded with the index's own pooling and normalisation (the index records them,
    and the model: searching with another model is an error). With `rerank`, a cross-encoder
    rescores the best `candidates` hits and reorders them (`rerank_score`).
    """

    name = "search"
    method = "search"
    summary = "Find the indexed texts nearest to each query"
    Options = SearchOptions
    input_name = "queries"
    leading = ("index", "queries")
    aggregations = ("mean", "max", "first")
    example = {"queries": ["a film about friendship"], "top_k": 5}
    Response = list[SearchRow]

    def prepare(self, model: "Model", prepared: Prepared, options: SearchOptions) -> None:
        check_model(open_index(options.index).manifest, model)  # the fingerprint is the model's, taken once
        super().prepare(model, prepared, options)

    def step(self, model: "Model", batch: Batch, items: list[Item], options: SearchOptions) -> list[torch.Tensor]:
        return get("embed").step(model, batch, items, self._embed_options(options))

    def present(self, model: "Model", prepared: Prepared, results: list, options: SearchOptions) -> list[list[dict]]:
        index = open_index(options.index)
        vectors = get("embed")._per_text(model, prepared, results, self._embed_options(options))
        found = max(options.top_k, self.candidates(options)) if options.rerank else options.top_k
        hits = [[h.to_dict() for h in row] for row in index.search(torch.stack(vectors).numpy(), found,
                                                                   exact=options.exact)]
        if options.rerank:
            hits = [_reranked(options.rerank, model, query, row, options.top_k)
                    for query, row in zip(prepared.texts, hits)]
        return hits

    def payload(self, answer: list[list[dict]], prepared: Prepared, options: Any) -> list[dict]:
        return [{"query": q, "hits": hits} for q, hits in zip(prepared.texts, answer)]

    def human(self, payload: list[dict], prepared: Prepared) -> str:
        lines = []
        for row in payload:
            lines.append(shown(row["query"]))
            for hit in row["hits"]:
                extra = f"  rerank {hit['rerank_score']:.4f}" if "rerank_score" in hit else ""
                lines.append(f"  {hit['score']:.4f}{extra}  {shown(hit['id'])}  {shown((hit['text'] or '')[:80])}")
        return "\n".join(lines)

    def answer_size(self, model: "Model", prepared: Prepared, options: SearchOptions) -> int:
        return 64 * len(prepared.texts) + len(prepared.texts) * options.top_k * 1024  # a hit carries its text

    # -- where the model and the index come from ---------------------------------------------------
    server_needs = "--index INDEX (an index built with this model)"

    def server_options(self, settings: Any) -> dict | None:
        return {"index": settings.index} if getattr(settings, "index", None) else None

    def model_for(self, options: SearchOptions) -> str:
        """The model to load when none is given: the one the index was built with."""
        return open_index(options.index).manifest.model

    @staticmethod
    def candidates(options: SearchOptions) -> int:
        return options.candidates or 5 * options.top_k

    @staticmethod
    def _embed_options(options: SearchOptions):
        from bertkit.tasks.embed import EmbedOptions

        manifest = open_index(options.index).manifest
        return EmbedOptions(pooling=manifest.pooling, normalize=manifest.normalize)


# -- cross-encoders, loaded once per process (indexes are opened once by bertkit.index.open_index) -----------
_CROSS: dict[tuple[str, str], "Model"] = {}
_LOCK = threading.Lock()


def _reranked(cross_name: str, model: "Model", query: str, hits: list[dict], top_k: int) -> list[dict]:
    from bertkit.model import load

    key = (cross_name, str(model.device))
    with _LOCK:
        if key not in _CROSS:
            _CROSS[key] = load(cross_name, device=model.device)
    ranked = _CROSS[key].rerank(query, [h["text"] or "" for h in hits], top_k=top_k)
    return [hits[r["index"]] | {"rerank_score": r["score"]} for r in ranked]
