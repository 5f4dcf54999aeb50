"""`bertkit serve` as a real process: readiness, the API key from the environment, a graceful SIGTERM, the start-up
report, slow and idle clients, and how many connections it serves at once."""
from __future__ import annotations

import re
import select
import signal
import socket
import threading
import time
import urllib.request

import pytest

pytest.importorskip("uvicorn")

from bertkit.cli import main  # noqa: E402
from helpers import ServeProcess, http_answer, http_call, read_all  # noqa: E402

KEY = "process-key"


def test_sigterm_finishes_the_request_in_flight_then_exits_0(minilm_dir):
    # A long batching wait: the request is still queued when SIGTERM comes, so draining must flush it.
    live = ServeProcess(minilm_dir, "--max-wait-ms", "2000", env={"BERTKIT_API_KEY": KEY})
    with live:
        base = live.url
        assert http_call(f"{base}/healthz")[0] == 200
        assert http_call(f"{base}/readyz") == (200, {"status": "ready"})  # probes send no key; they reveal nothing
        assert http_call(f"{base}/v1/model")[0] == 401  # the key came from BERTKIT_API_KEY
        assert live.report["api_key"] is True

        texts = [f"sentence number {i} " + "about rivers and banks " * 40 for i in range(48)]  # ~1 s of work
        answer: dict = {}
        worker = threading.Thread(target=lambda: answer.update(r=http_call(f"{base}/v1/embed", {"texts": texts}, KEY)))
        worker.start()
        time.sleep(0.5)
        sent = time.monotonic()
        live.proc.send_signal(signal.SIGTERM)
        worker.join(timeout=60)
        code = live.wait(60)
    err = "".join(live.log)
    status, body = answer["r"]
    assert status == 200 and len(body["embeddings"]) == 48 and body["dim"] == 384
    assert code == 0, err
    assert "Shutting down" in err and "Traceback" not in err
    assert time.monotonic() - sent < 30


