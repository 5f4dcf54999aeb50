"""Trainer: the training loop. It steps through seeded batches, evaluates, keeps the best, checkpoints and resumes exactly.

What is learned is the run's Objective (bertkit.train.objective): fine-tuning a classifier
(`Classification`, the default) or another objective on the same loop. A step is taken by
`OneProcess` or, under torchrun, `DataParallel` (bertkit.train.parallel); the run folder's files are
bertkit.train.run_folder's.
"""
from __future__ import annotations

import dataclasses
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

from bertkit.data import TextDataset
from bertkit.errors import BertkitError, OptionError
from bertkit.model import Model
from bertkit.train import distributed
from bertkit.train import state as ckpt
from bertkit.train.batches import BatchStream, seed_everything
from bertkit.train.classifier import Classification
from bertkit.train.config import TrainConfig, higher_is_better
from bertkit.train.jsonout import finite
from bertkit.train.objective import Objective
from bertkit.train.optim import linear_warmup_decay, make_optimizer, warmup_steps_for
from bertkit.train.parallel import DataParallel, OneProcess, check_world_size, seed_rank
from bertkit.train.record import training_record
from bertkit.train.run_folder import RunFolder
from bertkit.train.state import RunState

# With a token budget each epoch's batch count is known only once its order is drawn, and the learning-rate
# schedule needs the total before the first step. Planning runs at about a million example-epochs a second on
# one CPU core: beyond this many a run would sit silent before its first step, so it is refused instead.
MAX_PLANNED_EXAMPLES = 2_000_000
NEVER = 2**62  # "no step yet" for the step at which training first went non-finite


