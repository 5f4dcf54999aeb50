"""The ASGI layer every request passes first: metrics, draining, the API key and the body-size limit."""
from __future__ import annotations

import hmac
import time
from typing import TYPE_CHECKING, Callable

from starlette.responses import JSONResponse

from bertkit.serve.errors import error_response

if TYPE_CHECKING:
    from bertkit.serve.service import Service

OPEN_WHILE_DRAINING = ("/healthz", "/readyz", "/metrics")


class Gate:
    """Pure ASGI middleware (no per-request task or body copy beyond the one it must make)."""

    def __init__(self, app: Callable, service: "Service") -> None:
        self.app = app
        self.service = service
        key = service.settings.api_key
        self.key = key.encode("utf-8") if key is not None else None
        self.max_body = service.settings.max_body_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what an exception escaping the app turns into

        async def send_and_watch(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.service.in_flight += 1
        try:
            await self._handle(scope, receive, send_and_watch)
        finally:
            self.service.in_flight -= 1
            path = scope.get("path", "")
            self.service.metrics.observe_request(path if path in self.service.paths else "other", status,
                                                 time.perf_counter() - start)

    async def _handle(self, scope: dict, receive: Callable, send: Callable) -> None:
        path = scope.get("path", "")
        if self.service.draining and path not in OPEN_WHILE_DRAINING:
            reply = error_response(503, "shutting_down", "the server is shutting down; retry on another instance",
                                   {"Connection": "close", "Retry-After": "1"})
            await reply(scope, receive, send)
            return
        if self.key is not None and path != "/healthz" and not self._authorized(scope):
            reply = error_response(401, "unauthorized", "this server needs an API key: send 'Authorization: Bearer KEY' "
                                   "or 'X-API-Key: KEY'", {"WWW-Authenticate": 'Bearer realm="bertkit"'})
            await reply(scope, receive, send)
            return
        body, problem = await self._read_body(scope, receive)
        if problem is not None:
            await problem(scope, receive, send)
            return
        if body is None:  # the client went away mid-body; nobody is left to answer
            return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body, only a disconnect can come

        await self.app(scope, replay, send)

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

    async def _read_body(self, scope: dict, receive: Callable) -> tuple[bytes | None, JSONResponse | None]:
        too_big = error_response(413, "payload_too_large",
                                 f"the request body is larger than this server's limit of {self.max_body} bytes "
                                 "(--max-body-bytes); send fewer or shorter texts per request")
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                return b"", too_big  # refuse before reading a byte of it
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None, None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return b"", too_big
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), None
