"""Process groups for data-parallel training: set up from torchrun's environment, rank facts, barriers, broadcasts and gathers."""
from __future__ import annotations

import os
from typing import Any, Callable, TypeVar

import torch
import torch.distributed as dist

from bertkit.device import pick_device
from bertkit.errors import BertkitError, OptionError

T = TypeVar("T")
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")

# Host-side messages (flags, sizes, Python objects) travel over gloo even when training uses NCCL,
# so they never need a CUDA tensor or a device sync. With a gloo default group this stays None.
_control: Any = None


class SharedError(BertkitError):
    """A BertkitError that every rank raised alike (rank 0 found it and told the others); only rank 0 reports it."""


class SharedOptionError(SharedError, OptionError):
    """A SharedError about one option: it still names the option in the caller's words (the flag, on the command line)."""

    def __init__(self, param: str, problem: str) -> None:
        OptionError.__init__(self, param, problem)


def launched_by_torchrun() -> bool:
    """Whether this process was started by torchrun (or `bertkit train --nproc`), which sets RANK, WORLD_SIZE, ..."""
    return all(name in os.environ for name in TORCHRUN_VARS)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    return rank() == 0


def backend() -> str | None:
    return dist.get_backend() if is_distributed() else None


def device_for(requested: str | None) -> torch.device:
    """The device this process trains on under torchrun: cuda:LOCAL_RANK when CUDA is used, else the CPU."""
    if requested is None or str(requested) == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"  # MPS has no collective backend
    device = pick_device(requested)
    if device.type == "mps":
        raise BertkitError("data-parallel training runs on CUDA (NCCL) or the CPU (gloo), not MPS; pass --device cpu")
    if device.type != "cuda":
        return torch.device("cpu")
    index = local_rank()
    if device.index is not None and device.index != index:
        raise BertkitError(f"under torchrun each process uses the GPU of its LOCAL_RANK; pass --device cuda, not {device}")
    if index >= torch.cuda.device_count():
        raise BertkitError(f"process {index} of this node has no GPU: torch sees {torch.cuda.device_count()} CUDA "
                           f"device(s); start at most that many processes per node")
    return torch.device("cuda", index)


def setup(device: torch.device) -> None:
    """Join the process group torchrun described (NCCL for a CUDA device, gloo for the CPU); a no-op if joined."""
    global _control
    if is_distributed():
        return
    if not launched_by_torchrun():
        missing = ", ".join(v for v in TORCHRUN_VARS if v not in os.environ)
        raise BertkitError(f"no torchrun environment ({missing} unset); start with torchrun or `bertkit train --nproc N`")
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL picks the current device for its communicator
        dist.init_process_group(backend="nccl")
        _control = dist.new_group(backend="gloo")
    else:
        dist.init_process_group(backend="gloo")
        _control = None


def teardown() -> None:
    """Leave the process group (every rank calls this once at the end)."""
    global _control
    if is_distributed():
        dist.destroy_process_group()
    _control = None


def barrier() -> None:
    if is_distributed():
        dist.barrier(group=_control)


def broadcast_object(obj: T, src: int = 0) -> T:
    """`obj` as rank `src` has it, on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, group=_control)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj, group=_control)
    return out


def any_true(flag: bool) -> bool:
    """True on every rank when `flag` is true on any rank (e.g. one rank saw Ctrl-C)."""
    if not is_distributed():
        return bool(flag)
    t = torch.tensor([int(bool(flag))])
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_control)
    return bool(t.item())


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Sum `tensor` over ranks in place, on the training backend (so it stays on its device)."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_min_(tensor: torch.Tensor) -> torch.Tensor:
    """The smallest of every rank's `tensor`, in place, on the training backend."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return tensor


def gather_rows(rows: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's CPU tensor [n_r, ...] (n_r may differ), in rank order, on every rank."""
    if not is_distributed():
        return [rows]
    rows = rows.detach().cpu().contiguous()
    counts = [torch.zeros(1, dtype=torch.long) for _ in range(world_size())]
    dist.all_gather(counts, torch.tensor([rows.shape[0]]), group=_control)
    sizes = [int(c) for c in counts]
    # all_gather needs equal shapes: pad each rank's rows to the longest, cut them back after.
    padded = torch.zeros((max(sizes), *rows.shape[1:]), dtype=rows.dtype)
    padded[: rows.shape[0]] = rows
    out = [torch.empty_like(padded) for _ in range(world_size())]
    dist.all_gather(out, padded, group=_control)
    return [t[:n] for t, n in zip(out, sizes)]


def broadcast_module(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank `src`'s parameters and buffers into every rank's `module`, in place."""
    if not is_distributed():
        return
    with torch.no_grad():
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=src)


def on_main(fn: Callable[[], T]) -> T:
    """Run `fn` on rank 0 only and give every rank its result, or its BertkitError, so all ranks go on or stop together.

    Used for what only rank 0 may do (check and write the run folder, read a checkpoint). Single-process, it is `fn()`.
    """
    if not is_distributed():
        return fn()
    outcome: tuple[str, Any] | None = None
    if is_main_process():
        try:
            outcome = ("ok", fn())
        except OptionError as e:
            outcome = ("option", (e.param, e.problem))
        except BertkitError as e:
            outcome = ("error", str(e))
        except BaseException:
            broadcast_object(("crash", None))  # the others stop too, rather than wait at the next collective
            raise
    kind, value = broadcast_object(outcome)
    if kind == "option":
        raise SharedOptionError(*value)
    if kind == "error":
        raise SharedError(value)
    if kind == "crash":
        raise SharedError("process 0 failed; its message is above")
    return value
