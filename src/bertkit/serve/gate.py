"""The ASGI layer every request passes first: metrics, header size, draining, the connection cap, the API key, the body's size and deadline."""
from __future__ import annotations

import asyncio
import hmac
import time
from typing import TYPE_CHECKING, Callable

from starlette.responses import JSONResponse

from bertkit.serve.errors import error_response
from bertkit.serve.settings import Settings

if TYPE_CHECKING:
    from bertkit.serve.service import Service

PROBES = ("/healthz", "/readyz")  # what orchestrators poll, sending no key: they say only "ok", "ready" or why not
OPEN_WHILE_DRAINING = (*PROBES, "/metrics")  # also past --max-connections: probes must get through
CLIENT_CLOSED = 499  # nginx's "client closed request": the client left before an answer; no error of ours
CLOSE = {"Connection": "close", "Retry-After": "1"}


class _Gone(Exception):
    """The client disconnected while its body was being read."""


def is_public(path: str) -> bool:
    """Paths that need no API key: the liveness and readiness probes (their answers reveal nothing but the state),
    and what a browser loads before it can ask for the key (the playground page, the API docs, the schema they read,
    their static files). Every answer a task gives, /v1/model and /metrics need it."""
    from bertkit.serve.playground import PUBLIC_PATHS, STATIC

    return path in PROBES or path in PUBLIC_PATHS or path.startswith(STATIC + "/")


class Gate:
    """Pure ASGI middleware (no per-request task or body copy beyond the one it must make)."""

    def __init__(self, app: Callable, service: "Service") -> None:
        self.app = app
        self.service = service
        settings = service.settings
        self.key = settings.api_key.encode("utf-8") if settings.api_key is not None else None
        self.max_body = settings.max_body_bytes
        self.body_timeout = settings.body_timeout
        self.max_connections = settings.max_connections
        self.max_header_bytes = settings.max_header_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what an exception escaping the app turns into
        started = gone = False

        async def send_and_watch(message: dict) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
            await send(message)

        async def receive_and_watch() -> dict:
            nonlocal gone
            message = await receive()
            gone = gone or message["type"] == "http.disconnect"
            return message

        self.service.in_flight += 1
        try:
            await self._handle(scope, receive_and_watch, send_and_watch)
        finally:
            self.service.in_flight -= 1
            if gone and not started:
                status = CLIENT_CLOSED
            path = scope.get("path", "")
            self.service.metrics.observe_request(path if path in self.service.paths else "other", status,
                                                 time.perf_counter() - start)

    async def _handle(self, scope: dict, receive: Callable, send: Callable) -> None:
        reply = self._refusal(scope)
        if reply is not None:
            await reply(scope, receive, send)
            return
        if scope.get("path", "") in OPEN_WHILE_DRAINING:  # probes pass the cap, and do not count against it
            await self._serve(scope, receive, send)
            return
        # Counted from here, when the request is taken on, to its answer: the cap is on requests being served, so a
        # burst's connections that are still arriving, or idle between requests, never refuse one another.
        self.service.serving += 1
        try:
            await self._serve(scope, receive, send)
        finally:
            self.service.serving -= 1

    async def _serve(self, scope: dict, receive: Callable, send: Callable) -> None:
        try:
            body = await self._read_body(scope, receive)
        except _Gone:  # nobody is left to answer
            return
        if isinstance(body, JSONResponse):
            await body(scope, receive, send)
            return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body, only a disconnect can come

        await self.app(scope, replay, send)

    def _refusal(self, scope: dict) -> JSONResponse | None:
        """Why a request is turned away before its body is read, if it is."""
        path = scope.get("path", "")
        # uvicorn caps only a head that arrives in pieces (--max-header-bytes is h11's buffer); this caps every head.
        head = sum(len(name) + len(value) + 4 for name, value in scope.get("headers", []))
        if head > self.max_header_bytes:
            return error_response(431, "headers_too_large", f"the request's headers take {head} bytes, over this "
                                  f"server's limit of {self.max_header_bytes} ({Settings.flag('max_header_bytes')})",
                                  {"Connection": "close"})
        probe = path in OPEN_WHILE_DRAINING
        if self.service.draining and not probe:
            return error_response(503, "shutting_down", "the server is shutting down; retry on another instance", CLOSE)
        if self.service.serving >= self.max_connections and not probe:
            return error_response(503, "overloaded", f"this server is serving {self.service.serving} connections, its "
                                  f"limit ({Settings.flag('max_connections')}); retry shortly", CLOSE)
        if self.key is not None and not is_public(path) and not self._authorized(scope):
            return error_response(401, "unauthorized", "this server needs an API key: send 'Authorization: Bearer KEY' "
                                  "or 'X-API-Key: KEY'", {"WWW-Authenticate": 'Bearer realm="bertkit"'})
        return None

    def _authorized(self, scope: dict) -> bool:
        offered: list[bytes] = []
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, token = value.strip().partition(b" ")
                if scheme.lower() == b"bearer":
                    offered.append(token.strip())
            elif name == b"x-api-key":
                offered.append(value.strip())
        # compare_digest on every offered value: the time taken says nothing about how much of the key matched.
        return any([hmac.compare_digest(token, self.key) for token in offered])

    async def _read_body(self, scope: dict, receive: Callable) -> bytes | JSONResponse:
        """The whole body, or the answer refusing it: over --max-body-bytes (413) or not in by --body-timeout (408)."""
        too_big = error_response(413, "payload_too_large",
                                 f"the request body is larger than this server's limit of {self.max_body} bytes "
                                 f"({Settings.flag('max_body_bytes')}); send fewer or shorter texts per request")
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                return too_big  # refuse before reading a byte of it
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout
        chunks, size = [], 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0))
            except asyncio.TimeoutError:
                return error_response(408, "request_timeout",
                                      f"the request body did not arrive within {self.body_timeout:g} s "
                                      f"({Settings.flag('body_timeout')}); {size} bytes came; send it at once", CLOSE)
            if message["type"] == "http.disconnect":
                raise _Gone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return too_big
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
