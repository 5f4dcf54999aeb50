"""Where a command may read and write: checked once, before any work, with one-line reasons naming the option."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bertkit.errors import OptionError


def input_path(path: str | os.PathLike, param: str = "input", folder_ok: bool = False) -> Path:
    """An existing, readable file (or folder, when `folder_ok`)."""
    path = Path(path)
    if not path.exists():
        raise OptionError(param, f"{str(path)!r} does not exist; check the path")
    if path.is_dir() and not folder_ok:
        raise OptionError(param, f"{str(path)!r} is a folder; pass a file")
    if not path.is_dir() and not path.is_file():
        raise OptionError(param, f"{str(path)!r} is not a regular file")
    if not os.access(path, os.R_OK):
        raise OptionError(param, f"{str(path)!r} cannot be read (permission denied)")
    return path


def output_file(path: str | os.PathLike, formats: tuple[str, ...], what: str, param: str = "output") -> tuple[Path, str]:
    """A file to write: a known suffix, not a folder, in a folder that exists and takes new files."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in formats:
        raise OptionError(param, f"{str(path)!r}: cannot write {what} to that kind of file; "
                                 f"use a file ending in {', '.join(formats)}")
    if path.is_dir():
        raise OptionError(param, f"{str(path)!r} is a folder; pass a file name ending in {', '.join(formats)}")
    parent = path.parent
    blocker = _file_on_the_way(parent)
    if blocker is not None:
        raise OptionError(param, f"{str(path)!r} is under {str(blocker)!r}, which is a file, not a folder")
    if not parent.exists():
        raise OptionError(param, f"folder {str(parent)!r} does not exist; create it first")
    _check_writable(parent, param, path)
    if path.exists() and not os.access(path, os.W_OK):
        raise OptionError(param, f"{str(path)!r} exists and cannot be overwritten (permission denied)")
    return path, suffix


def output_folder(path: str | os.PathLike, param: str = "output") -> Path:
    """A folder to write into, created if missing (with its parents); an existing file there is an error."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OptionError(param, f"{str(path)!r} is a file; pass a folder")
    blocker = _file_on_the_way(path)
    if blocker is not None:
        raise OptionError(param, f"{str(path)!r} is under {str(blocker)!r}, which is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OptionError(param, f"cannot create folder {str(path)!r} ({e.strerror or e})") from None
    _check_writable(path, param, path)
    return path


def _file_on_the_way(path: Path) -> Path | None:
    """The first ancestor of `path` (or `path` itself) that exists and is not a folder."""
    for p in [path, *path.parents]:
        if p.exists():
            return None if p.is_dir() else p
    return None


def _check_writable(folder: Path, param: str, shown: Path) -> None:
    # A real write, not os.access: root passes access checks on read-only mounts and folders.
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".bertkit-write-check-"):
            pass
    except OSError as e:
        raise OptionError(param, f"cannot write to {str(folder)!r} ({e.strerror or e}); choose another place "
                                 f"for {str(shown)!r}") from None
