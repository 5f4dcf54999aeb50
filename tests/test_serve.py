"""The HTTP app through httpx's ASGI transport: answers like the CLI, concurrency, limits, errors, auth, metrics."""
from __future__ import annotations

import asyncio
import json
import math
import re
import time

import pytest

pytest.importorskip("fastapi")

from bertkit.cli import main as cli  # noqa: E402
from bertkit.errors import BertkitError  # noqa: E402
from bertkit.serve.settings import api_key_given  # noqa: E402
from helpers import serve_and, without_precision  # noqa: E402

KEY = "s3cret-key"
BANK = ["I sat on the river bank and watched the water.", "She deposited the cheque at the bank."]


def assert_close(got, want, tol=1e-5, path="$"):
    """Equal structures; floats within `tol`; `got` may carry extra keys (the server's truncation reports)."""
    if isinstance(want, dict):
        assert isinstance(got, dict), path
        for k in want:
            assert k in got, f"{path}.{k} missing"
            assert_close(got[k], want[k], tol, f"{path}.{k}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{path}: {got!r:.80} vs {want!r:.80}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert_close(g, w, tol, f"{path}[{i}]")
    elif isinstance(want, float) and not isinstance(want, bool):
        assert isinstance(got, (int, float)) and math.isclose(got, want, rel_tol=tol, abs_tol=tol), f"{path}: {got} vs {want}"
    else:
        assert got == want, f"{path}: {got!r} vs {want!r}"


def cli_json(capsys, *argv):
    code = cli(list(argv) + ["--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return without_precision(json.loads(out))


# -- the same answers as the command line ---------------------------------------------------------
def test_task_endpoints_answer_what_the_cli_prints_with_json(capsys, minilm, tiny_cls, tiny_mlm, tiny_cls_dir, tiny_mlm_dir):
    texts = ["A fine film.", "Dull, long and far too loud."]

    async def on_minilm(c):
        return [(await c.post(p, json=b)).json() for p, b in [
            ("/v1/tokenize", {"texts": ["Hello, BERT!"], "pairs": ["again"]}),
            ("/v1/embed", {"texts": texts}),
            ("/v1/similarity", {"sentences": BANK, "word": "bank"}),
            ("/v1/similarity", {"sentences": BANK + ["The bank raised rates."], "word": "bank", "matrix": True}),
        ]]

    tokens, embedded, pair, matrix = serve_and(minilm, on_minilm)
    assert_close(tokens, cli_json(capsys, "tokenize", "Hello, BERT!", "--pair", "again"))
    assert_close(embedded, cli_json(capsys, "embed", *texts))
    assert embedded["truncated"] == [0, 0]
    assert_close(pair, cli_json(capsys, "similarity", *BANK, "--word", "bank"))
    want = cli_json(capsys, "similarity", *BANK, "The bank raised rates.", "--word", "bank", "--matrix")
    assert "plot" not in want  # the CLI adds it only with --plot
    assert_close(matrix, want)

    predicted = serve_and(tiny_cls, lambda c: c.post("/v1/predict", json={"texts": texts}))
    assert predicted.status_code == 200
    assert_close(predicted.json(), cli_json(capsys, "predict", "--model", str(tiny_cls_dir), *texts))
    masked = ["The [MASK] sat on the mat.", "Paris is the [MASK] of [MASK]."]
    filled = serve_and(tiny_mlm, lambda c: c.post("/v1/fill-mask", json={"texts": masked, "top_k": 3}))
    assert filled.status_code == 200
    assert_close(filled.json(), cli_json(capsys, "fill-mask", "--model", str(tiny_mlm_dir), "--top-k", "3", *masked))


def test_tasks_the_model_lacks_answer_400_saying_which_head_is_missing(tiny_cls, tiny_mlm):
    body = {"texts": ["The [MASK] sat."]}
    r = serve_and(tiny_cls, lambda c: c.post("/v1/fill-mask", json=body))
    assert r.status_code == 400 and r.json()["error"]["type"] == "unsupported_task"
    assert "masked-LM head" in r.json()["error"]["message"] and "/v1/predict" in r.json()["error"]["message"]
    r = serve_and(tiny_mlm, lambda c: c.post("/v1/predict", json=body))
    assert r.status_code == 400 and "classifier head" in r.json()["error"]["message"]
    r = serve_and(tiny_mlm, lambda c: c.post("/v1/predict", json={"texts": [], "what": 1}))
    assert r.status_code == 400 and r.json()["error"]["type"] == "unsupported_task"  # said before the body's faults

    async def info(c):
        return (await c.get("/v1/model")).json()

    endpoints = serve_and(tiny_mlm, info)["endpoints"]
    assert endpoints["/v1/fill-mask"] and not endpoints["/v1/predict"] and endpoints["/v1/embed"]


# -- concurrency ----------------------------------------------------------------------------------
def _requests():
    words = "the river bank was quiet while money moved through every bank in town".split()
    texts = [" ".join(words[: 2 + (i * 5) % len(words)]) + f" number {i}" for i in range(24)]
    embed = [("/v1/embed", {"texts": texts[i: i + 1 + i % 3]}) for i in range(0, 24, 2)]
    embed += [("/v1/embed", {"texts": texts[:2], "pooling": "cls", "normalize": False})]
    similarity = [("/v1/similarity", {"sentences": [f"{texts[i]} by the bank", BANK[i % 2]], "word": "bank"})
                  for i in range(6)]
    return embed + similarity


@pytest.mark.parametrize("batching", [True, False])
def test_concurrent_requests_get_exactly_the_single_request_answers(minilm, batching):
    requests = _requests()

    async def go(c):
        alone = []
        for path, body in requests:  # one at a time: each runs in a batch of its own
            r = await c.post(path, json=body)
            assert r.status_code == 200, r.text
            alone.append(r.json())
        metrics = c.app.state.service.metrics
        calls_before = sum(metrics.batch_requests.count(task=t) for t in ("embed", "similarity"))
        together = await asyncio.gather(*[c.post(p, json=b) for p, b in requests])
        calls = sum(metrics.batch_requests.count(task=t) for t in ("embed", "similarity")) - calls_before
        return alone, together, calls

    alone, together, calls = serve_and(minilm, go, max_wait_ms=50, batching=batching)
    assert calls < len(requests) / 2 if batching else calls == len(requests)  # merged, or really not
    for (path, body), a, t in zip(requests, alone, together):
        assert t.status_code == 200
        assert_close(t.json(), a)
        if path == "/v1/embed":
            assert len(t.json()["embeddings"]) == len(body["texts"])


def test_concurrent_predict_and_fill_mask_match_single_answers(tiny_cls, tiny_mlm):
    predict = [{"texts": [f"text {i} " * (1 + i % 4)]} for i in range(8)]
    predict += [{"texts": ["premise", "another"], "pairs": ["hypothesis", "more"]}, {"texts": ["x"], "threshold": 0.9}]
    fill = [{"texts": [f"word {i} [MASK] " * (1 + i % 3)], "top_k": 1 + i % 4} for i in range(8)]
    fill += [{"texts": ["the [MASK] is red", "a [MASK] day"], "targets": ["car", "sunny", "unbelievable"]}]

    def check(model, path, bodies):
        async def go(c):
            alone = [(await c.post(path, json=b)).json() for b in bodies]
            together = await asyncio.gather(*[c.post(path, json=b) for b in bodies])
            return alone, together

        alone, together = serve_and(model, go, max_wait_ms=50)
        for a, t in zip(alone, together):
            assert t.status_code == 200, t.text
            assert_close(t.json(), a)

    check(tiny_cls, "/v1/predict", predict)
    check(tiny_mlm, "/v1/fill-mask", fill)


def test_a_request_that_breaks_its_batch_fails_alone(minilm):
    async def go(c):
        service = c.app.state.service
        run = service.batchers["embed"]._run
        poison = minilm.tokenizer.token_to_id("poison")

        def poisoned(items, options):  # the queue holds tokenized sequences, never raw text
            if any(poison in item.ids for item in items):
                raise BertkitError("this text cannot be embedded")
            return run(items, options)

        service.batchers["embed"]._run = poisoned
        bodies = [{"texts": ["fine"]}, {"texts": ["poison"]}, {"texts": ["also fine", "and this"]}]
        return await asyncio.gather(*[c.post("/v1/embed", json=b) for b in bodies])

    ok, bad, ok2 = serve_and(minilm, go, max_wait_ms=100)
    assert ok.status_code == 200 and ok2.status_code == 200 and len(ok2.json()["embeddings"]) == 2
    assert bad.status_code == 422 and bad.json()["error"] == {"type": "invalid_input", "message": "this text cannot be embedded"}


def test_the_event_loop_stays_free_while_the_model_computes(minilm):
    async def go(c):
        service = c.app.state.service
        run = service.batchers["embed"]._run

        def slow(items, options):
            time.sleep(1.0)  # holds the model thread, as a big batch would
            return run(items, options)

        service.batchers["embed"]._run = slow
        busy = asyncio.ensure_future(c.post("/v1/embed", json={"texts": ["slow"]}))
        await asyncio.sleep(0.1)
        start = time.monotonic()
        health = await c.get("/healthz")
        quick = time.monotonic() - start
        return health, quick, await busy

    health, quick, busy = serve_and(minilm, go)
    assert health.status_code == 200 and quick < 0.5 and busy.status_code == 200


# -- bad input and limits ------------------------------------------------------------------------
BAD = [
    # (path, body (dict | bytes), status, error type, words the message must contain)
    ("/v1/embed", b'{"texts": ["a",]', 400, "invalid_json", ["not valid JSON"]),
    ("/v1/embed", b"", 422, "invalid_request", ["JSON object body"]),
    ("/v1/embed", b"[1, 2]", 422, "invalid_request", ["JSON object"]),
    ("/v1/embed", {"texts": "one text"}, 422, "invalid_request", ["texts must be a list"]),
    ("/v1/embed", {"texts": []}, 422, "invalid_request", ["texts is empty"]),
    ("/v1/embed", {"texts": ["ok", 3]}, 422, "invalid_request", ["texts[1] must be a string", "number 3"]),
    ("/v1/embed", {"texts": ["ok", None]}, 422, "invalid_request", ["texts[1] must be a string", "null"]),
    ("/v1/embed", {"texts": ["ok"], "colour": "red"}, 422, "invalid_request", ["unknown field 'colour'", "pooling"]),
    ("/v1/embed", {"texts": ["ok"], "pooling": "median"}, 422, "invalid_request", ["pooling"]),
    ("/v1/embed", {"texts": ["ok"], "normalize": "yes"}, 422, "invalid_request", ["normalize must be true or false"]),
    ("/v1/embed", {}, 422, "invalid_request", ["texts is required"]),
    ("/v1/tokenize", {"texts": ["a b c d e"], "max_length": 1}, 422, "invalid_input", ["max_length=1"]),
    ("/v1/similarity", {"sentences": BANK, "word": "river bank"}, 422, "invalid_input", ["does not occur"]),
    ("/v1/similarity", {"sentences": BANK, "word": "bank", "occurrence": 5}, 422, "invalid_input", ["occurrence must be"]),
    ("/v1/similarity", {"sentences": BANK + ["x"], "word": "bank"}, 422, "invalid_request", ["exactly two", "matrix"]),
    ("/v1/similarity", {"sentences": BANK, "word": ["bank", "bank", "bank"]}, 422, "invalid_request", ["word has 3 values for 2 sentences"]),
    ("/v1/similarity", {"sentences": BANK, "word": "bank", "layer": 99}, 422, "invalid_input", ["layer 99"]),
    ("/v1/nowhere", {"texts": ["a"]}, 404, "not_found", ["/v1/nowhere"]),
    # JSON nested past the parser's depth is invalid JSON like any other, not a bare 400
    ("/v1/embed", b'{"texts": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, "invalid_json", ["nested too deeply"]),
    ("/v1/embeddings", b"[" * 5000 + b"]" * 5000, 400, "invalid_json", ["nested too deeply"]),
    # a union (a string or a list) is reported for what the value was meant as, never by pydantic's member names
    ("/v1/embeddings", {"input": "", "model": "m"}, 422, "invalid_request",
     ["input is an empty string; give at least one character"]),
    ("/v1/embeddings", {"input": 3, "model": "m"}, 422, "invalid_request", ["input must be a string or a list, not the number 3"]),
    ("/v1/embeddings", {"input": ["a", 3], "model": "m"}, 422, "invalid_request", ["input[1] must be a string"]),
    ("/v1/embeddings", {"input": ["a", ""], "model": "m"}, 422, "invalid_request", ["input[1] is an empty string"]),
    ("/v1/embeddings", {"input": "a", "model": "m", "dimensions": "384"}, 422, "invalid_request",
     ["dimensions must be a whole number, not a string"]),
    ("/v1/similarity", {"sentences": BANK, "word": ""}, 422, "invalid_request", ["word is an empty string"]),
    ("/v1/similarity", {"sentences": BANK, "word": 3}, 422, "invalid_request", ["word must be a string or a list"]),
    ("/v1/similarity", {"sentences": BANK, "word": "bank", "layer": "top"}, 422, "invalid_request",
     ["layer must be 'sum4' or 'concat4', not 'top'"]),
]
# What pydantic calls the members of a union; a user never needs to read them.
INTERNAL_NAMES = re.compile(r"constrained|list\[|literal\[|function-|json-or-python")


@pytest.mark.parametrize("path, body, status, kind, words", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_gets_a_4xx_error_that_names_the_problem(minilm, path, body, status, kind, words):
    async def go(c):
        if isinstance(body, bytes):
            return await c.post(path, content=body, headers={"Content-Type": "application/json"})
        return await c.post(path, json=body)

    r = serve_and(minilm, go, warmup=False)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["type"] == kind and set(error) <= {"type", "message", "details"}
    for w in words:
        assert w in error["message"], error["message"]
    assert not INTERNAL_NAMES.search(r.text), r.text


def test_wrong_method_and_content_type_are_4xx_json(minilm):
    async def go(c):
        return (await c.get("/v1/embed"), await c.post("/v1/embed", content=b'{"texts": ["a"]}',
                                                       headers={"Content-Type": "text/plain"}))

    wrong_method, wrong_type = serve_and(minilm, go, warmup=False)
    assert wrong_method.status_code == 405 and "use POST" in wrong_method.json()["error"]["message"]
    assert wrong_type.status_code == 415 and "application/json" in wrong_type.json()["error"]["message"]


def test_fill_mask_without_a_mask_is_refused_before_batching(tiny_mlm):
    r = serve_and(tiny_mlm, lambda c: c.post("/v1/fill-mask", json={"texts": ["fine [MASK]", "no mask here"]}))
    assert r.status_code == 422 and r.json()["error"]["message"].startswith("texts[1] has no [MASK]")
    assert tiny_mlm.tokenizer  # the model is still usable (the server never died)


def test_limits_on_texts_characters_and_body_size(minilm):
    async def go(c):
        too_many = await c.post("/v1/embed", json={"texts": ["a"] * 4})
        too_long = await c.post("/v1/embed", json={"texts": ["a" * 51]})
        big = b'{"texts": ["' + b"a" * 2000 + b'"]}'
        too_big = await c.post("/v1/embed", content=big, headers={"Content-Type": "application/json"})

        async def chunks():  # no Content-Length: the limit must hold while streaming too
            for _ in range(20):
                yield b" " * 100

        streamed = await c.post("/v1/embed", content=chunks(), headers={"Content-Type": "application/json"})
        fine = await c.post("/v1/embed", json={"texts": ["a" * 50] * 3})
        return too_many, too_long, too_big, streamed, fine

    too_many, too_long, too_big, streamed, fine = serve_and(minilm, go, max_texts=3, max_chars=50, max_body_bytes=1000)
    assert too_many.status_code == 422 and too_many.json()["error"]["type"] == "limit_exceeded"
    assert "--max-texts" in too_many.json()["error"]["message"]
    assert too_long.status_code == 422 and "--max-chars" in too_long.json()["error"]["message"]
    for r in (too_big, streamed):
        assert r.status_code == 413 and r.json()["error"]["type"] == "payload_too_large"
    assert fine.status_code == 200


@pytest.mark.filterwarnings("ignore:.*were truncated")
def test_over_long_texts_are_cut_and_flagged_or_rejected_when_asked(minilm, tiny_mlm):
    long_text = "word " * 400  # 402 tokens: over MiniLM's 256 for embeddings, within its 512 otherwise

    async def go(c):
        return (await c.post("/v1/embed", json={"texts": ["short", long_text]}),
                await c.post("/v1/embed", json={"texts": ["short", long_text], "truncate": False}),
                await c.post("/v1/tokenize", json={"texts": ["a b c d e"], "max_length": 4}),
                await c.post("/v1/tokenize", json={"texts": ["a b c d e"], "max_length": 4, "truncate": False}))

    cut, refused, tok_cut, tok_refused = serve_and(minilm, go)
    assert cut.status_code == 200 and cut.json()["truncated"] == [0, 402 - 256]
    assert refused.status_code == 422 and refused.json()["error"]["type"] == "text_too_long"
    assert "texts[1] has 402 tokens but 256 fit" in refused.json()["error"]["message"]
    assert tok_cut.json()[0]["n_truncated"] == 3 and tok_refused.status_code == 422

    async def mlm(c):
        return (await c.post("/v1/fill-mask", json={"texts": ["[MASK] " + "word " * 600]}),
                await c.post("/v1/fill-mask", json={"texts": ["word " * 600 + "[MASK]"]}))

    kept, lost = serve_and(tiny_mlm, mlm)
    assert kept.status_code == 200 and kept.json()[0]["truncated"] == 603 - 512  # [CLS] [MASK] 600 words [SEP]
    assert lost.status_code == 422 and "was cut off" in lost.json()["error"]["message"]


# -- API key -----------------------------------------------------------------------------------
def test_api_key_guards_every_endpoint_but_the_probes(minilm, monkeypatch):
    async def go(c):
        body = {"texts": ["hi"]}
        return {
            "none": await c.post("/v1/embed", json=body),
            "wrong": await c.post("/v1/embed", json=body, headers={"Authorization": "Bearer nope"}),
            "bearer": await c.post("/v1/embed", json=body, headers={"Authorization": f"Bearer {KEY}"}),
            "header": await c.post("/v1/tokenize", json=body, headers={"X-API-Key": KEY}),
            "healthz": await c.get("/healthz"),
            "readyz": await c.get("/readyz"),  # readiness probes send no key; the answer is only "ready" or why not
            "metrics": await c.get("/metrics"),
            "model": await c.get("/v1/model"),
            "openapi": await c.get("/openapi.json", headers={"X-API-Key": KEY}),
        }

    r = serve_and(minilm, go, api_key=KEY)
    for name in ("none", "wrong", "metrics", "model"):
        assert r[name].status_code == 401 and r[name].json()["error"]["type"] == "unauthorized", name
        assert r[name].headers["WWW-Authenticate"].startswith("Bearer")
    for name in ("bearer", "header", "healthz", "readyz", "openapi"):
        assert r[name].status_code == 200, name
    assert r["readyz"].json() == {"status": "ready"}
    assert set(r["openapi"].json()["components"]["securitySchemes"]) == {"bearer", "apiKey"}

    open_ = serve_and(minilm, lambda c: c.post("/v1/embed", json={"texts": ["hi"]}))
    assert open_.status_code == 200  # no key configured: nothing asked
    monkeypatch.setenv("BERTKIT_API_KEY", KEY)
    assert api_key_given(None) == KEY and api_key_given("flag-key") == "flag-key"  # the flag wins over the variable


# -- health, readiness, draining, model info, metrics, schema -------------------------------------
def test_readyz_turns_503_while_draining_and_new_work_is_refused(minilm):
    async def go(c):
        ready = await c.get("/readyz")
        c.app.state.service.begin_drain()
        return ready, await c.get("/readyz"), await c.get("/healthz"), await c.post("/v1/embed", json={"texts": ["a"]})

    ready, draining, health, refused = serve_and(minilm, go)
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}
    assert draining.status_code == 503 and draining.json()["error"]["type"] == "shutting_down"
    assert health.status_code == 200
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"


def test_model_info_has_config_labels_and_limits(tiny_cls):
    async def go(c):
        return (await c.get("/v1/model")).json()

    info = serve_and(tiny_cls, go, max_texts=7, max_wait_ms=3)
    assert info["labels"] == ["negative", "neutral", "positive"] and "classifier" in info["heads"]
    assert info["config"]["hidden_size"] == 64 and info["max_length"] == 512
    assert info["limits"]["max_texts"] == 7 and info["limits"]["max_wait_ms"] == 3 and info["limits"]["api_key"] is False
    assert info["limits"]["max_batch_tokens"] == tiny_cls.default_batch_tokens


SAMPLE = re.compile(r'^([a-z_]+)(\{[^}]*\})? (-?[0-9.e+-]+|\+Inf|NaN)$')


def test_metrics_are_prometheus_text_with_requests_latency_batches_and_throughput(minilm):
    async def go(c):
        await asyncio.gather(*[c.post("/v1/embed", json={"texts": ["a b c", "d e"]}) for _ in range(5)])
        await c.post("/v1/embed", json={"texts": []})
        await c.get("/no/such/path")
        return await c.get("/metrics")

    r = serve_and(minilm, go, max_wait_ms=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    values, types = {}, {}
    for line in r.text.strip().splitlines():
        if line.startswith("# TYPE"):
            _, _, name, kind = line.split()
            types[name] = kind
        elif not line.startswith("#"):
            m = SAMPLE.match(line)
            assert m, f"not a Prometheus sample: {line!r}"
            values[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    assert types["bertkit_requests_total"] == "counter" and types["bertkit_request_duration_seconds"] == "histogram"
    assert values['bertkit_requests_total{endpoint="/v1/embed",status="200"}'] == 5
    assert values['bertkit_requests_total{endpoint="/v1/embed",status="422"}'] == 1
    assert values['bertkit_requests_total{endpoint="other",status="404"}'] == 1
    assert values['bertkit_request_duration_seconds_count{endpoint="/v1/embed"}'] == 6
    buckets = [v for k, v in values.items() if k.startswith('bertkit_request_duration_seconds_bucket{endpoint="/v1/embed"')]
    assert buckets == sorted(buckets) and buckets[-1] == 6  # cumulative, +Inf last
    assert values['bertkit_batch_size_sum{task="embed"}'] == 5 * 2  # the warm-up is not a batch
    assert values['bertkit_batch_requests_count{task="embed"}'] < 6  # merged
    assert values["bertkit_tokens_per_second"] > 0 and values['bertkit_tokens_total{task="embed"}'] > 0


def test_a_client_that_leaves_mid_body_is_counted_499_never_500(minilm):
    """Nobody failed: the client closed the request (nginx's 499). A 5xx in /metrics would page someone for nothing."""
    async def go(c):
        app = c.app
        messages = iter([{"type": "http.request", "body": b'{"texts": ["a', "more_body": True},
                         {"type": "http.disconnect"}])
        sent = []

        async def receive():
            return next(messages)

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
                 "path": "/v1/embed", "raw_path": b"/v1/embed", "query_string": b"", "root_path": "",
                 "headers": [(b"content-type", b"application/json")], "client": ("127.0.0.1", 1),
                 "server": ("bertkit", 80)}
        await app(scope, receive, send)
        return sent, (await c.get("/metrics")).text

    sent, metrics = serve_and(minilm, go, warmup=False)
    assert sent == []  # nobody is left to answer
    assert 'bertkit_requests_total{endpoint="/v1/embed",status="499"} 1' in metrics
    assert 'status="500"' not in metrics


def test_openapi_schema_is_published_with_strict_bodies_and_the_limits(minilm):
    async def go(c):
        return (await c.get("/openapi.json")).json()

    schema = serve_and(minilm, go, max_texts=9, max_chars=77, warmup=False)
    assert {"/v1/predict", "/v1/embed", "/v1/fill-mask", "/v1/similarity", "/v1/tokenize", "/v1/model",
            "/healthz", "/readyz", "/metrics"} <= set(schema["paths"])
    parts = schema["components"]["schemas"]
    for name in ("EmbedRequest", "PredictRequest", "FillMaskRequest", "SimilarityRequest", "TokenizeRequest",
                 "EmbedResponse", "PredictRow", "ErrorResponse"):
        assert parts[name]["additionalProperties"] is False, name
    texts = parts["EmbedRequest"]["properties"]["texts"]
    assert texts["maxItems"] == 9 and texts["minItems"] == 1 and texts["items"]["maxLength"] == 77
    assert "422" in schema["paths"]["/v1/embed"]["post"]["responses"]
