"""Property-based fuzzing of the published OpenAPI schema (schemathesis) against a live server: never a 5xx."""
from __future__ import annotations

import os
import threading
import time

import pytest

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("uvicorn")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

import bertkit  # noqa: E402
from bertkit.serve import Settings, create_app  # noqa: E402
from bertkit.serve.runner import Server, bind  # noqa: E402

EXAMPLES = int(os.environ.get("BERTKIT_FUZZ_EXAMPLES", "30"))
KEY = "fuzz-key"
# Small limits keep generated bodies cheap; the schema states them, so valid data stays valid.
LIMITS = dict(max_texts=6, max_chars=200, max_body_bytes=16_384, max_wait_ms=2.0)
CHECKS = [response_schema_conformance, status_code_conformance, content_type_conformance, negative_data_rejection]


class LiveServer:
    """uvicorn on a free loopback port, in a thread (one event loop for the whole test, as in production)."""

    def __init__(self, model, **limits):
        self.sock = bind("127.0.0.1", 0)
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        import uvicorn

        self.server = Server(uvicorn.Config(create_app(model, Settings(**limits)), log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=30)


@pytest.fixture(scope="module")
def mlm_schema(tiny_mlm_dir):
    with LiveServer(bertkit.load(tiny_mlm_dir, device="cpu"), **LIMITS) as live:
        yield _schema(live.url, {})


@pytest.fixture(scope="module")
def cls_schema(tiny_cls_dir):
    with LiveServer(bertkit.load(tiny_cls_dir, device="cpu"), api_key=KEY, **LIMITS) as live:
        yield _schema(live.url, {"X-API-Key": KEY})


def _schema(url: str, headers: dict):
    # Invalid data must be refused with one of the documented 4xx codes; 413 (body over the limit) is one.
    config = schemathesis.Config.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": [400, 401, 404, 405, 413, 415, 422]}}})
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", headers=headers, config=config)
    schema.config.update(base_url=url)
    return schema


POSTS = ["/v1/predict", "/v1/embed", "/v1/fill-mask", "/v1/similarity", "/v1/tokenize"]
GETS = ["/v1/model", "/healthz", "/readyz", "/metrics"]
# Bodies are where the danger is: valid and invalid ones for every task; the GETs take no input.
OPERATIONS = [("POST", p, mode) for p in POSTS for mode in ("positive", "negative")] + [("GET", p, "positive") for p in GETS]
IDS = [f"{m} {p} {mode}" for m, p, mode in OPERATIONS]


def _fuzz(schema, method: str, path: str, mode: str, headers: dict) -> None:
    operation = schema[path][method]
    strategy = operation.as_strategy(generation_mode=GenerationMode(mode), headers=headers)

    @given(case=strategy)
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def exercise(case):
        response = case.call(timeout=60)
        assert response.status_code < 500, f"{method} {path} -> {response.status_code}: {response.text[:500]}"
        case.validate_response(response, checks=CHECKS, headers=headers)
        if response.status_code >= 400:
            error = response.json()["error"]
            assert error["type"] and error["message"]

    exercise()


@pytest.mark.parametrize("method, path, mode", OPERATIONS, ids=IDS)
def test_fuzz_a_masked_lm_model(mlm_schema, method, path, mode):
    _fuzz(mlm_schema, method, path, mode, {})


@pytest.mark.parametrize("method, path, mode", OPERATIONS, ids=IDS)
def test_fuzz_a_classifier_behind_an_api_key(cls_schema, method, path, mode):
    _fuzz(cls_schema, method, path, mode, {"X-API-Key": KEY})
