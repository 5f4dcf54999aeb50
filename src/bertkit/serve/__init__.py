"""HTTP serving (the `serve` extra: fastapi, uvicorn): `create_app(model, Settings(...))` and the micro-batcher."""
from typing import Any

from bertkit.serve.settings import Settings

__all__ = ["Settings", "create_app"]


def __getattr__(name: str) -> Any:
    # Lazy, so `bertkit --help` and Settings work without the web stack installed.
    if name == "create_app":
        from bertkit.serve.app import create_app

        return create_app
    raise AttributeError(f"module 'bertkit.serve' has no attribute {name!r}")