def test_serve_refuses_a_taken_port_and_bad_limits_in_one_line(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["serve", "--port", str(port)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: cannot listen on 127.0.0.1:") and err.count("\n") == 1
    code = main(["serve", "--port", "0", "--max-texts", "0"])
    assert code == 2 and "--max-texts must be at least 1, not 0" in capsys.readouterr().err


def test_json_prints_the_start_up_report_as_one_line(tiny_mlm_dir):
    with ServeProcess(tiny_mlm_dir, "--max-wait-ms", "3") as live:
        report = live.report
        assert report["url"] == live.url and re.fullmatch(r"http://127\.0\.0\.1:\d+", live.url)
        assert (report["playground"], report["docs"], report["limits"]) == (
            f"{live.url}/", f"{live.url}/docs", f"{live.url}/v1/model")
        model = http_call(report["limits"])[1]
        assert sorted(report["endpoints"]) == sorted([p for p, ok in model["endpoints"].items() if ok] + ["/v1/embeddings"])
        assert report["batching"] == {"max_batch_tokens": model["limits"]["max_batch_tokens"], "max_wait_ms": 3.0}
        assert report["api_key"] is False
        # The human lines are not printed under --json; the warning about the open server still is, on stderr.
        assert not any(line.startswith("bertkit serve:") for line in live.log)
        assert any(line.startswith("warning: no API key") for line in live.log)


def test_slow_idle_and_oversized_clients_are_cut_off_with_json_errors(tiny_mlm_dir):
    """uvicorn has no deadline for a request's head: a client could hold a connection forever by sending nothing."""
    with ServeProcess(tiny_mlm_dir, "--header-timeout", "0.5", "--keep-alive-timeout", "0.5", "--max-header-bytes",
                      "2048", "--max-connections", "3", json=False) as live:
        start = "".join(live.log[:3])
        base = live.url
        assert f"playground: {base}/" in start and f"API docs: {base}/docs" in start
        assert "API key OFF" in start and "warning: no API key" in start

        idle = live.connect()  # connects and says nothing: let go, with no answer
        assert read_all(idle) == b""
        slow = live.connect()  # starts a head and never finishes it: told why
        slow.sendall(b"POST /v1/embed HTTP/1.1\r\nHost: x\r\n")
        status, body = http_answer(read_all(slow))
        assert status == 408 and body["error"]["type"] == "request_timeout" and "--header-timeout" in body["error"]["message"]
        big = live.connect()  # a head over the cap, whole or in pieces
        big.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4096 + b"\r\n\r\n")
        status, body = http_answer(read_all(big))
        assert status == 431 and "--max-header-bytes" in body["error"]["message"]
        dribble = live.connect()
        for _ in range(3):
            dribble.sendall(b"X-More: " + b"b" * 1000 + b"\r\n" if _ else b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        status, body = http_answer(read_all(dribble))
        assert status == 400 and "--max-header-bytes" in body["error"]["message"]
        kept = live.connect()  # a finished request's connection is closed once idle for --keep-alive-timeout
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        raw = read_all(kept)
        assert raw.startswith(b"HTTP/1.1 200") and raw.endswith(b'{"status":"ok"}')

        held = [live.connect() for _ in range(3)]  # three requests waiting for their bodies: the cap
        for sock in held:
            sock.sendall(b"POST /v1/embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 15\r\nExpect: 100-continue\r\n\r\n")
            assert sock.recv(1024).startswith(b"HTTP/1.1 100")  # the gate is reading its body
        extra = live.connect()
        extra.sendall(b'POST /v1/embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
                      b'Content-Length: 15\r\n\r\n{"texts": ["a"]}')
        status, body = http_answer(read_all(extra))
        assert status == 503 and "--max-connections" in body["error"]["message"]
        for sock in [idle, slow, big, dribble, kept, *held, extra]:
            sock.close()
        assert live.proc.poll() is None  # none of it harmed the server


def _metric(url: str, name: str, **labels: str) -> float:
    """One sample of /metrics (0 when the series is absent)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=30) as r:
        text = r.read().decode()
    shown = ",".join(f'{k}="{v}"' for k, v in labels.items())
    found = re.search(rf"^{name}{{{re.escape(shown)}}} (\S+)$" if labels else rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_a_burst_of_connections_is_refused_only_past_the_limit(tiny_mlm_dir):
    """200 connections at once against --max-connections 128: the first 128 requests taken on are served, the
    other 72 are refused; none is refused for the connections that are merely open around it."""
    limit, burst = 128, 200
    body = b'{"texts": ["a"]}'
    head = (b"POST /v1/embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % len(body))
    with ServeProcess(tiny_mlm_dir, "--max-connections", str(limit), "--body-timeout", "60") as live:
        socks = [live.connect(timeout=60) for _ in range(burst)]  # every connection open before any request
        try:
            for sock in socks:
                sock.sendall(head)  # each request is then being served, waiting for its body
            deadline = time.monotonic() + 60
            while True:  # until the server has taken on or refused every request
                served = _metric(live.url, "bertkit_connections_served")
                refused = _metric(live.url, "bertkit_requests_total", endpoint="/v1/embed", status="503")
                if served + refused >= burst or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert (served, refused) == (limit, burst - limit)
            while True:  # the refused ones have their answer waiting; the served ones wait for their bodies
                answered = select.select(socks, [], [], 0.5)[0]
                if len(answered) >= refused or time.monotonic() > deadline:
                    break
            answers = [http_answer(read_all(sock))[0] for sock in answered]
            for sock in socks:
                if sock not in answered:
                    sock.sendall(body)
            answers += [http_answer(read_all(sock))[0] for sock in socks if sock not in answered]
        finally:
            for sock in socks:
                sock.close()
    assert answers.count(200) == limit and answers.count(503) == burst - limit
