"""`bertkit serve` as a real process: readiness, the API key from the environment, and a graceful SIGTERM."""
from __future__ import annotations

import json
import os
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
    assert code == 2 and "max_texts=0" in capsys.readouterr().err
