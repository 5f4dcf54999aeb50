"""A real `bertkit serve --index` process: the official OpenAI client gets model.embed's vectors, /v1/search model.search's hits."""
from __future__ import annotations

import httpx
import numpy as np
import pandas as pd
import pytest

import bertkit
from bertkit.index_build import build_index
from helpers import ServeProcess

KEY = "openai-test-key"
TEXTS = ["The river meets the sea at the delta.", "Bread is baked in an oven.", "A cat sleeps on the mat.",
         "Stock markets fell sharply today.", "The ocean tide is high tonight.", "Dogs chase cats in the park."]


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory, minilm):
    folder = tmp_path_factory.mktemp("served_index")
    pd.DataFrame({"id": [f"t{i}" for i in range(len(TEXTS))], "text": TEXTS}).to_csv(folder / "c.csv", index=False)
    build_index(minilm, folder / "c.csv", folder / "idx", id_column="id", progress=False)
    return folder / "idx"


@pytest.fixture(scope="module")
def server(minilm_dir, index_dir):
    with ServeProcess(minilm_dir, "--index", str(index_dir), "--api-key", KEY) as live:
        yield live.url


def test_the_openai_client_gets_the_vectors_model_embed_gives(server, minilm):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{server}/v1", api_key=KEY, max_retries=0)
    want = minilm.embed(TEXTS[:3])
    as_list = client.embeddings.create(input=TEXTS[:3], model="any-name")  # the SDK asks for base64 and decodes it
    one = client.embeddings.create(input=TEXTS[0], model="any-name", encoding_format="float")
    # Another process, the same arithmetic on a batch of the same texts: float32 rounding at most.
    assert np.abs(np.array([d.embedding for d in as_list.data]) - want).max() < 1e-6
    assert np.abs(np.array(one.data[0].embedding) - want[0]).max() < 1e-6
    assert [d.index for d in as_list.data] == [0, 1, 2] and as_list.model == "any-name"
    tokens = sum(len(e) for e in minilm.tokenize(TEXTS[:3]))
    assert as_list.usage.prompt_tokens == as_list.usage.total_tokens == tokens
    with pytest.raises(openai.UnprocessableEntityError, match="input\\[0\\] has 402 tokens but 256 fit"):
        client.embeddings.create(input="word " * 400, model="m")  # OpenAI refuses an over-long input; so do we
    chunked = client.embeddings.create(input="word " * 400, model="m", extra_body={"long": "chunk"})
    assert np.abs(np.array(chunked.data[0].embedding) - minilm.embed(["word " * 400], long="chunk")[0]).max() < 1e-6
    with pytest.raises(openai.UnprocessableEntityError, match="dimensions must be 384"):
        client.embeddings.create(input="x", model="m", dimensions=128)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0).embeddings.create(input="x", model="m")


def test_search_answers_what_model_search_gives_and_needs_the_key(server, minilm, index_dir):
    queries = ["where rivers end", "pets"]
    want = minilm.search(str(index_dir), queries, top_k=3)
    with httpx.Client(timeout=60) as c:
        r = c.post(f"{server}/v1/search", json={"queries": queries, "top_k": 3}, headers={"X-API-Key": KEY})
        refused = c.post(f"{server}/v1/search", json={"queries": queries})
        model = c.get(f"{server}/v1/model", headers={"X-API-Key": KEY}).json()
    assert r.status_code == 200 and refused.status_code == 401
    got = r.json()
    assert [row["query"] for row in got] == queries
    for row, hits in zip(got, want):
        assert [h["id"] for h in row["hits"]] == [h["id"] for h in hits]
        assert [h["score"] for h in row["hits"]] == pytest.approx([h["score"] for h in hits], abs=1e-6)
    assert model["endpoints"]["/v1/search"] and model["search"]["rows"] == len(TEXTS)
    assert model["long_documents"]["max_windows"] == 64 and "chunk" in model["long_documents"]["strategies"]


def test_without_an_index_search_says_how_to_start_the_server(minilm):
    import asyncio

    from bertkit.serve import Settings, create_app

    async def go():
        app = create_app(minilm, Settings(warmup=False))
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
                return await c.post("/v1/search", json={"queries": ["x"]})

    r = asyncio.run(go())
    assert r.status_code == 400 and "start the server with --index INDEX" in r.json()["error"]["message"]


def test_an_index_another_model_built_is_refused_at_start(index_dir, tiny_base_dir):
    from bertkit.serve import Settings, create_app

    with pytest.raises(bertkit.BertkitError, match="this index was built with the model"):
        create_app(bertkit.load(tiny_base_dir, device="cpu"), Settings(index=str(index_dir), warmup=False))
