"""The FastAPI app: routes for every task, health and metrics, error handlers and the published OpenAPI schema."""
# No `from __future__ import annotations`: FastAPI reads the request models from the signatures at definition time.
import logging
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from bertkit import __version__
from bertkit.errors import BertkitError, OptionError
from bertkit.model import Model
from bertkit.serve import schemas as s
from bertkit.serve.errors import (ServeError, error_response, http_error, is_json, not_json, unreadable_json,
                                  validation_error)
from bertkit.serve.gate import Gate, is_public
from bertkit.serve.metrics import CONTENT_TYPE
from bertkit.serve.openai import add_routes as add_openai
from bertkit.serve.playground import add_routes as add_playground
from bertkit.serve.service import Service
from bertkit.serve.settings import PRECISION_HEADER, Settings
from bertkit.tasks.base import Task

log = logging.getLogger("bertkit.serve")

ERRORS = {
    400: {"model": s.ErrorResponse, "description": "invalid JSON or HTTP, or a task this model cannot serve"},
    401: {"model": s.ErrorResponse, "description": "missing or wrong API key (when the server has one)"},
    408: {"model": s.ErrorResponse, "description": "the body did not arrive within --body-timeout seconds"},
    413: {"model": s.ErrorResponse, "description": "request body over --max-body-bytes"},
    415: {"model": s.ErrorResponse, "description": "the body is not sent as application/json"},
    422: {"model": s.ErrorResponse, "description": "a field is missing, of the wrong type or unusable; or the request is "
                                                   "over a limit (type limit_exceeded: --max-texts, --max-chars, "
                                                   "--max-request-tokens, --max-answer-bytes)"},
    431: {"model": s.ErrorResponse, "description": "request headers over --max-header-bytes"},
    503: {"model": s.ErrorResponse, "description": "overloaded (--max-queue, --max-connections) or shutting down; "
                                                   "retry after Retry-After seconds"},
}
DESCRIPTION = """BERT-family encoders over HTTP: {tasks}.

Bodies mirror `bertkit <command> --json`. Concurrent requests are merged into token-budget batches.
Every error answers `{{"error": {{"type": ..., "message": ...}}}}`."""


def create_app(model: Model, settings: Settings | None = None) -> FastAPI:
    """An ASGI app serving `model`; run it with uvicorn (or `bertkit serve`). The model is used from one thread only."""
    settings = settings or Settings()
    service = Service(model, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.startup()
        yield
        await service.shutdown()  # uvicorn has already waited for open requests; this empties the queues

    names = ", ".join(service.tasks)
    # The playground module serves /docs from local files (FastAPI's loads a CDN); /redoc is off (see there).
    app = FastAPI(title="bertkit", version=__version__, description=DESCRIPTION.format(tasks=names), lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    app.state.service = service
    app.add_middleware(Gate, service=service)
    app.add_middleware(PrecisionHeader, precision=model.precision)  # outermost: errors the gate sends carry it too
    _add_error_handlers(app)
    for task in service.tasks.values():
        _add_task_route(app, service, task, s.request_model(task, settings.max_texts, settings.max_chars))

    @app.get("/v1/model", response_model=s.ModelInfo, responses={401: ERRORS[401]}, tags=["server"])
    async def model_info() -> Any:
        """The model's config, heads and labels, which endpoints it serves, and this server's limits."""
        return JSONResponse(service.info())

    @app.get("/healthz", response_model=s.Status, tags=["server"])
    async def healthz() -> Any:
        """The process is up (never needs the API key)."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=s.Status, responses={503: ERRORS[503]}, tags=["server"])
    async def readyz() -> Any:
        """Ready for traffic: warmed up and not shutting down (503 while draining). Never needs the API key."""
        if service.draining:
            return error_response(503, "shutting_down", "the server is draining before it exits")
        if not service.ready:
            return error_response(503, "starting", "the model is still warming up")
        return {"status": "ready"}

    @app.get("/metrics", response_class=PlainTextResponse, responses={401: ERRORS[401]}, tags=["server"])
    async def metrics() -> Any:
        """Prometheus text format: requests by endpoint and status, latency, batch sizes, tokens per second."""
        return PlainTextResponse(service.metrics.render(), media_type=CONTENT_TYPE)

    add_openai(app, service, ERRORS)  # POST /v1/embeddings, OpenAI's shape over the embed task
    add_playground(app)  # GET /, /static/..., /docs

    if settings.api_key is not None:
        _document_api_key(app)
    service.paths = {route.path for route in app.routes}
    return app


def _add_task_route(app: FastAPI, service: Service, task: Task, Request: type) -> None:
    """POST /v1/<task>: the body is the task's request model, the answer its payload (as `bertkit <task> --json`)."""
    async def check() -> None:  # runs before the body is validated: "cannot serve this" is the first thing to say
        service.require(task)

    async def endpoint(body: Request) -> Any:  # type: ignore[valid-type]
        return JSONResponse(await service.handle(task, body))

    doc = (type(task).__doc__ or task.summary).strip().split("\n\n")[0]
    app.post(f"/v1/{task.name}", response_model=task.Response, responses=ERRORS, tags=["tasks"],
             summary=task.summary, description=doc, name=task.method,
             dependencies=[Depends(check)])(endpoint)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        content_type = request.headers.get("content-type", "")
        if not is_json(content_type) and all(tuple(e.get("loc", ())) == ("body",) for e in exc.errors()):
            return not_json(content_type)  # FastAPI did not even try to parse it
        route = request.scope.get("route")
        fields = []
        body_field = getattr(route, "body_field", None)
        if body_field is not None:
            fields = list(getattr(body_field.field_info.annotation, "model_fields", {}))
        return validation_error(exc.errors(), fields)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.__cause__ is not None:  # FastAPI failed to parse the JSON body it was sent
            return unreadable_json(exc.__cause__)
        return http_error(exc.status_code, exc.detail, request.method, request.url.path, getattr(exc, "headers", None))

    @app.exception_handler(ServeError)
    async def on_serve(request: Request, exc: ServeError) -> JSONResponse:
        return error_response(exc.status, exc.type, exc.message, exc.headers)

    @app.exception_handler(OptionError)
    async def on_option(request: Request, exc: OptionError) -> JSONResponse:  # a field of the body, named as sent
        return error_response(422, "invalid_request", str(exc))

    @app.exception_handler(BertkitError)
    async def on_bertkit(request: Request, exc: BertkitError) -> JSONResponse:
        return error_response(422, "invalid_input", str(exc))

    @app.exception_handler(Exception)
    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", f"{type(exc).__name__}: {exc}")


class PrecisionHeader:
    """Pure ASGI middleware: every HTTP answer names the precision the model runs at (X-Bertkit-Precision)."""

    def __init__(self, app: Any, precision: str) -> None:
        self.app, self.header = app, (PRECISION_HEADER.lower().encode("latin-1"), precision.encode("latin-1"))

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        await self.app(scope, receive, send_with_header)


def _document_api_key(app: FastAPI) -> None:
    """Publish the two accepted credentials in the OpenAPI schema, so generated clients send one."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            }
            for path, ops in schema.get("paths", {}).items():
                if not is_public(path):
                    for op in ops.values():
                        op["security"] = [{"bearer": []}, {"apiKey": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
