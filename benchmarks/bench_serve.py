"""Load test for `bertkit serve` on loopback: throughput and p50/p99 latency with batching on and off, and lost or wrong answers.

    python benchmarks/bench_serve.py                       # minilm, /v1/embed, 256 requests, 32 at a time
    python benchmarks/bench_serve.py --task similarity --requests 128
    python benchmarks/bench_serve.py --model DIR --task predict

Every request is first sent alone, one after another; those answers are the reference that the
concurrent answers (batching on, then off) must equal (floats within --tolerance). The script
exits 1 if any request is lost, fails or gets an answer that is not its own.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

HOST = "127.0.0.1"  # loopback only, by design
WORDS = ("the river bank was quiet while money moved through every bank in town and the water rose slowly "
         "over stones as children watched boats drift past old mills under a grey sky").split()


def make_requests(task: str, n: int, seed: int) -> list[dict]:
    """Seeded, varied bodies: 1-4 texts of 4-60 words, so merged batches mix lengths as real traffic does."""
    rng = random.Random(seed)

    def text(lo=4, hi=60):
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))

    bodies = []
    for i in range(n):
        k = rng.randint(1, 4)
        if task == "similarity":
            bodies.append({"sentences": [text() + " bank", "by the bank " + text()], "word": "bank"})
        elif task == "fill-mask":
            bodies.append({"texts": [text(2, 30) + " [MASK] " + text(2, 30) for _ in range(k)], "top_k": 3})
        else:
            bodies.append({"texts": [f"{i} " + text() for _ in range(k)]})
    return bodies


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@contextmanager
def server(model: str, batching: bool, extra: list[str]):
    """`bertkit serve` in a subprocess; yields its base URL once ready, then stops it with SIGTERM."""
    port = free_port()
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    env.pop("BERTKIT_API_KEY", None)
    cmd = [sys.executable, "-m", "bertkit", "serve", "--model", model, "--host", HOST, "--port", str(port),
           "--no-access-log", "--log-level", "warning", *extra] + ([] if batching else ["--no-batching"])
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited: {proc.stderr.read()}")
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server did not become ready in 120 s")
            time.sleep(0.2)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = "killed"
        if code != 0:
            print(f"warning: server exit status {code}: {proc.stderr.read()[-2000:]}", file=sys.stderr)


async def one_by_one(base: str, path: str, bodies: list[dict]) -> list:
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        out = []
        for body in bodies:
            r = await client.post(path, json=body)
            if r.status_code != 200:
                raise SystemExit(f"the reference request failed: {r.status_code} {r.text[:300]}")
            out.append(r.json())
        return out


async def fire(base: str, path: str, bodies: list[dict], concurrency: int, budget_s: float) -> dict:
    """All requests, at most `concurrency` in flight; per request: (latency, status, answer)."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    gate = asyncio.Semaphore(concurrency)
    results: list = [None] * len(bodies)

    async def send(i: int, client: httpx.AsyncClient) -> None:
        async with gate:
            start = time.perf_counter()
            try:
                r = await client.post(path, json=bodies[i])
                results[i] = (time.perf_counter() - start, r.status_code, r.json() if r.status_code == 200 else r.text)
            except (httpx.HTTPError, ValueError) as e:
                results[i] = (time.perf_counter() - start, None, repr(e))

    async with httpx.AsyncClient(base_url=base, timeout=budget_s, limits=limits) as client:
        before = (await client.get("/metrics")).text
        start = time.perf_counter()
        tasks = [asyncio.ensure_future(send(i, client)) for i in range(len(bodies))]
        done, pending = await asyncio.wait(tasks, timeout=budget_s)
        for t in pending:
            t.cancel()
        wall = time.perf_counter() - start
        metrics = (await client.get("/metrics")).text
    return {"results": results, "wall": wall, "metrics": metrics, "metrics_before": before}


def same(a, b, tol: float) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, rel_tol=tol, abs_tol=tol)
    return a == b


