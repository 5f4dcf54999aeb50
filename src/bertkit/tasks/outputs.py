"""Checking where a task may write its results, before any work is done."""
from __future__ import annotations

from pathlib import Path

from bertkit.errors import BertkitError


def checked_output(path: str | Path, formats: tuple[str, ...], what: str) -> tuple[Path, str]:
    """The output path and its lower-case suffix; a one-line error for an unknown format or a missing folder."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in formats:
        raise BertkitError(f"cannot write {what} to '{path.name}'; use a file ending in {', '.join(formats)}")
    if not path.parent.exists():
        raise BertkitError(f"folder {path.parent} does not exist; create it first")
    return path, suffix
