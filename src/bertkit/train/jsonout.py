"""JSON that training and evaluation write: standard JSON only (no NaN or Infinity), files replaced atomically."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

from bertkit.checkpoint import atomic_write


def finite(value: Any) -> Any:
    """`value` with every NaN or infinite float (in dicts, lists and tuples) replaced by None, which JSON writes as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """json.dumps that refuses NaN and Infinity (a ValueError), which strict JSON readers cannot parse."""
    return json.dumps(value, allow_nan=False, **kwargs)


def write_json(path: str | Path, payload: Any) -> None:
    text = dumps(payload, indent=2, ensure_ascii=False) + "\n"
    atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def jsonl(records: Iterable[Any]) -> str:
    """JSON Lines text for `records`, one per line."""
    return "".join(dumps(r, ensure_ascii=False) + "\n" for r in records)
