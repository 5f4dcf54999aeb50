"""Running the app under uvicorn: bind first, drain the batchers on SIGTERM, exit 0 after a graceful stop."""
from __future__ import annotations

import contextlib
import signal
import socket
import threading

import uvicorn
from fastapi import FastAPI

from bertkit.errors import BertkitError


class Server(uvicorn.Server):
    """uvicorn's server, plus: a stop signal starts draining the batchers, and a drained stop exits 0."""

    def handle_exit(self, sig: int, frame) -> None:
        self.config.app.state.service.request_drain()  # /readyz turns 503 while uvicorn finishes open requests
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self):
        # uvicorn re-raises the signal once it has shut down, so the process would look killed by SIGTERM;
        # after every open request has been answered, stopping is a success.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or one line saying why not (port 0 picks a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise BertkitError(f"cannot listen on {host}:{port} ({e.strerror}); pick another --port or --host") from None
    return sock


def run(app: FastAPI, sock: socket.socket, log_level: str = "info", access_log: bool = True,
        graceful_timeout: float | None = 30.0) -> Server:
    """Serve until SIGTERM / SIGINT, then stop accepting, finish open requests, empty the queues and return."""
    config = uvicorn.Config(app, log_level=log_level, access_log=access_log, lifespan="on",
                            timeout_graceful_shutdown=graceful_timeout)
    server = Server(config)
    server.run(sockets=[sock])
    return server
