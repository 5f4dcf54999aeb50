"""`bertkit train` as calls: the options given, merged with the saved run on --resume, run here, as a torchrun worker, or over N processes."""
from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from bertkit.errors import BertkitError, OptionError
from bertkit.options import Options, flag_name, option, specs
from bertkit.paths import output_folder
from bertkit.train import distributed
from bertkit.train.arguments import TrainArguments
from bertkit.train.config import TrainConfig, defaults, resume_conflicts
from bertkit.train.recipes import saved_arguments, train_run
from bertkit.train.trainer import TrainResult


@dataclass(frozen=True)
class Command:
    """A training command: its name, the options that make one of its runs, and the recipe that runs one."""

    name: str  # `bertkit NAME`; the torchrun workers run it too
    # What a run is: saved in its training_arguments.json, and compared on --resume (resume_conflicts says which may
    # change): the command's arguments class, then TrainConfig.
    options: tuple[type, type]
    run: Callable[..., TrainResult]  # train_run's signature


TRAIN = Command("train", (TrainArguments, TrainConfig), train_run)
RUN_OPTIONS = TRAIN.options


@dataclass
class SessionOptions(Options):
    """How this invocation runs: where it writes, which run it resumes, on what device (not part of the run)."""

    output: str | None = option(None, "run folder to write", short="-o", default_help="runs/COMMAND-TIMESTAMP")
    resume: str | None = option(None, "carry on the unfinished run in DIR where it stopped", metavar="DIR")
    overwrite: bool = option(False, "replace a finished or unfinished run in --output")
    device: str | None = option(None, "cpu, cuda, cuda:N, mps", default_help="best available")
    no_progress: bool = option(False, "no progress bar")


@dataclass
class ParallelOptions(Options):
    """Data-parallel training on this machine."""

    nproc: int | None = option(None, "train with N processes on this machine (DDP; one per GPU, or gloo on the CPU); "
                                     "launches torchrun", ge=1)


@dataclass
class Plan:
    """A run ready to start: its arguments and configuration, its folder, and whether it resumes."""

    arguments: TrainArguments
    config: TrainConfig
    output: Path
    resume: bool

    @property
    def output_param(self) -> str:
        """The option that named the folder, for errors about it."""
        return "resume" if self.resume else "output"


@dataclass
class Outcome:
    """What `train` ends with: this process's result to report (None when it has none) and its exit status."""

    result: TrainResult | None
    exit_code: int = 0


def given_options(values: Mapping[str, Any], command: Command = TRAIN) -> dict[str, Any]:
    """The run options among `values` (e.g. vars() of flags parsed with add_flags(..., suppress=True)): those given."""
    return {s.name: values[s.name] for cls in command.options for s in specs(cls) if s.cli and s.name in values}


def resolve(given: Mapping[str, Any], session: SessionOptions, command: Command = TRAIN) -> Plan:
    """The run from the options given, their defaults and, on --resume, the run's saved arguments. Writes nothing."""
    if session.resume is None:
        output = (Path(session.output) if session.output else
                  Path("runs") / time.strftime(f"{command.name}-%Y%m%d-%H%M%S"))
        return Plan(*_build(given, command), output=output, resume=False)
    output = Path(session.resume)
    if session.output and Path(session.output).resolve() != output.resolve():
        raise OptionError("resume", f"{session.resume} continues the run in that folder; drop --output {session.output}")
    if not output.is_dir():
        raise OptionError("resume", f"{session.resume}: no such folder")
    saved = saved_arguments(output)
    if saved is None:
        raise BertkitError(f"{output} has no training_arguments.json; it was not started by `bertkit {command.name}`")
    saved = {**defaults(*command.options), **saved}  # a run saved before a setting existed ran with its default
    changed = resume_conflicts(saved, given)
    if changed:
        diffs = ", ".join(f"{flag_name(k)} {given[k]!r} (run: {saved.get(k)!r})" for k in changed)
        raise BertkitError(f"--resume continues a run with its own settings; these differ: {diffs}. "
                           f"Drop them, or start a new run")
    return Plan(*_build({**saved, **given}, command), output=output, resume=True)


def _build(values: Mapping[str, Any], command: Command) -> tuple[Any, TrainConfig]:
    made = []
    for cls in command.options:
        names = {f.name for f in fields(cls)}
        made.append(cls(**{k: v for k, v in values.items() if k in names}))
    return made[0], made[1]


def train(given: Mapping[str, Any], session: SessionOptions, parallel: ParallelOptions,
          extra_flags: Sequence[str] = (), command: Command = TRAIN) -> Outcome:
    """Run `bertkit train` (or another training `command`): in this process, as one torchrun worker, or (with
    nproc) as N workers on this machine.

    `extra_flags` are the command's own flags the workers need as well (e.g. --json).
    """
    if parallel.nproc is not None:
        return Outcome(None, start_workers(given, session, parallel.nproc, extra_flags, command))
    if distributed.launched_by_torchrun():
        return _worker(given, session, command)
    return Outcome(_run(given, session, session.device, command))


