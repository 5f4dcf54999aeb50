"""Text for a terminal: control characters in what we print are shown escaped, so data cannot steer the terminal.

Ids, texts, labels and metadata come from users' files and indexes. Printed raw, an ESC sequence in
one could recolour or clear the screen, retitle the window, or (OSC 52) write the clipboard; a
bidirectional override could make a line read differently from what it holds. Human output shows
each such character as its escape (`\\x1b`, `\\u202e`); JSON output keeps every value exact.
"""
from __future__ import annotations

import re
from typing import Any

# C0 and C1 controls, DEL, and the bidirectional embeddings, overrides and isolates; U+2028/U+2029 break lines.
UNSAFE = "\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029"
_UNSAFE = re.compile(f"[{UNSAFE}]")
LAYOUT = "\n\t"  # the controls a rendering itself lays lines out with
# What JSON (ensure_ascii=False) leaves raw inside strings that a terminal would still act on.
_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def _escape(match: re.Match) -> str:
    return match.group(0).encode("unicode_escape").decode("ascii")


def shown(text: Any) -> str:
    """One value as a terminal should show it: every control character escaped, newlines and tabs included
    (a text stays on its line of a table)."""
    return _UNSAFE.sub(_escape, str(text))


def safe_lines(text: str) -> str:
    """A whole rendering made safe: control characters escaped except the newlines and tabs that lay it out."""
    return _UNSAFE.sub(lambda m: m.group(0) if m.group(0) in LAYOUT else _escape(m), text)


def safe_json(text: str) -> str:
    """JSON text with the characters JSON leaves raw but a terminal obeys written as \\uXXXX escapes (the same values)."""
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


def progress_bar(iterable: Any = None, **options: Any):
    """A tqdm.auto progress bar: a widget in Jupyter, text in a terminal (and in a Jupyter without ipywidgets)."""
    import warnings

    with warnings.catch_warnings():
        # tqdm.auto warns on import where Jupyter lacks ipywidgets ("IProgress not found"), even for a bar that is
        # switched off; the text bar it falls back to is what such a notebook should get, so that is no news.
        warnings.simplefilter("ignore")
        from tqdm.auto import tqdm
    return tqdm(iterable, **options)