def summarize(run: dict, reference: list, bodies: list[dict], tol: float) -> dict:
    ok = [r for r in run["results"] if r is not None and r[1] == 200]
    latencies = sorted(r[0] for r in ok)
    lost = sum(r is None for r in run["results"])
    failed = sum(r is not None and r[1] != 200 for r in run["results"])
    wrong = sum(r is not None and r[1] == 200 and not same(r[2], want, tol) for r, want in zip(run["results"], reference))
    texts = sum(len(b.get("texts", b.get("sentences", []))) for b, r in zip(bodies, run["results"]) if r and r[1] == 200)
    batches, merged = (_metric_sum(run["metrics"], name) - _metric_sum(run["metrics_before"], name)
                       for name in ("bertkit_batch_requests_count", "bertkit_batch_requests_sum"))
    return {
        "requests_per_s": len(ok) / run["wall"], "texts_per_s": texts / run["wall"],
        "p50_ms": 1000 * _quantile(latencies, 0.50), "p99_ms": 1000 * _quantile(latencies, 0.99),
        "mean_ms": 1000 * statistics.fmean(latencies) if latencies else float("nan"),
        "requests_per_batch": merged / batches if batches else float("nan"),
        "lost": lost, "failed": failed, "mismatched": wrong, "wall_s": run["wall"],
    }


def _quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1)]


def _metric_sum(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="minilm")
    p.add_argument("--task", default="embed", choices=("embed", "similarity", "predict", "fill-mask"))
    p.add_argument("--requests", type=int, default=256, help="requests per run (default: 256)")
    p.add_argument("--concurrency", type=int, default=32, help="requests in flight at once (default: 32)")
    p.add_argument("--max-seconds", type=float, default=120, help="time budget per run; unfinished requests count as lost")
    p.add_argument("--max-wait-ms", type=float, default=None, help="passed to the server (batching on)")
    p.add_argument("--max-batch-tokens", type=int, default=None, help="passed to the server")
    p.add_argument("--tolerance", type=float, default=1e-4, help="how close floats must be to the single-request answer")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = p.parse_args(argv)
    if not 1 <= args.requests <= 10_000 or not 1 <= args.concurrency <= 1024:
        p.error("--requests must be 1..10000 and --concurrency 1..1024")

    path = f"/v1/{args.task}"
    bodies = make_requests(args.task, args.requests, args.seed)
    extra = []
    if args.max_wait_ms is not None:
        extra += ["--max-wait-ms", str(args.max_wait_ms)]
    if args.max_batch_tokens is not None:
        extra += ["--max-batch-tokens", str(args.max_batch_tokens)]
    report: dict = {"model": args.model, "task": args.task, "requests": args.requests, "concurrency": args.concurrency,
                    "cpu_threads": os.cpu_count()}
    reference = None
    for batching in (True, False):
        with server(args.model, batching, extra) as base:
            if reference is None:
                reference = asyncio.run(one_by_one(base, path, bodies))
            run = asyncio.run(fire(base, path, bodies, args.concurrency, args.max_seconds))
        report["batching_on" if batching else "batching_off"] = summarize(run, reference, bodies, args.tolerance)

    on, off = report["batching_on"], report["batching_off"]
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{args.task} on {args.model}: {args.requests} requests, {args.concurrency} concurrent, loopback")
        print(f"{'':14}{'req/s':>9}{'texts/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'req/batch':>11}{'lost':>6}{'failed':>8}{'wrong':>7}")
        for name, r in (("batching on", on), ("batching off", off)):
            print(f"{name:14}{r['requests_per_s']:9.1f}{r['texts_per_s']:10.1f}{r['p50_ms']:9.1f}{r['p99_ms']:9.1f}"
                  f"{r['requests_per_batch']:11.2f}{r['lost']:6d}{r['failed']:8d}{r['mismatched']:7d}")
        print(f"throughput ratio on/off: {on['requests_per_s'] / off['requests_per_s']:.2f}x")
    bad = sum(r["lost"] + r["failed"] + r["mismatched"] for r in (on, off))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
