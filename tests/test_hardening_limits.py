"""Limits: no request may cost the server more than its settings allow, and the cost is known before any work.

Every limit is one Settings field, its `bertkit serve` flag and its entry in /v1/model; a request over
one is answered 4xx naming the limit and its flag, and no model batch runs for it. A body that stalls
gets 408; a connection past the cap gets 503.
"""
from __future__ import annotations

import asyncio
import json

import pytest

pytest.importorskip("fastapi")

from bertkit.cli import build_parser, main  # noqa: E402
from bertkit.options import specs  # noqa: E402
from bertkit.serve import Settings  # noqa: E402
from bertkit.serve.schemas import Limits  # noqa: E402
from bertkit.tasks import get, tasks  # noqa: E402
from bertkit.tasks.base import execute, make_options, prepare  # noqa: E402
import helpers  # noqa: E402

LONG = "The river bank was quiet while money moved through every bank in town. " * 40


def serve_and(model, fn, **settings):
    return helpers.serve_and(model, fn, warmup=False, **settings)


def batches_run(client) -> int:
    metrics = client.app.state.service.metrics
    return sum(metrics.batch_requests.count(task=t.name) for t in tasks())


def limit_error(response, flag: str) -> str:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "limit_exceeded" and flag in error["message"], error
    return error["message"]


# -- one declaration ------------------------------------------------------------------------------
def test_every_setting_is_a_flag_with_its_default_and_every_limit_is_reported(minilm):
    serve = next(a for a in build_parser()._actions if a.dest == "command").choices["serve"]
    flags = {a.dest: a for a in serve._actions}
    for spec in specs(Settings):
        if spec.cli:
            assert spec.name in flags and flags[spec.name].default == spec.default, spec.name
    info = serve_and(minilm, lambda c: c.get("/v1/model")).json()
    public = {s.name for s in specs(Settings)} - set(Settings.NOT_PUBLIC)
    assert set(info["limits"]) == public == set(Limits.model_fields)
    assert info["limits"]["max_request_tokens"] == Settings().max_texts * minilm.max_length  # the derived default
    assert info["limits"]["api_key"] is False


@pytest.mark.parametrize("argv, says", [
    (["--port", "70000"], "--port must be at most 65535, not 70000"),
    (["--port", "-1"], "--port must be at least 0, not -1"),
    (["--graceful-timeout", "-3"], "--graceful-timeout must be at least 0"),
    (["--header-timeout", "0"], "--header-timeout must be more than 0"),
    (["--max-answer-bytes", "10"], "--max-answer-bytes must be at least 1024"),
    (["--max-connections", "0"], "--max-connections must be at least 1"),
    (["--body-timeout", "nan"], "finite number"),
    (["--max-texts", "many"], "must be a whole number"),
])
def test_a_bad_server_setting_is_one_line_naming_its_flag_before_anything_starts(capsys, argv, says):
    assert main(["serve", "--model", "/nowhere/at/all", *argv]) == 2  # refused before the model is even looked for
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and says in err, err


# -- the work a request asks for ------------------------------------------------------------------
def test_the_23_gb_fill_mask_request_is_refused_before_any_work(tiny_mlm):
    """The issue's request: 8 texts of 400 [MASK]s with top_k 1000 (22 KB) took the server to 23.6 GB."""
    async def go(c):
        r = await c.post("/v1/fill-mask", json={"texts": ["[MASK] " * 400] * 8, "top_k": 1000})
        return r, batches_run(c)

    r, ran = serve_and(tiny_mlm, go)
    message = limit_error(r, "--max-answer-bytes")
    assert "bytes" in message and ran == 0


