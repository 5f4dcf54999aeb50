"""The one error shape, {"error": {"type", "message"}}, and the translation of framework errors into it."""
from __future__ import annotations

import re
from typing import Any, Sequence

from starlette.responses import JSONResponse

from bertkit.serve.settings import Settings

HTTP_TYPES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
              406: "not_acceptable", 408: "request_timeout", 413: "payload_too_large", 415: "unsupported_media_type",
              422: "invalid_request", 429: "too_many_requests", 431: "headers_too_large", 503: "unavailable"}


class ServeError(Exception):
    """An error with its HTTP status and a stable `type`; the app answers it as `{"error": {...}}`."""

    def __init__(self, status: int, type: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.type, self.message, self.headers = status, type, message, headers


def error_response(status: int, type: str, message: str, headers: dict[str, str] | None = None,
                   details: list | None = None) -> JSONResponse:
    error: dict[str, Any] = {"type": type, "message": message}
    if details:
        error["details"] = details
    return JSONResponse({"error": error}, status_code=status, headers=headers)


def http_error(status: int, detail: Any, method: str, path: str, headers: dict[str, str] | None = None) -> JSONResponse:
    if status == 404:
        message = f"there is no {path}; see /docs (or /openapi.json) for the endpoints"
    elif status == 405:
        message = f"{method} is not allowed on {path}" + (f"; use {headers['Allow']}" if headers and "Allow" in headers else "")
    else:
        message = detail if isinstance(detail, str) else HTTP_TYPES.get(status, "error").replace("_", " ")
    return error_response(status, HTTP_TYPES.get(status, "error"), message, headers)


def unreadable_json(cause: BaseException) -> JSONResponse:
    """A JSON body the parser gave up on without saying where (FastAPI answers those with a bare 400)."""
    if isinstance(cause, RecursionError):
        reason = "it is nested too deeply for the parser; a request body needs a few levels"
    elif isinstance(cause, UnicodeError):
        reason = "it is not UTF-8 text"
    else:
        reason = "it could not be read"
    return error_response(400, "invalid_json", f"the request body is not valid JSON ({reason}); send a JSON object")


def not_json(content_type: str) -> JSONResponse:
    shown = f"Content-Type {content_type!r}" if content_type else "no Content-Type"
    return error_response(415, "unsupported_media_type",
                          f"the request has {shown}; send a JSON object with Content-Type: application/json")


def is_json(content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def validation_error(errors: Sequence[dict], fields: Sequence[str] = ()) -> JSONResponse:
    """One readable message naming every problem (where, what), plus the list itself under `details`."""
    if any(e.get("type") == "json_invalid" for e in errors):
        e = next(e for e in errors if e.get("type") == "json_invalid")
        where = e["loc"][-1] if len(e.get("loc", ())) > 1 else "?"
        reason = (e.get("ctx") or {}).get("error", "decode error")
        return error_response(400, "invalid_json", f"the request body is not valid JSON ({reason} at character {where})")
    details, kinds = [], set()
    for e in one_branch(errors):
        kind = e.get("type", "")
        loc = _where(e.get("loc", ()), keep_all=kind == "extra_forbidden")
        details.append({"loc": loc, "type": kind, "message": _message(loc, kind, e, fields)})
        kinds.add("limit_exceeded" if kind in ("too_long", "string_too_long") else kind)
    shown = "; ".join(d["message"] for d in details[:5]) + (f"; and {len(details) - 5} more" if len(details) > 5 else "")
    kind = "limit_exceeded" if kinds == {"limit_exceeded"} else "invalid_request"
    return error_response(422, kind, shown, details=details)


def _where(loc: Sequence, keep_all: bool = False) -> str:
    parts = list(loc[1:] if loc and loc[0] == "body" else loc)
    out = ""
    for i, p in enumerate(parts):
        if isinstance(p, int):
            out += f"[{p}]"
        # pydantic puts union-member tags ("str", "list[constrained-str]") in the path; they only confuse,
        # but an unknown field's own name is always shown as sent.
        elif keep_all and i == len(parts) - 1 or not _UNION_TAG.match(str(p)):
            out += ("." if out else "") + str(p)
    return out or "body"


# The names pydantic gives union members in an error's path: str, constrained-str, int, list[...], literal[...], ...
_UNION_TAG = re.compile(r"^(([a-z]+-)*(str|int|bool|float|bytes|none)|[a-z-]+\[.*\])$")
# Errors that say a value is not of a member's kind at all (it was meant as another member).
_WRONG_KIND = ("string_type", "list_type", "int_type", "bool_type", "float_type", "dict_type", "none_required")
_KINDS = {"str": "a string", "int": "a whole number", "bool": "true or false", "float": "a number", "list": "a list",
          "literal": "one of the allowed words", "dict": "an object", "none": "null"}


def one_branch(errors: Sequence[dict]) -> list[dict]:
    """pydantic tries every member of a union and reports why each failed, naming members in the path
    (`input.constrained-str`). Keep only the member the value was meant as: drop the members whose error is that
    the value is not of their kind; when it fits none, one error says which kinds it may be. Paths lose the tags."""
    out: list[dict] = []
    unions: dict[tuple, dict[str, list[dict]]] = {}  # the union's path -> member -> its errors (paths without tag)
    for e in errors:
        loc = tuple(e.get("loc", ()))
        at = next((k for k, part in enumerate(loc) if isinstance(part, str) and _UNION_TAG.match(part)), None)
        if at is None or e.get("type") == "extra_forbidden":
            out.append(e)
            continue
        unions.setdefault(loc[:at], {}).setdefault(loc[at], []).append(e | {"loc": loc[:at] + loc[at + 1:]})
    for base, members in unions.items():
        fitting = [errs for errs in members.values()
                   if not all(e.get("type") in _WRONG_KIND and len(e["loc"]) == len(base) for e in errs)]
        if fitting:
            out += one_branch([e for errs in fitting for e in errs])  # nested unions, one level at a time
        else:
            wanted = list(dict.fromkeys(_kind(tag) for tag in members))
            value = next(iter(members.values()))[0].get("input")
            out.append({"type": "union_type", "loc": base, "input": value, "ctx": {"expected": wanted}})
    return out


def _kind(tag: str) -> str:
    """What a union member's tag asks for, in words: 'list[constrained-str]' -> 'a list'."""
    head = tag.split("[")[0]
    return _KINDS.get(head.split("-")[-1], head)


def _message(loc: str, kind: str, e: dict, fields: Sequence[str]) -> str:
    ctx = e.get("ctx") or {}
    if kind == "missing" and loc == "body":
        return "the request needs a JSON object body with Content-Type: application/json"
    if kind == "missing":
        return f"{loc} is required"
    if kind == "extra_forbidden":
        return f"unknown field {loc!r}" + (f"; this endpoint accepts {', '.join(fields)}" if fields else "")
    if kind in ("model_attributes_type", "dict_type", "model_type") and loc == "body":
        return "the body must be a JSON object, e.g. {\"texts\": [\"...\"]}"
    if kind == "list_type":
        return f"{loc} must be a list; wrap a single value in [...]"
    if kind in ("string_type", "int_type", "bool_type", "float_type") and "input" in e:
        wanted = {"string_type": "a string", "int_type": "a whole number", "bool_type": "true or false",
                  "float_type": "a number"}[kind]
        return f"{loc} must be {wanted}, not {_json_type(e['input'])}"
    if kind == "literal_error" and "expected" in ctx:
        value = e.get("input")
        shown = repr(value) if isinstance(value, str) and len(value) <= 40 else _json_type(value)
        return f"{loc} must be {ctx['expected']}, not {shown}"
    if kind == "union_type":
        return f"{loc} must be {' or '.join(ctx['expected'])}, not {_json_type(e.get('input'))}"
    if kind == "too_short" and ctx.get("min_length") == 1:
        return f"{loc} is empty; give at least one item"
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return f"{loc} is an empty string; give at least one character"
    if kind in ("too_long", "string_too_long"):
        # Every list and string in a request body is capped by these two settings (serve.schemas).
        flag = Settings.flag("max_texts" if kind == "too_long" else "max_chars")
        what = "items" if kind == "too_long" else "characters"
        return f"{loc} has more than {ctx.get('max_length')} {what}, this server's limit ({flag})"
    return f"{loc}: {e.get('msg', kind)}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value}" if len(repr(value)) <= 20 else "a number"
    return {str: "a string", list: "an array", dict: "an object"}.get(type(value), type(value).__name__)
