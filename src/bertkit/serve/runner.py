"""Running the app under uvicorn: bind first, bound slow and idle clients, drain the batchers on SIGTERM, exit 0 after a graceful stop."""
from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from bertkit.errors import BertkitError
from bertkit.serve.errors import error_response
from bertkit.serve.settings import Settings


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


class HeadDeadline(H11Protocol):
    """uvicorn's h11 protocol, plus a deadline for a request's head (which uvicorn does not have) and JSON errors.

    uvicorn closes a keep-alive connection that stays idle after a response, but a client that
    connects and sends nothing, or sends its headers a byte at a time, would hold the connection
    forever. Here the head must be complete `header_timeout` seconds after the connection opens (or
    after the previous response); the body has its own deadline in the gate (408). What uvicorn
    refuses before the app sees a request (a malformed or oversized head) gets the app's error shape.
    """

    header_timeout: float = Settings.header_timeout

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._partial = False  # bytes of a head have arrived
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_arrived()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        between = self._between_requests()
        if between:
            self._partial = True
            if self._deadline is None:  # uvicorn's keep-alive timer stops at the first byte; this one goes on
                self._await_head()
        super().data_received(data)
        if not self._between_requests():
            self._head_arrived()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._partial = False

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _await_head(self) -> None:
        self._deadline = self.loop.call_later(self.header_timeout, self._too_slow)

    def _head_arrived(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or not self._between_requests():
            return
        if self._partial:  # a client in the middle of a head is told why; an idle one is just let go, as keep-alive does
            body = error_response(408, "request_timeout", f"the request's headers did not arrive within "
                                  f"{self.header_timeout:g} s ({Settings.flag('header_timeout')}); send them at once").body
            # h11 cannot answer a request it has not parsed; the connection closes right after these bytes.
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                                 b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        limit = self.config.h11_max_incomplete_event_size
        body = error_response(400, "bad_request", f"the request is not valid HTTP/1.1, or its headers are over "
                              f"{limit} bytes ({Settings.flag('max_header_bytes')})").body
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=body),
                      h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or one line saying why not (port 0 picks a free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except (OSError, OverflowError, TypeError, ValueError) as e:  # taken, not ours, or not a host name at all
        sock.close()
        reason = getattr(e, "strerror", None) or str(e)
        raise BertkitError(f"cannot listen on {host}:{port} ({reason}); pick another --port or --host") from None
    return sock


def config(app: FastAPI, settings: Settings, log_level: str = "info", access_log: bool = True) -> uvicorn.Config:
    """uvicorn's configuration from the settings: timeouts for idle, slow and stopping clients, and the header size cap."""
    protocol = type("HeadDeadline", (HeadDeadline,), {"header_timeout": settings.header_timeout})
    return uvicorn.Config(app, log_level=log_level, access_log=access_log, lifespan="on", http=protocol,
                          timeout_keep_alive=settings.keep_alive_timeout,  # type: ignore[arg-type]  # a float works
                          timeout_graceful_shutdown=settings.graceful_timeout,  # type: ignore[arg-type]
                          h11_max_incomplete_event_size=settings.max_header_bytes)


def serving(app: FastAPI, settings: Settings, log_level: str = "info", access_log: bool = True) -> Server:
    """The server for `app`, with the gate told how many connections are open (for --max-connections)."""
    server = Server(config(app, settings, log_level, access_log))
    app.state.service.connections = lambda: len(server.server_state.connections)
    return server


def run(app: FastAPI, sock: socket.socket, settings: Settings, log_level: str = "info",
        access_log: bool = True) -> Server:
    """Serve until SIGTERM / SIGINT, then stop accepting, finish open requests, empty the queues and return."""
    server = serving(app, settings, log_level, access_log)
    server.run(sockets=[sock])
    return server
