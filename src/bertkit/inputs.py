"""Checks every task shares on what callers pass in: lists of texts, one pair per text, one row's text, truncation."""
from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

from bertkit.errors import BertkitError
from bertkit.tokenizer import Encoding


def as_text_list(texts: Any, param: str = "texts", single: bool = True) -> list[str]:
    """`texts` as a list of strings; one string is one text when `single`, else an error naming `param`."""
    if isinstance(texts, str):
        if single:
            return [texts]
        raise BertkitError(f"{param} must be a list of strings, not a single string; wrap it in a list")
    try:
        texts = list(texts)
    except TypeError:
        raise BertkitError(f"{param} must be a list of strings, not {type(texts).__name__}") from None
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise BertkitError(f"{param}[{i}] is {_kind(t)}, not a string")
    return texts


def check_pairs(n_texts: int, pairs: Sequence | None, param: str = "pairs") -> None:
    """A second text per text, or none at all."""
    if pairs is not None and len(pairs) != n_texts:
        raise BertkitError(f"got {n_texts} texts but {len(pairs)} {param}; give one pair per text")


def row_problem(value: Any, what: str = "text") -> str | None:
    """Why one row's cell cannot be read as text (missing, not a string, blank), or None when it can."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"missing {what}"
    if not isinstance(value, str):
        try:
            import pandas as pd

            if pd.isna(value) is True:
                return f"missing {what}"
        except (TypeError, ValueError, ImportError):
            pass
        return f"{what} is {_kind(value)}, not a string"
    if not value.strip():
        return f"empty {what}"
    return None


def no_tokens_problem(encoding: Encoding, what: str = "text") -> str | None:
    """A text whose every character the tokenizer drops (NUL, zero-width spaces...) has nothing to read."""
    if all(encoding.special_tokens_mask):
        return f"{what} has no tokens (only characters the tokenizer drops)"
    return None


def warn_truncated(cut: Sequence[Encoding | int], limit: int, unread: Sequence[int] = ()) -> int:
    """Say how many inputs were cut to the model's length (encodings, or tokens cut per input); returns that count.

    `unread`: per input, characters never tokenized (a text longer than its strategy reads): its cut tokens are
    then a lower bound.
    """
    counts = [c if isinstance(c, int) else c.n_truncated for c in cut]
    unread = list(unread) or [0] * len(counts)
    over = [i for i, (n, u) in enumerate(zip(counts, unread)) if n or u]
    if over:
        first = over[0]
        tokens = f"at least {counts[first]} tokens cut, {unread[first]:,} characters not read" if unread[first] \
            else f"{counts[first]} tokens cut"
        warnings.warn(
            f"{len(over)} of {len(counts)} texts were longer than {limit} tokens and were truncated "
            f"(first: input #{first}, {tokens}); long='chunk' (--long chunk) reads all of them",
            stacklevel=3,
        )
    return len(over)


def _kind(value: Any) -> str:
    name = type(value).__name__
    return f"an {name}" if name[:1].lower() in "aeiou" else f"a {name}"
