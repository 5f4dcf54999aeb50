"""Server settings: batching, request limits and the optional API key (no web framework needed to build them)."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from bertkit.errors import BertkitError

API_KEY_ENV = "BERTKIT_API_KEY"


@dataclass
class Settings:
    """Everything `bertkit serve` can be told; the defaults suit one CPU or GPU serving interactive traffic."""

    max_batch_tokens: int | None = None  # None: the model's default for its device (8192 on CPU)
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for company
    batching: bool = True
    max_texts: int = 128  # per request
    max_chars: int = 10_000  # per text; a BERT reads ~512 tokens, so longer texts are mostly cut anyway
    max_body_bytes: int = 2 * 1024 * 1024
    max_queue: int = 1024  # waiting requests per task before answering 503
    api_key: str | None = None
    warmup: bool = True  # one tiny inference before /readyz says ready

    def __post_init__(self) -> None:
        checks = {
            "max_batch_tokens": self.max_batch_tokens is None or self.max_batch_tokens >= 1,
            "max_wait_ms": self.max_wait_ms >= 0,
            "max_texts": self.max_texts >= 1,
            "max_chars": self.max_chars >= 1,
            "max_body_bytes": self.max_body_bytes >= 64,
            "max_queue": self.max_queue >= 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise BertkitError(f"invalid server setting {bad[0]}={getattr(self, bad[0])!r}; "
                               "sizes must be positive and max_wait_ms >= 0 (max_body_bytes >= 64)")
        if self.api_key is not None and not self.api_key.strip():
            raise BertkitError("the API key is empty; pass a non-empty --api-key (or unset BERTKIT_API_KEY)")

    @staticmethod
    def api_key_from_env() -> str | None:
        return os.environ.get(API_KEY_ENV) or None

    def public(self) -> dict:
        """The settings a client may see (never the key itself)."""
        out = asdict(self)
        out["api_key"] = self.api_key is not None
        out.pop("warmup")
        return out
