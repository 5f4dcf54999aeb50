"""Rerank: a cross-encoder scores (query, passage) pairs like sentence-transformers' CrossEncoder, best first, everywhere."""
from __future__ import annotations

import asyncio
import json

import httpx
import pytest

import bertkit
from bertkit.cli import main
from bertkit.serve import Settings, create_app
from helpers import write_tiny

QUERY = "Where does the river meet the sea?"
PASSAGES = ["The river meets the sea at the delta.", "Bread is baked in an oven.",
            "Tides rise where rivers reach the ocean.", "A cat sleeps on the mat."]


@pytest.fixture(scope="module")
def cross_dir(tmp_path_factory, minilm_dir):
    """A one-output pair classifier, the usual cross-encoder shape."""
    return write_tiny("cls", tmp_path_factory.mktemp("cross"), minilm_dir, seed=5, num_labels=1,
                      id2label={0: "relevant"}, label2id={"relevant": 0})


@pytest.fixture(scope="module")
def cross(cross_dir):
    return bertkit.load(cross_dir, device="cpu")


def test_scores_equal_sentence_transformers_cross_encoder_best_first(cross, cross_dir):
    from sentence_transformers import CrossEncoder

    reference = CrossEncoder(str(cross_dir), device="cpu")
    want = reference.predict([(QUERY, p) for p in PASSAGES])  # sigmoid of the one logit
    ranked = cross.rerank(QUERY, PASSAGES)
    assert sorted(r["index"] for r in ranked) == list(range(len(PASSAGES)))
    for r in ranked:  # fp32, 2 layers, hidden 64: orders of summation differ by ~1e-7
        assert r["score"] == pytest.approx(float(want[r["index"]]), abs=1e-5)
    assert all(a["score"] >= b["score"] for a, b in zip(ranked, ranked[1:]))  # best first
    raw = cross.rerank(QUERY, PASSAGES, raw_scores=True, top_k=2, return_text=True)
    assert len(raw) == 2 and raw[0]["text"] == PASSAGES[raw[0]["index"]]
    assert raw[0]["index"] == ranked[0]["index"]


def test_the_cli_and_the_server_answer_like_the_api(cross, cross_dir, capsys):
    want = cross.rerank(QUERY, PASSAGES, top_k=3)
    assert main(["rerank", "--model", str(cross_dir), "--query", QUERY, *PASSAGES, "--top-k", "3", "--json"]) == 0
    _same(json.loads(capsys.readouterr().out), want)

    async def go():
        app = create_app(cross, Settings(warmup=False))
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
                return await c.post("/v1/rerank", json={"query": QUERY, "texts": PASSAGES, "top_k": 3})

    r = asyncio.run(go())
    assert r.status_code == 200
    _same(r.json(), want)  # text-embeddings-inference's rerank shape


def _same(got: list[dict], want: list[dict]) -> None:
    """Equal answers; near-equal scores may swap places between two runs, so compare by passage."""
    assert len(got) == len(want) and all(a["score"] >= b["score"] for a, b in zip(got, got[1:]))
    scores = {r["index"]: r["score"] for r in want}
    for r in got:
        assert r["index"] in scores or r["score"] <= min(scores.values()) + 1e-6
        assert r["score"] == pytest.approx(scores.get(r["index"], r["score"]), abs=1e-6)


def test_a_long_passage_is_scored_by_its_best_window(cross):
    long = "Nothing to see here at all. " * 80 + PASSAGES[0]
    chunked = cross.rerank(QUERY, [long], long="chunk")[0]
    assert chunked["windows"] > 1
    document = _windows(cross, long)
    best = max(cross.rerank(QUERY, [cross.tokenizer.decode(w.ids[w.sequence_ids.index(1):])])[0]["score"]
               for w in document.windows)
    assert chunked["score"] == pytest.approx(best, abs=1e-4)  # decode/re-tokenize round trip: same pieces here


def _windows(model, passage):
    from bertkit.tasks import get
    from bertkit.tasks.base import documents
    from bertkit.windows import Plan

    plan = Plan.of(get("rerank").Options(query=QUERY, long="chunk"), None, get("rerank").aggregations, "rerank")
    return documents(model, [QUERY], [passage], model.max_length, plan, segment=1)[0]


def test_a_model_without_a_classifier_says_how_to_get_a_cross_encoder(minilm):
    with pytest.raises(bertkit.BertkitError, match="cross-encoder: train one with `bertkit train --pair-column`"):
        minilm.rerank(QUERY, PASSAGES)


def test_a_cross_encoder_trained_here_scores_a_long_passage_by_its_best_window(tiny_base_dir, tmp_path):
    """`bertkit train --pair-column` records no aggregation it was not given, so rerank keeps its own default (max)."""
    import pandas as pd

    rows = [(QUERY, p, int("river" in p.lower() or "tides" in p.lower())) for p in PASSAGES] * 3
    data = tmp_path / "pairs.csv"
    pd.DataFrame(rows, columns=["query", "passage", "relevant"]).to_csv(data, index=False)
    out = tmp_path / "cross"
    assert main(["train", "--model", str(tiny_base_dir), "--data", str(data), "--text-column", "query",
                 "--pair-column", "passage", "--label-column", "relevant", "--max-steps", "1", "--batch-size", "4",
                 "--test-size", "4", "--seed", "0", "--device", "cpu", "--no-progress", "--output", str(out)]) == 0
    model = bertkit.load(out, device="cpu")
    long = "Nothing to see here at all. " * 80 + PASSAGES[0]
    default, best, mean = (model.rerank(QUERY, [long], long="chunk", **chosen)[0]
                           for chosen in ({}, {"aggregate": "max"}, {"aggregate": "mean"}))
    assert default["windows"] > 1
    assert default["score"] == best["score"] != mean["score"]
    assert model.config.extra["long_document"]["aggregate"] is None  # none was chosen: each task uses its own
    # A folder from before records "mean"; it cannot be told from a choice, so it is honoured (README says how to
    # change it).
    model.config.extra["long_document"]["aggregate"] = "mean"
    assert model.rerank(QUERY, [long], long="chunk")[0]["score"] == mean["score"]