def _run(given: Mapping[str, Any], session: SessionOptions, device: str | None, command: Command) -> TrainResult:
    # Under DDP rank 0 resolves (it alone may see the run folder; the default name holds a timestamp) and tells the rest.
    plan = distributed.on_main(lambda: resolve(given, session, command))
    return command.run(plan.arguments, plan.config, output_dir=plan.output, device=device, resume=plan.resume,
                       overwrite=session.overwrite, progress=False if session.no_progress else None,
                       output_param=plan.output_param)


def _worker(given: Mapping[str, Any], session: SessionOptions, command: Command) -> Outcome:
    """One process of a torchrun job: join the process group, train its share, leave; rank 0 alone reports."""
    device = distributed.device_for(session.device)
    distributed.setup(device)
    quiet = not distributed.is_main_process()
    if quiet:
        warnings.simplefilter("ignore")  # rank 0 shows the same warnings once
    try:
        result = _run(given, session, str(device), command)
        return Outcome(None if quiet else result)
    except distributed.SharedError:
        if quiet:  # rank 0 reports it
            return Outcome(None, 2)
        raise
    except KeyboardInterrupt:
        if quiet:  # rank 0 says where the run stopped
            return Outcome(None, 130)
        raise
    except BertkitError as e:
        if quiet:
            # Another node may lack what rank 0 has (data, model): one line per node, naming the rank.
            if distributed.local_rank() == 0:
                print(f"error: [rank {distributed.rank()}] {e}", file=sys.stderr)
            return Outcome(None, 2)
        raise
    finally:
        distributed.teardown()


def start_workers(given: Mapping[str, Any], session: SessionOptions, nproc: int, extra_flags: Sequence[str] = (),
                  command: Command = TRAIN) -> int:
    """Check the run, then start `nproc` workers on this machine through torchrun's launcher; their exit status."""
    import torch

    from bertkit.device import pick_device
    from bertkit.train.parallel import check_world_size

    if distributed.launched_by_torchrun():
        raise OptionError("nproc", "starts torchrun itself; under torchrun, drop it")
    # Everything a worker would refuse at once is refused here, as one line, before any process starts.
    plan = resolve(given, session, command)
    check_world_size(plan.config.sequences_per_batch, nproc, resuming=plan.resume)
    device = pick_device(session.device if session.device not in (None, "auto") else
                         ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "mps":
        raise BertkitError("data-parallel training runs on CUDA (NCCL) or the CPU (gloo), not MPS; pass --device cpu")
    if device.type == "cuda":
        if device.index is not None:
            raise BertkitError(f"--nproc {nproc} uses GPUs 0..{nproc - 1} (or those in CUDA_VISIBLE_DEVICES); "
                               f"pass --device cuda")
        if nproc > torch.cuda.device_count():
            raise BertkitError(f"--nproc {nproc} needs {nproc} GPUs but torch sees {torch.cuda.device_count()}; "
                               f"use --nproc {torch.cuda.device_count()} or fewer")
    elif "OMP_NUM_THREADS" not in os.environ:  # torchrun would give each CPU worker one thread; share the cores instead
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    output_folder(plan.output, plan.output_param)  # last, so a launch refused above leaves no folder behind
    # The default run folder is named by the clock: name it once here, so the workers use the one announced.
    pinned = [f"--output={plan.output}"] if not plan.resume and session.output is None else []
    return _torchrun(["--standalone", "--nnodes", "1", "--nproc-per-node", str(nproc), "--module", "bertkit",
                      command.name, *worker_argv(given, session, command), *extra_flags, *pinned])


def worker_argv(given: Mapping[str, Any], session: SessionOptions, command: Command = TRAIN) -> list[str]:
    """The flags the workers get, rebuilt from the options: the run's as given, and this session's that differ from
    their defaults (never --nproc: the workers are the processes)."""
    out: list[str] = []
    run_specs = [s for cls in command.options for s in specs(cls) if s.name in given]
    for spec in run_specs:
        out += _flag(spec.flag, given[spec.name])
    for spec in specs(SessionOptions):
        value = getattr(session, spec.name)
        if value != spec.default:
            out += _flag(spec.flag, value)
    return out


def _flag(flag: str, value: Any) -> list[str]:
    if isinstance(value, bool):  # an on/off flag: present or absent
        return [flag] if value else []
    return [f"{flag}={value}"]  # one token, so a value that starts with '-' is never read as a flag


def _torchrun(argv: list[str]) -> int:
    """Run torchrun's launcher in this process, turning a worker's failure into an exit code rather than a traceback."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    # The workers print their own errors; torchrun's log lines would repeat them as a wall of text.
    loggers = [logging.getLogger(name) for name in list(logging.root.manager.loggerDict)
               if name.startswith(("torch.distributed.run", "torch.distributed.elastic"))]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        run(parse_args(argv))
    except ChildFailedError as e:
        failures = sorted(e.failures.items())
        codes = {f.exitcode for _, f in failures}
        if codes & {2, 130}:  # a BertkitError or an interrupt: the worker has already said what happened
            return 130 if 130 in codes else 2
        rank, first = failures[0]
        raise BertkitError(f"training process {rank} failed (exit code {first.exitcode}); its messages are above") from None
    except SignalException:  # Ctrl-C: the workers were told, and rank 0 has said where the run stopped
        return 130
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    return 0
