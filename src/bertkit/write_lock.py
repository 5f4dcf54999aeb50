"""One writer at a time: an exclusive, kernel-held lock on a folder we write (an index, a corpus-mode output).

The lock is a file in the folder, locked with flock(2) and holding who took it (pid, host, start time,
command). The kernel drops the lock when its holder exits or is killed, so a lock left by a dead
process is never mistaken for a live one: the next writer takes it over and says whose it was (a
record naming a live process of this host is still honoured, however the file was taken). A
second writer while the first is alive gets one line naming the holder. Readers never take it.

The holder also notes in the file the names it is about to create, so whoever takes over a lock
left by a killed writer can remove exactly those of its files that never became part of the folder.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
import warnings
from pathlib import Path

from bertkit.errors import BertkitError

LOCK_FILE = ".bertkit-lock"


class LockHeld(BertkitError):
    """Another live process is writing the folder."""


class WriteLock:
    """The lock file `name` in `folder`; `with WriteLock(folder):` holds it for the block (re-entrant in one object)."""

    def __init__(self, folder: str | os.PathLike, name: str = LOCK_FILE, what: str = "folder") -> None:
        self.path = Path(folder) / name
        self.what = what
        self._fd: int | None = None
        self._depth = 0
        self._record: dict = {}
        self.taken_over: dict | None = None  # the record of a dead writer whose lock this one took

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "WriteLock":
        if self._fd is not None:
            self._depth += 1
            return self
        while True:  # a holder may remove the file between our open and our lock: then lock the new one
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(fd)
                os.close(fd)
                raise LockHeld(f"{self.path.parent} is being written by {describe(holder)}; wait for it to finish "
                               f"(one writer at a time)") from None
            except OSError:
                os.close(fd)
                raise
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = _read(fd)
        if _alive_here(previous):  # a live holder that took the file without flock (O_EXCL-style): still its lock
            os.close(fd)
            raise LockHeld(f"{self.path.parent} is being written by {describe(previous)}; wait for it to finish "
                           f"(one writer at a time), or remove {self.path} if that process is not writing here")
        self._fd, self._depth = fd, 1
        if previous:
            self.taken_over = previous
            warnings.warn(f"took over the lock on {self.path.parent} left by {describe(previous)}, which is no "
                          f"longer running (it was killed or crashed mid-write)", stacklevel=2)
        self._record = {"pid": os.getpid(), "host": socket.gethostname(),
                        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": " ".join(sys.argv)[:500],
                        "writing": []}
        self._write()
        return self

    def note_writing(self, names: list[str]) -> None:
        """Record that files of these names are about to be created (a dead writer's are cleaned up by the next)."""
        self._record["writing"] = sorted(set(self._record["writing"]) | set(names))
        self._write()

    def release(self) -> None:
        if self._fd is None:
            return
        self._depth -= 1
        if self._depth:
            return
        fd, self._fd = self._fd, None
        try:
            self.path.unlink(missing_ok=True)  # while still locked, so nobody locks the file we remove
        finally:
            os.close(fd)

    def _write(self) -> None:
        data = json.dumps(self._record).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)
        os.fsync(self._fd)

    def __enter__(self) -> "WriteLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read(fd: int) -> dict:
    """The holder's record in an open lock file: {} when empty (a holder that had not written yet)."""
    try:
        data = os.pread(fd, 1 << 16, 0)
    except OSError:
        return {}
    if not data.strip():
        return {}
    try:
        record = json.loads(data)
    except ValueError:
        record = None
    return record if isinstance(record, dict) else {"command": "a record that cannot be read"}


def _alive_here(holder: dict) -> bool:
    """Whether the record names another process of this host that is running."""
    pid = holder.get("pid")
    return (holder.get("host") == socket.gethostname() and isinstance(pid, int) and pid != os.getpid()
            and process_alive(pid))


def process_alive(pid: int) -> bool:
    """Whether a process of this host with this pid is running."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: running
        return True
    except (OverflowError, ValueError):
        return False
    return True


def describe(holder: dict) -> str:
    """'pid 123 on host-a since 2025-01-01T10:00:00+0000 (bertkit index add ...)', or what is known of it."""
    if not holder:
        return "another process (it has not said which yet)"
    text = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} since {holder.get('started', '?')}"
    return text + (f" ({holder['command']})" if holder.get("command") else "")