def planned_steps(config: TrainConfig, stream: BatchStream) -> int:
    """The optimizer steps the run will take (the schedule's length), without planning every epoch when it need not."""
    if config.max_steps:
        return config.max_steps
    steps_in = lambda epoch: math.ceil(stream.num_batches(epoch) / config.grad_accum)  # noqa: E731
    if stream.same_count_every_epoch:
        return steps_in(0) * config.epochs
    examples = len(stream.encodings)
    if config.epochs * examples > MAX_PLANNED_EXAMPLES:
        most = max(1, MAX_PLANNED_EXAMPLES // examples)
        raise OptionError("epochs", f"{config.epochs} is too many to plan with a token budget: each epoch's batch count "
                                    f"must be drawn before the first step, and {examples} examples allow at most {most}; "
                                    f"cap the run with max steps instead, or batch by size alone")
    return sum(steps_in(e) for e in range(config.epochs))


def step_groups(stream: BatchStream, config: TrainConfig, epoch: int, start: int
                ) -> Iterator[tuple[int, int, list[list[int]], int]]:
    """The optimizer steps from batch `start` of `epoch` on: (epoch, batches done after the step, the step's batches
    as example indices, batches in the epoch). Endless with max_steps: the loop stops at the planned step count."""
    while config.max_steps or epoch < config.epochs:
        plan = stream.plan(epoch)
        while start < len(plan):
            group = plan[start:start + config.grad_accum]
            start += len(group)
            yield epoch, start, group, len(plan)
        epoch, start = epoch + 1, 0


@dataclass
class TrainResult:
    """What `Trainer.fit` ends with; the same facts are in the run folder's JSON files."""

    metrics: dict[str, Any] | None  # the final (best) model on the evaluation split
    test_metrics: dict[str, Any] | None
    history: list[dict[str, Any]]  # metrics.jsonl records
    best: dict[str, Any] | None
    steps: int
    stopped_early: bool
    timings: dict[str, float]
    output_dir: Path | None = None
    record: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The headline facts as plain JSON values (what `bertkit train --json` prints)."""
        return finite({"output_dir": str(self.output_dir) if self.output_dir is not None else None,
                       "metrics": self.metrics, "test_metrics": self.test_metrics, "best": self.best,
                       "steps": self.steps, "stopped_early": self.stopped_early, "timings": self.timings})

    def _repr_html_(self) -> str:  # a notebook shows the final metrics and the training curves
        from bertkit.display import train_result_html

        return train_result_html(self)


class _Interrupt:
    """First Ctrl-C: finish the current step, checkpoint and stop. A second one stops at once."""

    def __init__(self, announce: bool = True) -> None:
        self.requested = False
        self.announce = announce
        self._previous = None

    def __enter__(self) -> "_Interrupt":
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self.announce:
            print("\ninterrupt: stopping after this step (press Ctrl-C again to stop at once)", file=sys.stderr)

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class Trainer:
    """Fine-tune `model` as a text classifier on `train_data`, evaluating on `eval_data`; or train another `objective`.

    With `output_dir`, the run is checkpointed (resumable with `fit(resume=True)`) and ends as an
    HF-layout model folder with metrics.json, metrics.jsonl, plots and training_record.json.
    Without an `objective`, it is `Classification(model, train_data, eval_data, test_data, config)`.
    """

    def __init__(
        self,
        model: Model,
        train_data: TextDataset | None = None,
        eval_data: TextDataset | None = None,
        config: TrainConfig | None = None,
        *,
        objective: Objective | None = None,
        output_dir: str | os.PathLike | None = None,
        test_data: TextDataset | None = None,
        progress: bool | None = None,
        log: Callable[[str], None] | None = None,
        record: dict[str, Any] | None = None,
        **overrides: Any,
    ):
        self.config = dataclasses.replace(config, **overrides) if config is not None else TrainConfig(**overrides)
        self.config.validate()  # again: a field may have been assigned since the config was made
        if model.network.inference_only:
            raise BertkitError(model.network.inference_only)
        if objective is None:
            if train_data is None:
                raise BertkitError("give the training data (or an objective that holds its own)")
            objective = Classification(model, train_data, eval_data, test_data, self.config)
        elif train_data is not None or eval_data is not None or test_data is not None:
            raise BertkitError("an objective holds its own data; pass the data to it, not to Trainer")
        self.model = model
        self.objective = objective
        self.folder = RunFolder(output_dir)
        self.progress = progress
        self.log = log or (lambda line: print(line, file=sys.stderr))
        if not distributed.is_main_process():  # under DDP, rank 0 alone speaks and draws the progress bar
            self.progress, self.log = False, (lambda line: None)
        self.record_extra = dict(record or {})
        self._best_weights: dict[str, torch.Tensor] | None = None

    @property
    def output_dir(self) -> Path | None:
        return self.folder.path

    @property
    def device(self) -> torch.device:
        return self.model.device

    def evaluate(self, data: Any = None) -> dict[str, Any]:
        """The objective's report on `data` (default: its evaluation data); see Classification.evaluate."""
        return self.objective.evaluate() if data is None else self.objective.evaluate(data)

    def prepare_output(self, resume: bool = False) -> Path | None:
        """Check the output folder suits a new run (or holds one to resume); returns the checkpoint to resume from."""
        return self.folder.prepare(resume)

    # -- the loop ---------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> TrainResult:
        """Train; with `resume`, carry on from the newest checkpoint in `output_dir` exactly where it stopped."""
        cfg, network, objective = self.config, self.model.network, self.objective
        started = time.perf_counter()
        if distributed.is_distributed():
            check_world_size(cfg.sequences_per_batch, distributed.world_size(), resuming=resume)
        resume_from = distributed.on_main(lambda: self.folder.prepare(resume))  # only rank 0 touches the folder

        generator = seed_everything(cfg.seed)
        t0 = time.perf_counter()
        stream = objective.batches(generator)
        total_steps = planned_steps(cfg, stream)
        tokenize_s = time.perf_counter() - t0

        optimizer = make_optimizer(network, cfg.lr, cfg.weight_decay)
        scheduler = linear_warmup_decay(optimizer, warmup_steps_for(total_steps, cfg.warmup_ratio), total_steps)
        run = RunState()
        if resume_from is not None:
            run = self.folder.restore(resume_from, network, optimizer, scheduler, generator, cfg,
                                      objective.fingerprint(), self.log)
            self.log(f"resuming from {resume_from} at step {run.step} (epoch {run.epoch + 1}, batch {run.batch})")
        elif distributed.rank() > 0:  # other dropout masks than rank 0's; rank 0 replays a single process exactly
            seed_rank(cfg.seed, distributed.rank(), 0)
        self.folder.write_records(run.history, rewrite=True)
        # Wrapped after any restore: DDP starts by broadcasting rank 0's weights to the others.
        parallel = distributed.is_distributed()
        stepper = DataParallel(network, objective, self.device) if parallel else OneProcess(network, objective)
        self._best_weights = None
        session = _Session(self, run, optimizer, scheduler, generator, total_steps)

        network.train()
        try:
            with _Interrupt(announce=distributed.is_main_process()) as interrupt:
                for epoch, done_batches, group, epoch_batches in step_groups(stream, cfg, run.epoch, run.batch):
                    t_step = time.perf_counter()
                    loss_sum, grad_norm = stepper.step(stream, group, optimizer, scheduler, epoch=epoch,
                                                       max_grad_norm=cfg.max_grad_norm)
                    session.took_step(loss_sum, grad_norm, group, stream.lengths, objective.counted(stream, group, epoch))
                    run.epoch, run.batch = epoch, done_batches

                    end_of_epoch = done_batches >= epoch_batches
                    done = run.step >= total_steps
                    epoch_float = epoch + done_batches / epoch_batches
                    eval_due = objective.evaluates and (end_of_epoch or done or _every(run.step, cfg.eval_every))
                    if _every(run.step, cfg.log_every) or end_of_epoch or done or eval_due:
                        session.read_out(epoch_float, grad_norm)
                    if end_of_epoch:
                        run.epoch, run.batch = epoch + 1, 0
                    run.train_s += time.perf_counter() - t_step

                    with session.paused():  # evaluation and saving do not count as throughput
                        improved, stop = session.evaluate(epoch_float) if eval_due else (False, False)
                        run.finished = done or stop
                        run.stopped_early = stop and not done
                        stopping = interrupt.requested
                        if parallel:  # all ranks stop after the same step, or one would wait for the others forever
                            stopping = distributed.any_true(stopping)
                        if improved or end_of_epoch or run.finished or stopping or _every(run.step, cfg.save_every):
                            session.save(announce=bool(cfg.save_every or stopping))
                    if stopping and not run.finished:
                        where = f"; resume with: {objective.command} --resume {self.output_dir}" if self.output_dir else ""
                        self.log(f"stopped at step {run.step}{where}")
                        raise KeyboardInterrupt
                    if run.finished:
                        break
        finally:
            session.bar.close()
            network.eval()
        if run.stopped_early:
            self.log(f"early stopping: {cfg.metric} did not improve for {cfg.patience} evaluations")
        return self._finish(run, tokenize_s, time.perf_counter() - started, total_steps)

    # -- the end of a run -------------------------------------------------------------------------
    def _finish(self, run: RunState, tokenize_s: float, wall_s: float, total_steps: int) -> TrainResult:
        cfg, network = self.config, self.model.network
        best = run.best
        if best and cfg.restore_best:
            def load_best() -> None:
                root = self.folder.checkpoints
                if root is not None and best.get("checkpoint") and (root / best["checkpoint"]).is_dir():
                    ckpt.load_weights(network, root / best["checkpoint"])
                elif self._best_weights is not None:
                    network.load_state_dict(self._best_weights)

            distributed.on_main(load_best)
            distributed.broadcast_module(network)  # only rank 0 can read the checkpoint folder
        final = best if (best and cfg.restore_best) else run.last_eval
        metrics = {"split": "eval", "step": final["step"], "epoch": final["epoch"], **final["report"]} if final else None
        t = time.perf_counter()
        test_metrics = self.objective.test()
        test_s = time.perf_counter() - t
        timings = {
            "tokenize_s": round(tokenize_s, 3),
            "train_s": round(run.train_s, 3),  # optimizer steps only, summed over resumed sessions
            "eval_s": round(run.eval_s + test_s, 3),
            "checkpoint_s": round(run.save_s, 3),
            "wall_s_this_session": round(wall_s, 3),
            "examples_per_s": round(run.examples / max(run.train_s, 1e-9), 2),
            "tokens_per_s": round(run.tokens / max(run.train_s, 1e-9), 1),
        }
        best_public = {k: v for k, v in best.items() if k != "report"} if best else None
        record = training_record(cfg, self.model, self.objective, run, best_public, total_steps, timings,
                                 self.record_extra)
        result = TrainResult(metrics, test_metrics, run.history, best_public, run.step, run.stopped_early,
                             timings, self.output_dir, record)
        if self.output_dir is not None:  # under DDP every rank waits until rank 0 has written the folder
            distributed.on_main(lambda: self._write_run_folder(result))
        return result

    def _write_run_folder(self, result: TrainResult) -> None:
        final = dict(result.metrics) if result.metrics else {"split": None, "note": "no evaluation data"}
        if result.metrics is None:
            last = [r for r in result.history if r["split"] == "train"]
            final["train_loss"] = last[-1]["loss"] if last else None
        if result.test_metrics is not None:
            final["test"] = result.test_metrics
        final["selected_by"] = result.best and {"metric": result.best["metric"], "step": result.best["step"]}
        final.update(self.objective.notes())
        self.folder.write(self.model.save, final, result.record, result.history,
                          lambda folder: self.objective.write_files(folder, result.metrics, result.test_metrics),
                          self.config.keep_checkpoints)


def _every(step: int, interval: int | None) -> bool:
    return bool(interval) and step % interval == 0


class _Session:
    """One call of `fit`: what the loop keeps between steps, and the evaluations, read-outs and saves it makes."""

    def __init__(self, trainer: Trainer, run: RunState, optimizer, scheduler, generator: torch.Generator,
                 total_steps: int):
        from bertkit.terminal import progress_bar

        self.trainer, self.run = trainer, run
        self.optimizer, self.scheduler, self.generator = optimizer, scheduler, generator
        self.config, self.objective, self.folder = trainer.config, trainer.objective, trainer.folder
        device = trainer.device
        # The training loss summed on the device since the last read-out. A resumed run starts from the sum the
        # checkpoint saved (rank 0 holds it for all), so the read-out whose window spans the kill is the one an
        # uninterrupted run logs.
        self.running = torch.tensor(run.window_loss if distributed.is_main_process() else 0.0, device=device)
        # The first step whose loss or gradient norm was NaN or infinite, kept on the device so that no step waits
        # for it; it is read where the host syncs anyway: at read-outs, evaluations and saves.
        self.first_bad = torch.full((), NEVER, dtype=torch.long, device=device)
        self.fingerprint = self.objective.fingerprint() if self.folder.path is not None else None
        # Throughput of this session since the last read-out (after a resume, of its own steps only).
        self.window = {"examples": 0, "tokens": 0, "t": time.perf_counter()}
        self.bar = progress_bar(total=total_steps, initial=run.step, unit="step", desc="train", dynamic_ncols=True,
                                disable=(not trainer.progress) if trainer.progress is not None else None,
                                file=sys.stderr)

    def took_step(self, loss_sum: torch.Tensor, grad_norm: torch.Tensor | None, group: Sequence[Sequence[int]],
                  lengths: Sequence[int], counted: int) -> None:
        """Count a step just taken: its loss (summed on the device), whether it stayed finite, its examples and tokens;
        `counted` is what its loss is a mean over (Objective.counted: its examples, or an objective's tokens)."""
        run = self.run
        run.step += 1
        self.running += loss_sum
        finite_step = torch.isfinite(loss_sum)
        if grad_norm is not None:
            finite_step &= torch.isfinite(grad_norm)
        self.first_bad.masked_fill_(~finite_step & (self.first_bad == NEVER), run.step)
        examples = sum(len(indices) for indices in group)
        tokens = sum(lengths[i] for indices in group for i in indices)  # the global batch's, under DDP too
        run.examples += examples
        run.tokens += tokens
        # What the read-out's mean divides by (the name is the checkpoint's: examples, or an objective's tokens).
        run.window_examples += counted
        self.window["examples"] += examples
        self.window["tokens"] += tokens
        self.bar.update(1)

    def check_finite(self) -> None:
        """Stop a run that went NaN or infinite (read where the host syncs anyway, so no step waits for it)."""
        step = int(distributed.all_reduce_min_(self.first_bad.clone()))
        if step != NEVER:
            raise self.diverged(step, "training loss")

    def diverged(self, step: int, what: str) -> OptionError:
        """The error that stops a run gone NaN or infinite (most often a learning rate far too high)."""
        return OptionError("lr", f"{self.config.lr:g} is likely too high: the {what} became NaN or infinite at step "
                                 f"{step}, so training stopped and nothing from that step on was saved or logged; "
                                 f"try a lower value")

    def read_out(self, epoch_float: float, grad_norm: torch.Tensor | None) -> None:
        """The one host sync of a logging interval: the mean training loss since the last one, written as a record."""
        self.check_finite()  # before the read-out, so no NaN is ever logged
        run = self.run
        distributed.all_reduce_sum_(self.running)  # each rank summed its own shards; the record is the global batch's
        elapsed = max(time.perf_counter() - self.window["t"], 1e-9)
        loss = float(self.running) / max(1, run.window_examples)
        figures = self.objective.train_figures(loss)
        record = {"step": run.step, "epoch": round(epoch_float, 4), "split": "train", "loss": loss, **figures,
                  "lr": self.scheduler.get_last_lr()[0], "grad_norm": float(grad_norm) if grad_norm is not None else None,
                  "examples_per_s": self.window["examples"] / elapsed, "tokens_per_s": self.window["tokens"] / elapsed}
        run.history.append(record)
        self.folder.write_records([record])
        self.bar.set_postfix(loss=f"{loss:.4f}", **{k: f"{v:.4g}" for k, v in figures.items()}, lr=f"{record['lr']:.2e}",
                             ex_s=f"{record['examples_per_s']:.0f}", tok_s=f"{record['tokens_per_s']:.0f}", refresh=False)
        self.running.zero_()
        run.window_examples = 0
        self.window.update(examples=0, tokens=0, t=time.perf_counter())

    def evaluate(self, epoch_float: float) -> tuple[bool, bool]:
        """Evaluate and track the best: (whether this evaluation is the new best, whether early stopping says stop)."""
        self.check_finite()  # a step gone non-finite is never evaluated, so it can never be selected as the best
        cfg, run = self.config, self.run
        t = time.perf_counter()
        report = self.objective.evaluate()
        run.eval_s += time.perf_counter() - t
        if not math.isfinite(report["loss"]):
            raise self.diverged(run.step, "evaluation loss")
        record = {"step": run.step, "epoch": round(epoch_float, 4), "split": "eval", **report}
        run.history.append(record)
        run.last_eval = {"step": run.step, "epoch": record["epoch"], "report": report}
        self.folder.write_records([record])
        value, best = report[cfg.metric], run.best
        improved = best is None or (value > best["value"] if higher_is_better(cfg.metric) else value < best["value"])
        shown = "  ".join(f"{k}={report[k]:.4f}" for k in self.objective.shown if k in report)
        self.say(f"step {run.step} epoch {epoch_float:.2f}  eval {shown}" + ("  (best)" if improved else ""))
        if not improved:
            run.bad_evals += 1
            return False, bool(cfg.patience and run.bad_evals >= cfg.patience)
        run.bad_evals = 0
        run.best = {"metric": cfg.metric, "value": value, "step": run.step, "epoch": record["epoch"],
                    "checkpoint": self.folder.next_checkpoint_name(), "report": report}
        if self.folder.path is None and cfg.restore_best:  # no folder to keep it in: keep a CPU copy
            network = self.trainer.model.network
            self.trainer._best_weights = {k: v.detach().to("cpu", copy=True) for k, v in network.state_dict().items()}
        return True, False

    def save(self, announce: bool) -> None:
        """Checkpoint the run as it stands (every rank's RNGs included under DDP; rank 0 writes)."""
        if self.folder.path is None:
            return
        t = time.perf_counter()
        self.check_finite()  # a step that went non-finite is never saved
        run = self.run
        run.window_loss = float(distributed.all_reduce_sum_(self.running.clone()))
        state = {"run": run.to_state(), "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "rng": ckpt.rng_state(self.generator), "config": self.config.to_dict(), "data_sha256": self.fingerprint}
        saved = None
        if distributed.is_distributed():  # every rank's RNGs, so a resume on as many processes replays dropout exactly
            state["rng_ranks"] = distributed.all_gather_object(state["rng"])
            state["world_size"] = distributed.world_size()
        if distributed.is_main_process():
            saved = self.folder.save_checkpoint(self.trainer.model.network, state, run.best and run.best["checkpoint"])
        run.save_s += time.perf_counter() - t
        if saved is not None and announce:
            self.say(f"checkpoint saved: {saved}")

    def say(self, line: str) -> None:
        if not self.bar.disable:
            self.bar.write(line, file=sys.stderr)
        else:
            self.trainer.log(line)

    def paused(self) -> "_Paused":
        return _Paused(self.window)


class _Paused:
    """A stretch of the loop (evaluating, saving) left out of the throughput figures."""

    def __init__(self, window: dict) -> None:
        self.window = window

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc) -> None:
        self.window["t"] += time.perf_counter() - self.start


__all__ = ["MAX_PLANNED_EXAMPLES", "RunState", "Trainer", "TrainConfig", "TrainResult", "planned_steps", "step_groups"]
