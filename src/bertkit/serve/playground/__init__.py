"""The browser side of `bertkit serve`: the playground page at `/`, its assets under `/static/`, and `/docs` served offline."""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

log = logging.getLogger("bertkit.serve")

HERE = Path(__file__).parent
STATIC = "/static"  # every asset the page and the docs load lives under this one prefix (the gate opens it)
DOCS_ASSETS = f"{STATIC}/docs"
# Paths a browser must reach before it has a key: the page, the docs page and the schema it reads (plus STATIC/...).
PUBLIC_PATHS = ("/", "/docs", "/openapi.json")


def add_routes(app: FastAPI) -> None:
    """`GET /` (the playground), `/static/...`, and a `/docs` that works with no network.

    There is no `/redoc`: ReDoc's bundle loads its logo from its makers' CDN, so offline it shows a
    broken image and logs an error; Swagger UI at /docs covers the same schema.
    """
    docs_dir = _docs_assets()
    if docs_dir is not None:  # first: a mount at /static would otherwise swallow /static/docs/...
        app.mount(DOCS_ASSETS, StaticFiles(directory=docs_dir), name="docs-assets")
    app.mount(STATIC, StaticFiles(directory=HERE / "static"), name="playground-assets")

    @app.get("/", include_in_schema=False)
    async def playground() -> FileResponse:
        return FileResponse(HERE / "index.html", media_type="text/html")

    if docs_dir is None:
        log.warning("fastapi-offline is not installed: /docs loads Swagger UI from a CDN "
                    "(pip install fastapi-offline to serve it from this machine)")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")  # a proxy's prefix, kept in every URL the page loads
        assets = {"swagger_js_url": "swagger-ui-bundle.js", "swagger_css_url": "swagger-ui.css",
                  "swagger_favicon_url": "favicon.png"} if docs_dir else {}  # none: FastAPI's CDN defaults
        return get_swagger_ui_html(openapi_url=root + app.openapi_url, title=f"{app.title} - API docs",
                                   swagger_ui_parameters=app.swagger_ui_parameters,
                                   **{arg: f"{root}{DOCS_ASSETS}/{name}" for arg, name in assets.items()})


def _docs_assets() -> Path | None:
    """Swagger UI's dist files as the fastapi-offline package ships them (served from there, not copied)."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(spec.submodule_search_locations[0]) / "static"
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None
