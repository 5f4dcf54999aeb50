"""Indexes opened once per process, and opened again when another process has committed a change since."""
from __future__ import annotations

import os
import threading
from pathlib import Path

from bertkit.errors import BertkitError
from bertkit.index.store import MANIFEST
from bertkit.index.vector_index import VectorIndex

_OPEN: dict[str, tuple[tuple[int, int], VectorIndex]] = {}
_LOCK = threading.Lock()


def open_index(folder: str | os.PathLike) -> VectorIndex:
    """The index in `folder`, reopened when its manifest changed since (another process added rows)."""
    manifest = Path(folder) / MANIFEST
    if not manifest.exists():
        raise BertkitError(f"{folder} holds no index (no {MANIFEST}); build one with `bertkit index build`")
    seen = manifest.stat()
    stamp = (seen.st_ino, seen.st_mtime_ns)  # a commit replaces the file: a new inode
    with _LOCK:
        known = _OPEN.get(str(folder))
        if known is None or known[0] != stamp:
            _OPEN[str(folder)] = (stamp, VectorIndex.open(folder))
        return _OPEN[str(folder)][1]