def test_sequences_a_request_multiplies_count_against_its_token_budget(tiny_mlm, minilm):
    async def targets(c):  # every multi-piece target runs one sequence per piece at every mask
        ok = await c.post("/v1/fill-mask", json={"texts": ["a [MASK] b"], "targets": ["aardvark"]})
        r = await c.post("/v1/fill-mask", json={"texts": ["a [MASK] b [MASK] c"] * 4,
                                                "targets": ["aardvark", "unbelievable", "xylophone"]})
        return ok, r, batches_run(c)

    ok, r, ran = serve_and(tiny_mlm, targets, max_request_tokens=100)
    assert ok.status_code == 200 and ran == 1  # 4 pieces x 7 tokens fit
    assert "multi-piece targets" in limit_error(r, "--max-request-tokens")

    async def chunked(c):  # a chunked long text runs one sequence per window; the widest overlap runs the most
        plain = await c.post("/v1/embed", json={"texts": [LONG]})
        r = await c.post("/v1/embed", json={"texts": [LONG], "long": "chunk", "stride": 250})
        return plain, r, batches_run(c)

    plain, r, ran = serve_and(minilm, chunked, max_request_tokens=1000, max_windows=1000)
    assert plain.status_code == 200 and ran == 1  # 256 tokens: MiniLM's window for embeddings
    limit_error(r, "--max-request-tokens")
    _, capped, _ = serve_and(minilm, chunked, max_request_tokens=10**6)  # 78 windows: over the default cap of 64
    assert "a text needs 78 windows" in limit_error(capped, "--max-windows")


@pytest.mark.parametrize("model, path, body, cap", [
    ("mlm", "/v1/fill-mask", {"texts": ["[MASK] " * 300], "top_k": 100}, 1_000_000),  # masks x candidates
    ("mlm", "/v1/fill-mask", {"texts": ["a [MASK] b"], "top_k": 10**12}, 1_000_000),  # more than the vocabulary
    ("minilm", "/v1/similarity", {"sentences": [f"bank {i}" for i in range(100)], "word": "bank", "matrix": True},
     100_000),  # sentences squared
    ("minilm", "/v1/embed", {"texts": ["a"] * 100}, 100_000),  # 384 numbers per one-letter text
])
def test_an_answer_over_the_size_cap_is_refused_before_any_work(request, model, path, body, cap):
    model = request.getfixturevalue({"mlm": "tiny_mlm", "minilm": "minilm"}[model])

    async def go(c):
        return await c.post(path, json=body), batches_run(c)

    r, ran = serve_and(model, go, max_answer_bytes=cap, max_texts=128)
    assert f"{cap:,}" in limit_error(r, "--max-answer-bytes") and ran == 0


def test_top_k_as_large_as_the_vocabulary_is_answered_within_the_cap(tiny_mlm):
    vocab = tiny_mlm.config.vocab_size
    r = serve_and(tiny_mlm, lambda c: c.post("/v1/fill-mask", json={"texts": ["a [MASK] b"], "top_k": vocab + 5}))
    assert r.status_code == 200 and len(r.json()[0]["masks"][0]) == vocab


def _sizes(model, name: str, body: dict) -> tuple[int, int]:
    """(the task's estimate, the bytes of the answer the server would send) for one request."""
    task = get(name)
    options = make_options(task, {k: v for k, v in body.items() if k in task.option_names})
    pairs = body.get(task.pair_name) if task.pair_name else None
    prepared = prepare(task, model, body[task.input_name], pairs, options)
    estimate = task.answer_size(model, prepared, options)
    payload = task.payload(task.present(model, prepared, execute(task, model, prepared, options), options),
                           prepared, options)
    actual = len(json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode())
    return estimate, actual


SIZED = [  # (model, task, body): small and large answers of every shape, with texts that are not plain ASCII
    ("minilm", "tokenize", {"texts": [LONG] * 3, "pairs": ["a pair"] * 3}),
    ("minilm", "tokenize", {"texts": [LONG], "long": "chunk"}),
    ("minilm", "tokenize", {"texts": ["é ü 中文 " * 50]}),
    ("minilm", "embed", {"texts": ["a"] * 20}),
    ("minilm", "embed", {"texts": [LONG] * 3}),
    ("mlm", "fill-mask", {"texts": ["[MASK] " * 300], "top_k": 20}),
    ("mlm", "fill-mask", {"texts": ["a [MASK] b"], "top_k": 30522}),
    ("mlm", "fill-mask", {"texts": ["a [MASK] b [MASK]"] * 3, "targets": ["cat", "aardvark", "unbelievable"]}),
    ("minilm", "similarity", {"sentences": [f"bank {i} " + LONG[:300] for i in range(20)], "word": "bank", "matrix": True}),
    ("minilm", "similarity", {"sentences": ["bank " * 100] * 5, "word": "bank", "matrix": True}),
    ("cls", "predict", {"texts": ["What a film"] * 10}),
    ("cls", "predict", {"texts": [LONG] * 3}),
]


