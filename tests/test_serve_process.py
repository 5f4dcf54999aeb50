"""`bertkit serve` as a real process: readiness, the API key from the environment, and a graceful SIGTERM."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest

pytest.importorskip("uvicorn")

from bertkit.cli import main  # noqa: E402

KEY = "process-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, body: dict | None = None, key: str | None = KEY, timeout: float = 60) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_sigterm_finishes_the_request_in_flight_then_exits_0():
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), BERTKIT_API_KEY=KEY)
    # A long batching wait: the request is still queued when SIGTERM comes, so draining must flush it.
    proc = subprocess.Popen([sys.executable, "-m", "bertkit", "serve", "--model", "minilm", "--device", "cpu",
                             "--port", str(port), "--max-wait-ms", "2000", "--no-access-log"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                if call(f"{base}/readyz", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the server never became ready"
            time.sleep(0.2)
        assert call(f"{base}/healthz", key=None)[0] == 200
        assert call(f"{base}/readyz", key=None)[0] == 401  # the key came from BERTKIT_API_KEY

        texts = [f"sentence number {i} " + "about rivers and banks " * 40 for i in range(48)]  # ~1 s of work
        answer: dict = {}
        worker = threading.Thread(target=lambda: answer.update(r=call(f"{base}/v1/embed", {"texts": texts})))
        worker.start()
        time.sleep(0.5)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        worker.join(timeout=60)
        code = proc.wait(timeout=60)
        _, err = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
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


class Live:
    """`bertkit serve` in a subprocess on a free port, its stderr collected (a full pipe would block it)."""

    def __init__(self, *flags: str) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        env.pop("BERTKIT_API_KEY", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "bertkit", "serve", "--port", "0", "--device", "cpu",
                                      "--no-access-log", *flags],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, env=env)
        self.lines: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)
            if "Application startup complete" in line:
                self.ready.set()
        self.ready.set()

    def __enter__(self) -> "Live":
        assert self.ready.wait(120) and self.proc.poll() is None, "".join(self.lines)
        self.port = int(re.search(r"http://127\.0\.0\.1:(\d+)", self.lines[0]).group(1))
        deadline = time.monotonic() + 30
        while True:  # uvicorn listens a moment after it logs the start-up
            try:
                call(f"http://127.0.0.1:{self.port}/healthz", key=None, timeout=5)
                return self
            except OSError:
                assert time.monotonic() < deadline and self.proc.poll() is None, "".join(self.lines)
                time.sleep(0.05)

    def __exit__(self, *exc) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (the socket's timeout bounds the wait)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def answer(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_slow_idle_and_oversized_clients_are_cut_off_with_json_errors(tiny_mlm_dir):
    """uvicorn has no deadline for a request's head: a client could hold a connection forever by sending nothing."""
    with Live("--model", str(tiny_mlm_dir), "--header-timeout", "0.5", "--keep-alive-timeout", "0.5",
              "--max-header-bytes", "2048", "--max-connections", "3") as live:
        start = "".join(live.lines[:3])
        base = f"http://127.0.0.1:{live.port}"
        assert f"playground: {base}/" in start and f"API docs: {base}/docs" in start
        assert "API key OFF" in start and "warning: no API key" in start

        idle = live.connect()  # connects and says nothing: let go, with no answer
        assert read_all(idle) == b""
        slow = live.connect()  # starts a head and never finishes it: told why
        slow.sendall(b"POST /v1/embed HTTP/1.1\r\nHost: x\r\n")
        status, body = answer(read_all(slow))
        assert status == 408 and body["error"]["type"] == "request_timeout" and "--header-timeout" in body["error"]["message"]
        big = live.connect()  # a head over the cap, whole or in pieces
        big.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4096 + b"\r\n\r\n")
        status, body = answer(read_all(big))
        assert status == 431 and "--max-header-bytes" in body["error"]["message"]
        dribble = live.connect()
        for _ in range(3):
            dribble.sendall(b"X-More: " + b"b" * 1000 + b"\r\n" if _ else b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        status, body = answer(read_all(dribble))
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
        status, body = answer(read_all(extra))
        assert status == 503 and "--max-connections" in body["error"]["message"]
        for sock in [idle, slow, big, dribble, kept, *held, extra]:
            sock.close()
        assert live.proc.poll() is None  # none of it harmed the server
