"""Peak memory and time of the costliest requests `bertkit serve` accepts, and of the ones its limits refuse.

    python benchmarks/bench_serve_limits.py                          # minilm, the default limits
    python benchmarks/bench_serve_limits.py --model DIR --json       # any checkpoint: every endpoint it serves
    python benchmarks/bench_serve_limits.py --serve-flags="--max-texts 32"

The server runs in a subprocess with its default limits (plus --serve-flags). Every request is built
from what its GET /v1/model reports, so each is the largest that one limit lets through (or, marked
"refused", one just past it, or one that multiplies its sequences). Before each request the server's
peak resident memory (VmHWM) is reset through /proc/PID/clear_refs, so each row is that request's own
peak; `baseline` is the warmed-up server's. Linux only. --memory-limit-mb caps the server's address
space, so a request that would take the machine down kills only the server (its row says so).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

WORD = "word "


def start(model: str, flags: list[str], memory_limit_mb: int | None) -> tuple[subprocess.Popen, str, list[str]]:
    """`bertkit serve` on a free loopback port; returns the process, its base URL and its log so far."""
    def limit() -> None:
        if memory_limit_mb:
            size = memory_limit_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (size, size))

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1] / "src"), *sys.path]))
    proc = subprocess.Popen([sys.executable, "-m", "bertkit", "serve", "--model", model, "--port", "0", "--device", "cpu",
                             "--no-access-log", "--log-level", "warning", *flags],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env, preexec_fn=limit)
    log: list[str] = []
    found = threading.Event()
    url: list[str] = []

    def drain() -> None:
        for line in proc.stderr:
            log.append(line)
            m = re.search(r"http://[0-9.]+:\d+", line)
            if m and not url:
                url.append(m.group(0))
                found.set()
        found.set()

    threading.Thread(target=drain, daemon=True).start()
    found.wait(180)
    if not url:
        proc.kill()
        raise SystemExit("bertkit serve did not start:\n" + "".join(log))
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(url[0] + "/readyz", timeout=5).status_code == 200:
                return proc, url[0], log
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("bertkit serve never became ready:\n" + "".join(log))
        time.sleep(0.2)


def peak_mb(pid: int, reset: bool = False) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    peak = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024
    if reset:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    return peak


def fit(texts: int, chars: int, body_bytes: int, make) -> dict:
    """make(texts, chars) -> body; the largest `chars` (<= the limit) whose JSON fits the body limit."""
    while chars > 1 and len(json.dumps(make(texts, chars))) > body_bytes - 64:
        chars = int(chars * 0.95)
    return make(texts, chars)


def words(chars: int, first: str = "") -> str:
    return (first + WORD * (chars // len(WORD)))[:chars].strip()


def requests(info: dict) -> list[tuple[str, str, dict]]:
    """(name, endpoint, body): the costliest bodies each limit allows, and some it refuses."""
    lim, endpoints = info["limits"], info["endpoints"]
    n, chars, body, window = lim["max_texts"], lim["max_chars"], lim["max_body_bytes"], info["max_length"]
    vocab = info["config"]["vocab_size"]
    plain = lambda k, c: {"texts": [words(c) for _ in range(k)]}  # noqa: E731
    out = [
        ("tokenize: max texts x max chars", "/v1/tokenize", fit(n, chars, body, plain)),
        ("embed: max texts x max chars", "/v1/embed", fit(n, chars, body, plain)),
        ("embed: max texts of one word (vectors outgrow the input)", "/v1/embed", {"texts": ["word"] * n}),
        ("refused: embed, chunked with the widest overlap", "/v1/embed",
         fit(n, chars, body, lambda k, c: plain(k, c) | {"long": "chunk", "stride": window - 3})),
        ("refused: tokenize, chunked with the widest overlap", "/v1/tokenize",
         fit(n, chars, body, lambda k, c: plain(k, c) | {"long": "chunk", "stride": window - 3})),
        ("similarity: matrix of max texts", "/v1/similarity",
         fit(n, chars, body, lambda k, c: {"sentences": [words(c, "bank ") for _ in range(k)], "word": "bank",
                                           "matrix": True})),
    ]
    if endpoints.get("/v1/fill-mask"):
        masks = "[MASK] " * (window - 2)
        out += [
            ("fill-mask: max texts x max masks, top_k 1", "/v1/fill-mask", {"texts": [masks] * n, "top_k": 1}),
            ("fill-mask: 2 masks x the whole vocabulary", "/v1/fill-mask",
             {"texts": ["[MASK] and [MASK]"], "top_k": vocab}),
            ("refused: fill-mask, 8 x 400 masks x top_k 1000 (the 23.6 GB request)", "/v1/fill-mask",
             {"texts": ["[MASK] " * 400] * 8, "top_k": 1000}),
            ("refused: fill-mask, multi-piece targets at 100 masks x max texts", "/v1/fill-mask",
             {"texts": ["[MASK] " * 100] * n, "targets": [f"aardvark{i}" for i in range(n)]}),
        ]
    if endpoints.get("/v1/predict"):
        out.append(("predict: max texts x max chars", "/v1/predict", fit(n, chars, body, plain)))
    # What the limits let through first; then what they refuse, the costliest to refuse last: memory a process
    # has touched stays counted in its resident size, so a row's peak is never below the rows before it.
    return sorted(out, key=lambda r: (r[0].startswith("refused"), "chunk" in r[0] or "targets" in r[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--serve-flags", default="", help="extra `bertkit serve` flags, one string")
    parser.add_argument("--memory-limit-mb", type=int, default=None, help="cap the server's address space (RLIMIT_AS)")
    parser.add_argument("--only", choices=("all", "allowed", "refused"), default="all",
                        help="only the requests the limits let through, or only those they refuse")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    proc, url, log = start(args.model, args.serve_flags.split(), args.memory_limit_mb)
    rows = []
    try:
        info = httpx.get(url + "/v1/model", timeout=30).json()
        baseline = peak_mb(proc.pid, reset=True)
        for name, endpoint, body in requests(info):
            if args.only != "all" and name.startswith("refused") != (args.only == "refused"):
                continue
            began = time.perf_counter()
            try:
                r = httpx.post(url + endpoint, json=body, timeout=600)
                status, error = r.status_code, r.json().get("error", {}) if r.status_code >= 400 else {}
                size = len(r.content)
            except httpx.HTTPError as e:
                status, error, size = None, {"type": "no answer", "message": f"{type(e).__name__}: {e}"}, 0
            seconds = time.perf_counter() - began
            alive = proc.poll() is None
            rows.append({"request": name, "endpoint": endpoint, "status": status, "error": error.get("type"),
                         "message": error.get("message"), "body_bytes": len(json.dumps(body)), "answer_bytes": size,
                         "seconds": round(seconds, 3),
                         "peak_mb": round(peak_mb(proc.pid, reset=True), 1) if alive else None})
            if not alive:
                break
    finally:
        alive = proc.poll() is None
        proc.kill()
        proc.wait()
    report = {"model": args.model, "baseline_mb": round(baseline, 1), "server_alive": alive,
              "limits": info["limits"], "rows": rows,
              "peak_mb": max([r["peak_mb"] or float("inf") for r in rows] + [baseline]),
              "log_tail": "".join(log[-20:]) if not alive else ""}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"{args.model}: warmed-up server {baseline:.0f} MB; limits {json.dumps(info['limits'])}")
    print(f"{'request':<72} {'status':>6} {'MB peak':>8} {'seconds':>8} {'answer':>10}")
    for r in rows:
        print(f"{r['request']:<72} {str(r['status']):>6} {str(r['peak_mb']):>8} {r['seconds']:>8.2f} "
              f"{r['answer_bytes']:>10,}")
    if not alive:
        print("the server died:\n" + report["log_tail"])


if __name__ == "__main__":
    main()
