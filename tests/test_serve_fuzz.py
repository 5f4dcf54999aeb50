"""Fuzzing the published OpenAPI schema (schemathesis) on a live server: never a 5xx, never slow; and bounded memory.

The memory test measures the largest requests the limits allow on a real `bertkit serve` process
(benchmarks/bench_serve_limits.py) against a bound derived from those limits.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
from bertkit.serve.openai import PATH as EMBEDDINGS  # noqa: E402
from bertkit.tasks import tasks  # noqa: E402
from helpers import ServeProcess, serve_flags  # noqa: E402

EXAMPLES = int(os.environ.get("BERTKIT_FUZZ_EXAMPLES", "30"))
KEY = "fuzz-key"
# Small limits keep generated bodies cheap; the schema states them, so valid data stays valid.
LIMITS = dict(max_texts=6, max_chars=200, max_body_bytes=16_384, max_wait_ms=2.0)
CHECKS = [response_schema_conformance, status_code_conformance, content_type_conformance, negative_data_rejection]
# The costliest request LIMITS allow runs 6 x 512 tokens through a 2-layer, 64-wide model: milliseconds. Refused
# ones may first build their sequences (multi-piece targets) before the budget refuses them: a second or two. Ten
# seconds leaves room for a loaded 2-core machine; a request that hangs or crawls fails.
MAX_SECONDS = 10.0


@pytest.fixture(scope="module")
def mlm_index(tiny_mlm_dir, tmp_path_factory) -> Path:
    """A few rows indexed with the tiny MLM checkpoint, so its server answers /v1/search too."""
    import pandas as pd

    from bertkit.index_build import build_index

    folder = tmp_path_factory.mktemp("fuzz_index")
    pd.DataFrame({"text": ["a river bank", "a bank loan", "the sea"]}).to_csv(folder / "c.csv", index=False)
    build_index(bertkit.load(tiny_mlm_dir, device="cpu"), folder / "c.csv", folder / "index", progress=False)
    return folder / "index"


@pytest.fixture(scope="module")
def mlm_schema(tiny_mlm_dir, mlm_index):
    with ServeProcess(tiny_mlm_dir, "--index", str(mlm_index), *serve_flags(**LIMITS), log_level="warning") as live:
        yield _schema(live.url, {})


@pytest.fixture(scope="module")
def cls_schema(tiny_cls_dir):
    with ServeProcess(tiny_cls_dir, "--api-key", KEY, *serve_flags(**LIMITS), log_level="warning") as live:
        yield _schema(live.url, {"X-API-Key": KEY})


def _schema(url: str, headers: dict):
    # Invalid data must be refused with one of the documented 4xx codes; 413 (body over the limit) is one.
    config = schemathesis.Config.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": [400, 401, 404, 405, 413, 415, 422]}}})
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", headers=headers, config=config)
    schema.config.update(base_url=url)
    return schema


POSTS = [f"/v1/{task.name}" for task in tasks()] + [EMBEDDINGS]  # every task's endpoint, and OpenAI's
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
        assert response.elapsed < MAX_SECONDS, f"{method} {path} took {response.elapsed:.1f} s"
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


# -- memory: the largest requests the limits allow, on a real server process ----------------------------------
BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_serve_limits.py"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def every_head_dir(tiny_mlm_dir, tmp_path_factory) -> Path:
    """The tiny MLM checkpoint plus a pooler and a 2-label classifier: one server answers every endpoint."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    folder = tmp_path_factory.mktemp("every_head")
    for f in tiny_mlm_dir.iterdir():
        shutil.copy(f, folder / f.name)
    state = load_file(tiny_mlm_dir / "model.safetensors")
    hidden = state["bert.embeddings.word_embeddings.weight"].shape[1]
    g = torch.Generator().manual_seed(0)
    state |= {"bert.pooler.dense.weight": torch.randn(hidden, hidden, generator=g) * 0.05,
              "bert.pooler.dense.bias": torch.zeros(hidden),
              "classifier.weight": torch.randn(2, hidden, generator=g) * 0.05, "classifier.bias": torch.zeros(2)}
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((folder / "config.json").read_text())
    config |= {"id2label": {"0": "no", "1": "yes"}, "label2id": {"no": 0, "yes": 1}}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _bench(model: Path, *flags: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, str(BENCH), "--model", str(model), "--json",
                           "--memory-limit-mb", "6000", *flags],  # a runaway request kills the server, not the machine
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_the_largest_requests_the_limits_allow_stay_within_a_memory_bound(every_head_dir):
    report = _bench(every_head_dir, "--only", "allowed")
    lim, rows = report["limits"], report["rows"]
    vocab = json.loads((every_head_dir / "config.json").read_text())["vocab_size"]
    # What one request may hold at once, from the limits: a batch's masked-LM logits with their softmax and top-k
    # (3 x float32 x batch tokens x vocabulary), its answer as Python objects then JSON (~40 bytes per byte of
    # answer), and its body parsed (~20 bytes per byte). 1.5 GB over the warmed-up server's ~0.4 GB here.
    bound = report["baseline_mb"] + (3 * 4 * lim["max_batch_tokens"] * vocab + 40 * lim["max_answer_bytes"]
                                     + 20 * lim["max_body_bytes"]) / MIB
    assert report["server_alive"] and {r["endpoint"] for r in rows} >= {
        "/v1/tokenize", "/v1/embed", "/v1/similarity", "/v1/fill-mask", "/v1/predict"}
    for r in rows:
        assert r["status"] == 200, r
        assert r["peak_mb"] <= bound, f"{r['request']}: {r['peak_mb']:.0f} MB > {bound:.0f} MB"
    assert bound < 2048


def test_requests_the_limits_refuse_cost_nothing_before_the_refusal(every_head_dir):
    # Eight texts: a few hundred MB of windows and target sequences if they were built before the budget refused them.
    report = _bench(every_head_dir, "--only", "refused", "--serve-flags=--max-texts 8")
    assert report["server_alive"]
    for r in report["rows"]:
        assert r["status"] == 422 and r["error"] == "limit_exceeded", r
        assert r["peak_mb"] <= report["baseline_mb"] + 100 and r["seconds"] < 5, r
