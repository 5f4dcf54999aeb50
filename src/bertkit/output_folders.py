"""Folders bertkit writes (an index, a corpus-mode output): never someone else's files, never overlapping the input.

A folder may be written when it is new, empty, or already ours (an index's manifest, a corpus run's
record). Our scratch files (the lock, temporary files of atomic writes) carry the prefix `.bertkit-`
and, for temporary files, the host and pid that wrote them, so cleaning up removes only files that
provably are ours: a temporary file of a process on this host that is no longer running.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Callable

from bertkit.checkpoint import atomic_write
from bertkit.errors import OptionError
from bertkit.paths import output_folder
from bertkit.write_lock import process_alive

SCRATCH = ".bertkit-"  # every scratch file of ours starts with this (the lock, temporary files, write checks)
_TEMP = SCRATCH + "tmp-"


def temp_prefix(pid: int | None = None) -> str:
    """How the names of our temporary files start: .bertkit-tmp-HOST-PID- (this process's by default)."""
    return f"{_TEMP}{_host()}-{os.getpid() if pid is None else pid}-"


def write_file(path: Path, write: Callable[[str], None]) -> None:
    """`atomic_write` under a temporary name that says who wrote it: .bertkit-tmp-HOST-PID-NAME.*.tmp."""
    atomic_write(path, write, prefix=f"{temp_prefix()}{path.name}.")


def remove_dead_temporaries(folder: Path) -> list[str]:
    """Delete our temporary files left in `folder` by processes on this host that are no longer running."""
    removed = []
    prefix = f"{_TEMP}{_host()}-"
    for path in folder.iterdir():
        if not path.name.startswith(prefix):
            continue
        pid = path.name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not process_alive(int(pid)):
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def claim_folder(output: str | os.PathLike, source: str | os.PathLike | None, what: str,
                 is_ours: Callable[[Path], bool], param: str = "output") -> Path:
    """The folder `output`, created if missing, to write `what` (e.g. "a bertkit index") into.

    Refused, in one line naming `param`: the input itself, a folder inside the input or holding it
    (a re-run would read its own output as input), and an existing folder that holds files but is not
    ours (`is_ours`): bertkit only ever writes into, and cleans up, folders it made.
    """
    out = Path(output)
    if source is not None:
        check_apart(out, Path(source), param)
    if out.is_dir() and not is_ours(out):
        others = sorted(p.name for p in out.iterdir() if not p.name.startswith(SCRATCH))
        if others:
            shown = ", ".join(others[:3]) + (", ..." if len(others) > 3 else "")
            raise OptionError(param, f"{str(out)!r} already holds files ({shown}) and is not {what}; pass a new or "
                                     f"empty folder (bertkit writes only into folders it made)")
    return output_folder(out, param)


def check_apart(out: Path, source: Path, param: str = "output") -> None:
    """Refuse an output that is the input, lies inside the input folder, or holds the input."""
    o, s = out.resolve(), source.resolve()
    if o == s:
        raise OptionError(param, f"{str(out)!r} is the input itself; write the output to another folder")
    if s.is_dir() and o.is_relative_to(s):
        raise OptionError(param, f"{str(out)!r} is inside the input folder {str(source)!r}, so a later run would "
                                 f"read the output as input; choose a folder outside it")
    if s.is_relative_to(o):
        raise OptionError(param, f"{str(out)!r} holds the input {str(source)!r}; choose a folder that does not")


def _host() -> str:
    return socket.gethostname().replace("-", "_") or "host"

