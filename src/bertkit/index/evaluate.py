"""How good a search is: recall@k, MRR@10 and nDCG@10 against known relevant ids, and the graph's recall against exact search."""
from __future__ import annotations

import dataclasses
import math
import os
from typing import TYPE_CHECKING, Any, Sequence

from bertkit.errors import BertkitError

if TYPE_CHECKING:
    from bertkit.model import Model


def read_qrels(path: str | os.PathLike) -> tuple[list[str], list[set[str]]]:
    """Queries and their relevant ids from a table with columns `query` and `relevant` (ids joined by commas, or a list)."""
    from bertkit.data import read_table
    from bertkit.data.columns import pick_column

    frame = read_table(path)
    query = pick_column(frame.columns, None, ("query", "question"), "query", "eval", where=str(path))
    relevant = pick_column(frame.columns, None, ("relevant", "relevant_ids", "ids", "id"), "relevant ids", "eval",
                           where=str(path))
    queries, wanted = [], []
    for q, ids in zip(frame[query], frame[relevant]):
        if not isinstance(q, str) or not q.strip():
            raise BertkitError(f"{path}: every row needs a query; row {len(queries)} has none")
        ids = ids if isinstance(ids, (list, tuple)) else str(ids).split(",")
        queries.append(q)
        wanted.append({str(i).strip() for i in ids if str(i).strip()})
    return queries, wanted


def recall(ranked: Sequence[str], relevant: set[str], k: int) -> float:
    return len(set(ranked[:k]) & relevant) / len(relevant) if relevant else 0.0


def reciprocal_rank(ranked: Sequence[str], relevant: set[str], k: int = 10) -> float:
    return next((1.0 / (i + 1) for i, id_ in enumerate(ranked[:k]) if id_ in relevant), 0.0)


def ndcg(ranked: Sequence[str], relevant: set[str], k: int = 10) -> float:
    """Normalised discounted cumulative gain at k with binary relevance."""
    gain = sum(1.0 / math.log2(i + 2) for i, id_ in enumerate(ranked[:k]) if id_ in relevant)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(k, len(relevant))))
    return gain / ideal if ideal else 0.0


def evaluate(model: "Model", options: Any, queries: list[str], relevant: list[set[str]],
             batch_tokens: int | None = None) -> dict:
    """Search every query as `options` say (graph or exact, reranked or not) and score the rankings; also the graph's
    top-k overlap with exact search's, which is what approximation costs."""
    k = options.top_k
    deep = dataclasses.replace(options, top_k=max(k, 10))  # MRR@10 and nDCG@10 need ten hits
    ranked = [[h["id"] for h in hits] for hits in model.search(options.index, queries, batch_tokens=batch_tokens,
                                                               **_values(deep))]
    exact = dataclasses.replace(options, exact=True, rerank=None)
    graph = dataclasses.replace(options, exact=False, rerank=None)
    exact_ids = [[h["id"] for h in hits] for hits in model.search(options.index, queries, batch_tokens=batch_tokens,
                                                                  **_values(exact))]
    graph_ids = [[h["id"] for h in hits] for hits in model.search(options.index, queries, batch_tokens=batch_tokens,
                                                                  **_values(graph))]
    n = len(queries)
    return {
        "queries": n, "k": k, "reranked": options.rerank,
        f"recall@{k}": sum(recall(r, rel, k) for r, rel in zip(ranked, relevant)) / n,
        "mrr@10": sum(reciprocal_rank(r, rel) for r, rel in zip(ranked, relevant)) / n,
        "ndcg@10": sum(ndcg(r, rel) for r, rel in zip(ranked, relevant)) / n,
        f"ann_recall@{k}": sum(len(set(g[:k]) & set(e[:k])) / max(1, len(e[:k])) for g, e in zip(graph_ids, exact_ids)) / n,
    }


def _values(options: Any) -> dict:
    return {f.name: getattr(options, f.name) for f in dataclasses.fields(options) if f.name != "index"}


def format_report(report: dict) -> str:
    shown = [f"{name:<14} {value:.4f}" for name, value in report.items() if isinstance(value, float)]
    head = f"{report['queries']} queries" + (f", reranked by {report['reranked']}" if report["reranked"] else "")
    return "\n".join([head, *shown])