def _serves(task) -> str:
    """The test model that has the head a task needs."""
    return {"mlm_head": "mlm", "classifier": "cls"}.get(task.head.attr if task.head else None, "minilm")


def _runs_alone(task) -> bool:
    """Its example is a whole request (a task whose server supplies an option, as search's index, is not)."""
    return bool(task.example) and all(s.name in task.example for s in specs(task.Options) if s.required)


@pytest.mark.parametrize("model, name, body", SIZED + [(_serves(t), t.name, t.example) for t in tasks() if _runs_alone(t)])
def test_every_task_estimates_its_answer_from_above_and_not_far_above(request, model, name, body):
    model = request.getfixturevalue({"mlm": "tiny_mlm", "minilm": "minilm", "cls": "tiny_cls"}[model])
    estimate, actual = _sizes(model, name, body)
    # Never under (a cap must hold), never so far over that a request well inside the cap is refused.
    assert actual <= estimate <= 4 * actual + 2048, (estimate, actual)


# -- fill-mask's answer: one filled text per input, never the text per candidate --------------------
def test_fill_mask_answers_one_filled_text_per_input_the_same_in_python_cli_and_server(tiny_mlm, tiny_mlm_dir,
                                                                                        capsys):
    texts = ["The [MASK] sat on the [MASK].", "[MASK] " * 200]
    python = tiny_mlm.fill_mask(texts, top_k=7)
    assert main(["fill-mask", *texts, "--model", str(tiny_mlm_dir), "--top-k", "7", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)
    server = serve_and(tiny_mlm, lambda c: c.post("/v1/fill-mask", json={"texts": texts, "top_k": 7})).json()
    assert cli == server
    for answer, row in zip(python, server):
        assert set(row) == {"text", "filled", "masks", "truncated"} and row["filled"] == answer.filled
        assert [[c["id"] for c in m] for m in row["masks"]] == [[c["id"] for c in m] for m in answer]
        assert all(set(c) == {"token", "id", "score"} for m in row["masks"] for c in m)
        assert "[MASK]" not in row["filled"]
    # The answer grows with masks x candidates, not with masks x candidates x the text's length.
    size = len(json.dumps(server[1]))
    assert size < 200 * 7 * 80 + 4 * len(texts[1])


# -- slow clients and too many of them --------------------------------------------------------------
def test_a_body_that_stalls_gets_408_and_the_connection_closed(minilm):
    async def go(c):
        release = asyncio.Event()  # never set while the request waits: the body stalls for good

        async def stalled():
            yield b'{"texts": ["half a bo'
            await release.wait()
            yield b'dy"]}'

        r = await c.post("/v1/embed", content=stalled(), headers={"Content-Type": "application/json"})
        release.set()
        return r, batches_run(c)

    r, ran = serve_and(minilm, go, body_timeout=0.05)
    assert r.status_code == 408 and r.headers["connection"] == "close" and ran == 0
    error = r.json()["error"]
    assert error["type"] == "request_timeout" and "--body-timeout" in error["message"]


def test_a_request_past_the_connection_cap_gets_503_while_probes_still_answer(minilm):
    async def go(c):
        c.app.state.service.serving = 2  # two requests being served (held, as if waiting for their bodies)
        return [await c.post("/v1/embed", json={"texts": ["a"]}), await c.get("/healthz"), await c.get("/readyz"),
                await c.get("/metrics")]

    busy, *probes = serve_and(minilm, go, max_connections=2)
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "1" and busy.headers["connection"] == "close"
    assert busy.json()["error"]["type"] == "overloaded" and "--max-connections" in busy.json()["error"]["message"]
    assert [p.status_code for p in probes] == [200, 200, 200]
