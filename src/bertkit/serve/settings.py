"""Server settings, declared once: listening, batching, what one request may cost, slow clients and the API key (no web framework needed)."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import ClassVar, Optional

from bertkit.errors import OptionError
from bertkit.options import Options, flag_name, option

API_KEY_ENV = "BERTKIT_API_KEY"
PRECISION_HEADER = "X-Bertkit-Precision"  # on every answer: the arithmetic the model ran at (--precision)
MIB = 1024 * 1024


@dataclass(frozen=True)
class Settings(Options):
    """Everything `bertkit serve` can be told; each field is also its flag (`max_texts` -> `--max-texts`).

    The defaults suit one CPU or GPU serving interactive traffic. Every limit is checked before any
    work is done, and a request over one gets a 4xx naming the limit and its flag.
    """

    # -- where to listen ----------------------------------------------------------------------------
    host: str = option("127.0.0.1", "address to listen on (127.0.0.1: this machine only)")
    port: int = option(8000, "port to listen on (0 picks a free one)", ge=0, le=65535)
    # -- batching -------------------------------------------------------------------------------------
    max_batch_tokens: Optional[int] = option(None, "token budget of one merged model batch", ge=1,
                                             default_help="the model's default for its device")
    max_wait_ms: float = option(5.0, "how long a request waits for others to batch with, in milliseconds", ge=0)
    batching: bool = option(True, "merge concurrent requests into shared batches (--no-batching: each runs alone)")
    # -- what one request may ask for -------------------------------------------------------------------
    max_texts: int = option(128, "texts per request", ge=1)
    max_chars: int = option(10_000, "characters per text", ge=1)
    max_body_bytes: int = option(2 * MIB, "request body size in bytes", ge=64)
    max_request_tokens: Optional[int] = option(
        None, "tokens of all the sequences one request runs through the model (a multi-piece fill-mask target or a "
              "chunked long text runs several sequences per text)", ge=1,
        default_help="--max-texts x the model's max length, so any request of plain texts fits")
    max_answer_bytes: int = option(
        8 * MIB, "size of one answer in bytes, estimated before any work (fill-mask: masks x candidates; "
                 "similarity: sentences squared; embed: texts x dimensions)", ge=1024)
    max_windows: int = option(64, "windows one long text may be read in (long=chunk); a request asking for more, or "
                                  "a text needing more, is answered 422", ge=1)
    # -- what is served -----------------------------------------------------------------------------------
    index: Optional[str] = option(None, "an index folder (made by `bertkit index build` with this model) to answer "
                                        "POST /v1/search from", default_help="none: /v1/search is off")
    # -- load -------------------------------------------------------------------------------------------
    max_queue: int = option(1024, "requests waiting per task; one more is answered 503", ge=1)
    max_connections: int = option(128, "connections served at once (a request being read, run or answered; idle "
                                       "keep-alive connections do not count); one more is answered 503 (memory is "
                                       "about this many times the largest request's)", ge=1)
    # -- slow and idle clients ------------------------------------------------------------------------------
    header_timeout: float = option(10.0, "seconds a client has to send a request's headers, from connecting or "
                                         "from the end of its previous request; then the connection is closed", gt=0)
    body_timeout: float = option(30.0, "seconds a client has to send a request's body; then it is answered 408", gt=0)
    keep_alive_timeout: float = option(5.0, "seconds an idle keep-alive connection is kept open", gt=0)
    max_header_bytes: int = option(16 * 1024, "size of a request's headers in bytes; larger ones are answered 400",
                                   ge=1024)
    graceful_timeout: float = option(30.0, "on SIGTERM, seconds open requests get to finish", ge=0)
    # -- access -------------------------------------------------------------------------------------------
    api_key: Optional[str] = option(None, "require this key (Authorization: Bearer KEY, or X-API-Key: KEY); prefer "
                                          f"${API_KEY_ENV}, since command lines are visible to other users",
                                    default_help=f"${API_KEY_ENV}; with neither, every endpoint is open")
    warmup: bool = option(True, "one tiny inference before /readyz says ready", cli=False)

    # Settings that are not limits a client may read in /v1/model (the key is shown only as whether there is one).
    NOT_PUBLIC: ClassVar[tuple[str, ...]] = ("host", "port", "warmup", "index")

    def __post_init__(self) -> None:
        super().__post_init__()  # types, ranges and finite numbers, each error naming its field
        if self.api_key is not None:
            check_api_key(self.api_key)

    @staticmethod
    def flag(name: str) -> str:
        """The command-line flag of a setting, for messages that name a limit."""
        return flag_name(name)

    def public(self) -> dict:
        """The settings a client may see (never the key itself)."""
        out = {k: v for k, v in asdict(self).items() if k not in self.NOT_PUBLIC}
        out["api_key"] = self.api_key is not None
        return out


def api_key_given(flag: str | None) -> str | None:
    """The key from --api-key, else from $BERTKIT_API_KEY. None only when neither is given: an empty one is an error, never "off"."""
    return flag if flag is not None else os.environ.get(API_KEY_ENV)


def check_api_key(key: str) -> None:
    """A key a client can send in a header and that the gate can match; an empty one would silently turn auth off."""
    where = f"(from --api-key or ${API_KEY_ENV})"
    if not key.strip():
        raise OptionError("api_key", f"is empty {where}; give a non-empty key, or give none (neither the flag nor "
                                     "the variable) to serve without one")
    if key != key.strip():
        raise OptionError("api_key", f"starts or ends with spaces {where}; clients' headers lose them, so it could "
                                     "never match")
    if not key.isascii() or not key.isprintable():
        raise OptionError("api_key", f"holds characters an HTTP header cannot carry {where}; use printable ASCII")
