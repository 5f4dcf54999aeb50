"""Which column holds what: one picker for training, evaluation, prediction and corpus mode.

The rule: a column named by the caller must exist, spelled exactly; otherwise the first usual name
that is a column (TEXT_COLUMNS, LABEL_COLUMNS, in that order of preference), matched exactly first and
then ignoring case (so `Text` and `REVIEW` are found); for texts, a table with a single column uses it.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from bertkit.errors import OptionError

TEXT_COLUMNS = ("text", "sentence", "review", "content")
LABEL_COLUMNS = ("label", "labels", "category", "class", "target")


def pick_column(columns: Iterable[Any], given: str | None, candidates: Sequence[str], what: str, param: str, *,
                where: str = "the input", required: bool = True) -> str | None:
    """The column holding `what`: `given` if named, else the first of `candidates` present (exact, then
    ignoring case); None when there is none and not `required`. A wrong name is an OptionError naming
    `param` and listing the columns."""
    names = [str(c) for c in columns]
    available = ", ".join(names) or "(none)"
    if given is not None:
        if given in names:
            return given
        near = [n for n in names if n.lower() == str(given).lower()]
        hint = f" (did you mean '{near[0]}'?)" if near else ""
        raise OptionError(param, f"is '{given}', but {where} has no column '{given}'{hint}; its columns are: {available}")
    for cand in candidates:
        if cand in names:
            return cand
    lowered: dict[str, str] = {}
    for n in names:
        lowered.setdefault(n.lower(), n)  # the first of columns that differ only in case
    for cand in candidates:
        if cand.lower() in lowered:
            return lowered[cand.lower()]
    if required:
        looked = f" (looked for {', '.join(candidates)})" if candidates else ""
        raise OptionError(param, f"is needed: {where} has no {what} column{looked}; its columns are: {available}")
    return None


def text_column(columns: Iterable[Any], given: str | None = None, param: str = "text_column", *,
                where: str = "the input", what: str = "text") -> str:
    """The column holding the texts: the one named, else a usual name (text, sentence, ...), else the only column."""
    names = [str(c) for c in columns]
    found = pick_column(names, given, TEXT_COLUMNS, what, param, where=where, required=False)
    if found is not None:
        return found
    if len(names) == 1:
        return names[0]
    return pick_column(names, None, TEXT_COLUMNS, what, param, where=where, required=True)  # raises, naming the columns
