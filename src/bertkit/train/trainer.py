"""Trainer: fit a classifier with the training blocks, evaluate, keep the best, checkpoint, resume, and write the run folder.

Long documents (`long=` in TrainConfig, resolved against the base model's saved plan): the texts of
each split are cut into windows after the split is made, so a document's windows never straddle
two splits. Under `chunk` every window is a training example carrying its document's label;
evaluation scores each window, aggregates each document's window probabilities as predict does
(`classify.aggregate`), and computes the metrics per document. The saved model records the plan,
so predict and evaluate use it by default.
"""
from __future__ import annotations

import dataclasses
import math
import os
import shutil
import signal
import sys
import threading
import time
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from bertkit.checkpoint import atomic_write
from bertkit.data import TextDataset
from bertkit.errors import BertkitError, OptionError
from bertkit.model import Model
from bertkit.train import distributed
from bertkit.train import state as ckpt
from bertkit.tasks.classify import Predict, _scores, aggregate
from bertkit.train.batches import BatchStream, Windows, seed_everything, window_dataset
from bertkit.train.config import Metric, TrainConfig, defaults, higher_is_better, resume_conflicts
from bertkit.train.jsonout import finite, jsonl, write_json
from bertkit.train.loop import balanced_class_weights, predict_logits, train_step
from bertkit.train.metrics import classification_report, format_report, multilabel_report
from bertkit.train.optim import linear_warmup_decay, make_optimizer, warmup_steps_for
from bertkit.train.parallel import DataParallel, check_world_size, predict_logits_sharded, seed_rank
from bertkit.train.record import describe_split, device_info, library_versions
from bertkit.train.state import RunState
from bertkit.windows import SAVED, Document, Plan, weights

CHECKPOINTS = "checkpoints"
RUN_FILES = ("metrics.json", "metrics.jsonl", "training_record.json", "training_curves.png",
             "confusion_matrix.png", "split.json")
# With a token budget each epoch's batch count is known only once its order is drawn, and the learning-rate
# schedule needs the total before the first step. Planning runs at about a million example-epochs a second on
# one CPU core: beyond this many a run would sit silent before its first step, so it is refused instead.
MAX_PLANNED_EXAMPLES = 2_000_000
NEVER = 2**62  # "no step yet" for the step at which training first went non-finite
# What an evaluation report's loss is when documents are read in several windows (written beside the metrics).
EVAL_LOSS = ("the mean loss over the evaluation windows, each against its document's label; every other metric is "
             "per document, from its windows' probabilities aggregated as long_document.aggregate says")


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
    """Fine-tune `model` as a text classifier on `train_data`, evaluating on `eval_data`.

    With `output_dir`, the run is checkpointed (resumable with `fit(resume=True)`) and ends as an
    HF-layout model folder with metrics.json, metrics.jsonl, plots and training_record.json.
    """

    def __init__(
        self,
        model: Model,
        train_data: TextDataset,
        eval_data: TextDataset | None = None,
        config: TrainConfig | None = None,
        *,
        output_dir: str | os.PathLike | None = None,
        test_data: TextDataset | None = None,
        progress: bool | None = None,
        log: Callable[[str], None] | None = None,
        record: dict[str, Any] | None = None,
        **overrides: Any,
    ):
        self.config = dataclasses.replace(config, **overrides) if config is not None else TrainConfig(**overrides)
        self.config.validate()  # again: a field may have been assigned since the config was made
        if train_data.labels is None:
            raise BertkitError(f"{train_data.source or 'the training data'} has no labels; pass --label-column")
        if len(train_data) == 0:
            raise BertkitError("the training data is empty")
        if model.network.inference_only:
            raise BertkitError(model.network.inference_only)
        self.model = model
        self.train_data = train_data
        self.eval_data = eval_data
        self.test_data = test_data
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.progress = progress
        self.log = log or (lambda line: print(line, file=sys.stderr))
        if not distributed.is_main_process():  # under DDP, rank 0 alone speaks and draws the progress bar
            self.progress, self.log = False, (lambda line: None)
        self.record_extra = dict(record or {})
        self.multi_label = train_data.multi_label
        self.label_names = list(train_data.label_names)
        for name, ds in (("evaluation", eval_data), ("test", test_data)):
            if ds is None:
                continue
            if ds.labels is None:
                raise BertkitError(f"the {name} data has no labels; pass its label column")
            if list(ds.label_names) != self.label_names:
                raise BertkitError(f"the {name} data's labels {ds.label_names} differ from the training data's "
                                   f"{self.label_names}; load it with label_names=train.label_names")
            if ds.multi_label != self.multi_label:
                raise BertkitError(f"the {name} data is {'' if ds.multi_label else 'not '}multi-label but the training data "
                                   f"is {'' if self.multi_label else 'not '}; load both the same way")
        if self.config.metric == "micro_f1" and not self.multi_label:
            others = ", ".join(m for m in typing.get_args(Metric) if m != "micro_f1")
            raise OptionError("metric", f"micro_f1 is for multi-label data; use one of {others}")
        # The run's options, else the base model's training plan, else the defaults; read before it is replaced.
        self.plan = dataclasses.replace(Plan.of(self.config, model.config.extra.get(SAVED), Predict.aggregations, "train"),
                                        window=self.config.max_length)
        self.window_counts: dict[str, int] = {}  # sequences per split, filled as each is cut into windows
        self._ensure_head()

    # -- setup ------------------------------------------------------------------------------------
    def _ensure_head(self) -> None:
        network = self.model.network
        problem = "multi_label_classification" if self.multi_label else "single_label_classification"
        if network.classifier is None:
            seed_everything(self.config.seed)  # the new head's initial weights depend on the seed alone
            network.add_classifier(dict(enumerate(self.label_names)), problem_type=problem)
        elif network.config.label_names != self.label_names:
            raise BertkitError(
                f"the model's classifier predicts {network.config.label_names} but the data's labels are "
                f"{self.label_names}; load the data with label_names=model.labels, or replace the head with "
                f"model.network.add_classifier(...)")
        network.config.problem_type = problem
        if self.multi_label:
            network.config.extra["multi_label_threshold"] = self.config.threshold
        # What predict and evaluate use by default, the window length included (a text is read as in training).
        network.config.extra[SAVED] = self.plan.saved()

    @property
    def device(self) -> torch.device:
        return self.model.device

    def _windows(self, data: TextDataset, split: str | None = None) -> Windows:
        windows = window_dataset(self.model, data, self.config.max_length, self.plan)
        if split is not None:
            self.window_counts[split] = len(windows.encodings)
        return windows

    def _eval_set(self, data: TextDataset, split: str | None = None) -> tuple[BatchStream, Windows]:
        windows = self._windows(data, split)
        return BatchStream(windows.encodings, windows.window_labels, shuffle=False, device=self.device,
                           batch_tokens=self.config.eval_batch_tokens or self.model.default_batch_tokens), windows

    # -- evaluation -------------------------------------------------------------------------------
    def evaluate(self, data: TextDataset | BatchStream | tuple[BatchStream, Windows]) -> dict[str, Any]:
        """Loss, accuracy, macro-F1, per-class precision/recall/F1 (and the confusion matrix) on labelled data.

        The metrics are per document (a chunked one's windows aggregated by the run's plan); the loss
        is the windows' mean (EVAL_LOSS). A BatchStream's sequences are each their own document.
        """
        if isinstance(data, TextDataset):
            data = self._eval_set(data)
        elif isinstance(data, BatchStream):
            data = (data, Windows([Document([e], [0], 0) for e in data.encodings], data.labels))
        stream, windows = data
        if stream.labels is None:
            raise BertkitError("evaluation needs labelled data; pass the label column")
        if distributed.is_distributed():
            logits, loss = predict_logits_sharded(self.model.network, stream)
        else:
            logits, loss = predict_logits(self.model.network, stream)
        return document_report(logits, loss, windows, self.label_names, self.multi_label, self.plan.aggregate,
                               self.config.threshold)

    # -- training ---------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> TrainResult:
        """Train; with `resume`, carry on from the newest checkpoint in `output_dir` exactly where it stopped."""
        cfg = self.config
        network = self.model.network
        started = time.perf_counter()
        ckpt_root = self.output_dir / CHECKPOINTS if self.output_dir else None
        world = distributed.world_size()
        if distributed.is_distributed():
            check_world_size(cfg.sequences_per_batch, world, resuming=resume)
        resume_from = distributed.on_main(lambda: self.prepare_output(resume))  # only rank 0 touches the folder

        generator = seed_everything(cfg.seed)
        t0 = time.perf_counter()
        train_windows = self._windows(self.train_data, "train")  # each window is an example with its document's label
        stream = BatchStream(train_windows.encodings, train_windows.window_labels, batch_tokens=cfg.batch_tokens,
                             batch_size=cfg.sequences_per_batch, shuffle=True, generator=generator, device=self.device,
                             bucket_size=cfg.bucket_size)
        total_steps = planned_steps(cfg, stream)
        eval_set = self._eval_set(self.eval_data, "eval") if self.eval_data is not None else None
        tokenize_s = time.perf_counter() - t0

        optimizer = make_optimizer(network, cfg.lr, cfg.weight_decay)
        scheduler = linear_warmup_decay(optimizer, warmup_steps_for(total_steps, cfg.warmup_ratio), total_steps)
        # Balanced over what the loss sees: windows, so a class of long documents does not outweigh the others.
        class_weights = (balanced_class_weights(stream.labels, len(self.label_names)).to(self.device)
                         if cfg.class_weights == "balanced" else None)

        run = RunState()
        if resume_from is not None:
            run = self._restore(resume_from, optimizer, scheduler, generator)
            self.log(f"resuming from {resume_from} at step {run.step} (epoch {run.epoch + 1}, batch {run.batch})")
        elif distributed.rank() > 0:  # other dropout masks than rank 0's; rank 0 replays a single process exactly
            seed_rank(cfg.seed, distributed.rank(), 0)
        self._write_jsonl(run.history, rewrite=True)
        # Wrapped after any restore: DDP starts by broadcasting rank 0's weights to the others.
        ddp = DataParallel(network, self.device) if distributed.is_distributed() else None

        data_sha256 = self.train_data.fingerprint() if ckpt_root is not None else None
        # The training loss summed on the device since the last read-out. A resumed run starts from the sum the
        # checkpoint saved (rank 0 holds it for all), so the read-out whose window spans the kill is the one an
        # uninterrupted run logs.
        running = torch.tensor(run.window_loss if distributed.is_main_process() else 0.0, device=self.device)
        # The first step whose loss or gradient norm was NaN or infinite, kept on the device so that no step waits
        # for it; it is read where the host syncs anyway: at read-outs, evaluations and saves.
        first_bad = torch.full((), NEVER, dtype=torch.long, device=self.device)

        def check_finite() -> None:
            step = int(distributed.all_reduce_min_(first_bad.clone()))
            if step != NEVER:
                raise self._diverged(step, "training loss")

        def save() -> Path | None:
            if ckpt_root is None:
                return None
            check_finite()  # a step that went non-finite is never saved
            run.window_loss = float(distributed.all_reduce_sum_(running.clone()))
            state = {"run": run.to_state(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                     "rng": ckpt.rng_state(generator), "config": cfg.to_dict(), "data_sha256": data_sha256}
            if ddp is not None:  # every rank's RNGs, so a resume on as many processes replays dropout exactly
                state["rng_ranks"] = distributed.all_gather_object(state["rng"])
                state["world_size"] = world
                if not distributed.is_main_process():
                    return None
            best_name = run.best["checkpoint"] if run.best else None
            return ckpt.save_checkpoint(ckpt_root, network, state, keep=(best_name,) if best_name else ())

        def evaluate_now(epoch_float: float) -> bool:
            """Evaluate and track the best; True when early stopping says stop."""
            check_finite()  # nor is it evaluated, so it can never be selected as the best
            t = time.perf_counter()
            report = self.evaluate(eval_set)
            run.eval_s += time.perf_counter() - t
            if not math.isfinite(report["loss"]):
                raise self._diverged(run.step, "evaluation loss")
            record = {"step": run.step, "epoch": round(epoch_float, 4), "split": "eval", **report}
            run.history.append(record)
            run.last_eval = {"step": run.step, "epoch": record["epoch"], "report": report}
            self._write_jsonl([record])
            value, best = report[cfg.metric], run.best
            improved = best is None or (value > best["value"] if higher_is_better(cfg.metric) else value < best["value"])
            shown = "  ".join(f"{k}={report[k]:.4f}" for k in ("loss", "accuracy", "macro_f1", "micro_f1") if k in report)
            self._say(bar, f"step {run.step} epoch {epoch_float:.2f}  eval {shown}" + ("  (best)" if improved else ""))
            if not improved:
                run.bad_evals += 1
                return bool(cfg.patience and run.bad_evals >= cfg.patience)
            run.bad_evals = 0
            run.best = {"metric": cfg.metric, "value": value, "step": run.step, "epoch": record["epoch"],
                        "checkpoint": self._next_checkpoint_name(ckpt_root), "report": report}
            if ckpt_root is None and cfg.restore_best:  # no folder to keep it in: keep a CPU copy
                self._best_weights = {k: v.detach().to("cpu", copy=True) for k, v in network.state_dict().items()}
            return False

        from tqdm import tqdm

        bar = tqdm(total=total_steps, initial=run.step, unit="step", desc="train", dynamic_ncols=True,
                   disable=(not self.progress) if self.progress is not None else None, file=sys.stderr)
        self._best_weights: dict[str, torch.Tensor] | None = None
        # Throughput of this session since the last read-out (after a resume, of its own steps only).
        window = {"examples": 0, "tokens": 0, "t": time.perf_counter()}
        network.train()
        try:
            with _Interrupt(announce=distributed.is_main_process()) as interrupt:
                epoch = run.epoch
                while not run.finished and (cfg.max_steps or epoch < cfg.epochs):
                    plan = stream.plan(epoch)
                    pos = run.batch if epoch == run.epoch else 0
                    while pos < len(plan):
                        t_step = time.perf_counter()
                        group = plan[pos:pos + cfg.grad_accum]
                        if ddp is None:
                            batches = [stream.batch(ix) for ix in group]
                            loss_sum, grad_norm = train_step(network, batches, optimizer, scheduler,
                                                             max_grad_norm=cfg.max_grad_norm, class_weights=class_weights)
                            n_tokens = sum(b.num_tokens for b in batches)
                        else:
                            loss_sum, grad_norm = ddp.step(stream, group, optimizer, scheduler,
                                                           max_grad_norm=cfg.max_grad_norm, class_weights=class_weights)
                            n_tokens = sum(stream.lengths[i] for ix in group for i in ix)  # global, as single-process
                        running += loss_sum
                        pos += len(group)
                        run.step += 1
                        finite_step = torch.isfinite(loss_sum)
                        if grad_norm is not None:
                            finite_step &= torch.isfinite(grad_norm)
                        first_bad.masked_fill_(~finite_step & (first_bad == NEVER), run.step)
                        run.epoch, run.batch = epoch, pos
                        n_examples = sum(len(g) for g in group)
                        run.examples += n_examples
                        run.tokens += n_tokens
                        run.window_examples += n_examples
                        window["examples"] += n_examples
                        window["tokens"] += n_tokens
                        bar.update(1)

                        end_of_epoch = pos >= len(plan)
                        done = run.step >= total_steps
                        epoch_float = epoch + pos / len(plan)
                        eval_due = eval_set is not None and (
                            end_of_epoch or done or bool(cfg.eval_every and run.step % cfg.eval_every == 0))
                        if run.step % cfg.log_every == 0 or end_of_epoch or done or eval_due:
                            check_finite()  # before the read-out, so no NaN is ever logged
                            self._log_train(run, running, window, scheduler, grad_norm, epoch_float, bar)
                        if end_of_epoch:
                            run.epoch, run.batch = epoch + 1, 0
                        run.train_s += time.perf_counter() - t_step

                        paused = time.perf_counter()  # evaluation and saving do not count as throughput
                        best_before = run.best
                        stop = evaluate_now(epoch_float) if eval_due else False
                        improved = run.best is not best_before
                        run.finished = done or stop
                        run.stopped_early = stop and not done
                        stopping = interrupt.requested
                        if ddp is not None:  # all ranks stop after the same step, or one would wait for the others forever
                            stopping = distributed.any_true(stopping)
                        if (improved or end_of_epoch or run.finished or stopping
                                or (cfg.save_every and run.step % cfg.save_every == 0)):
                            t = time.perf_counter()
                            saved = save()
                            run.save_s += time.perf_counter() - t
                            if saved is not None and (cfg.save_every or stopping):
                                self._say(bar, f"checkpoint saved: {saved}")
                        window["t"] += time.perf_counter() - paused
                        if stopping and not run.finished:
                            where = f"; resume with: bertkit train --resume {self.output_dir}" if self.output_dir else ""
                            self.log(f"stopped at step {run.step}{where}")
                            raise KeyboardInterrupt
                        if run.finished:
                            break
                    epoch += 1
        finally:
            bar.close()
            network.eval()
        if run.stopped_early:
            self.log(f"early stopping: {cfg.metric} did not improve for {cfg.patience} evaluations")
        return self._finish(run, tokenize_s, time.perf_counter() - started, ckpt_root, total_steps)

    # -- pieces of fit ----------------------------------------------------------------------------
    def _say(self, bar, line: str, quiet: bool = False) -> None:
        if quiet:
            return
        if bar is not None and not bar.disable:
            bar.write(line, file=sys.stderr)
        else:
            self.log(line)

    def _next_checkpoint_name(self, root: Path | None) -> str | None:
        if root is None:
            return None
        latest = ckpt.latest_checkpoint(root)
        number = int(latest.name.split("-")[1]) + 1 if latest else 1
        return f"checkpoint-{number:06d}"

    def _diverged(self, step: int, what: str) -> OptionError:
        """The error that stops a run gone NaN or infinite (most often a learning rate far too high)."""
        return OptionError("lr", f"{self.config.lr:g} is likely too high: the {what} became NaN or infinite at step "
                                 f"{step}, so training stopped and nothing from that step on was saved or logged; "
                                 f"try a lower value")

    def _log_train(self, run: RunState, running: torch.Tensor, window: dict, scheduler, grad_norm, epoch_float: float,
                   bar) -> None:
        # The one host sync of the logging interval: the loss summed on the device since the last one.
        distributed.all_reduce_sum_(running)  # each rank summed its own shards; the record is the global batch's
        elapsed = max(time.perf_counter() - window["t"], 1e-9)
        loss = float(running) / max(1, run.window_examples)
        record = {"step": run.step, "epoch": round(epoch_float, 4), "split": "train", "loss": loss,
                  "lr": scheduler.get_last_lr()[0], "grad_norm": float(grad_norm) if grad_norm is not None else None,
                  "examples_per_s": window["examples"] / elapsed, "tokens_per_s": window["tokens"] / elapsed}
        run.history.append(record)
        self._write_jsonl([record])
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{record['lr']:.2e}", ex_s=f"{record['examples_per_s']:.0f}",
                        tok_s=f"{record['tokens_per_s']:.0f}", refresh=False)
        running.zero_()
        run.window_examples = 0
        window.update(examples=0, tokens=0, t=time.perf_counter())

    def prepare_output(self, resume: bool = False) -> Path | None:
        """Check the output folder suits a new run (or holds one to resume); returns the checkpoint to resume from."""
        if self.output_dir is None:
            if resume:
                raise BertkitError("resuming needs the run's output folder; pass output_dir (or --resume DIR)")
            return None
        latest = ckpt.latest_checkpoint(self.output_dir / CHECKPOINTS)
        if resume:
            if latest is None:
                raise BertkitError(f"{self.output_dir} holds no training checkpoint to resume; "
                                   f"start the run without --resume")
            return latest
        if self.output_dir.exists():
            if latest is not None:
                raise BertkitError(f"{self.output_dir} holds an unfinished run; pass --resume {self.output_dir} to "
                                   f"continue it, or --overwrite to start again")
            if (self.output_dir / "training_record.json").exists() or (self.output_dir / "model.safetensors").exists():
                raise BertkitError(f"{self.output_dir} already holds a trained model; pass --overwrite to replace it, "
                                   f"or choose another --output")
        self.output_dir.mkdir(parents=True, exist_ok=True)
        return None

    def _restore(self, folder: Path, optimizer, scheduler, generator) -> RunState:
        def read() -> dict[str, Any]:
            state = ckpt.load_training_state(folder)
            saved_cfg = {**defaults(TrainConfig), **state.get("config", {})}
            changed = resume_conflicts(saved_cfg, self.config.to_dict())
            if changed:
                diffs = ", ".join(f"{k}: {saved_cfg.get(k)!r} -> {getattr(self.config, k)!r}" for k in changed)
                raise BertkitError(f"the checkpoint was trained with other settings ({diffs}); resume with the same ones")
            if state.get("data_sha256") != self.train_data.fingerprint():
                raise BertkitError(f"the training data differ from those of the checkpoint in {folder}; "
                                   f"resume with the same --data, columns, --limit, --test-size and --seed")
            ckpt.load_weights(self.model.network, folder)  # under DDP the others get them when DDP wraps the network
            return state

        # Under DDP only rank 0 reads the checkpoint (it need not be on a shared disk) and sends the state round.
        state = distributed.on_main(read)
        run = RunState.from_state(state["run"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        ckpt.set_rng_state(state["rng"], generator)
        me, world, saved_world = distributed.rank(), distributed.world_size(), int(state.get("world_size", 1))
        if me > 0:
            ranks = state.get("rng_ranks") or []
            if saved_world == world and me < len(ranks):
                ckpt.set_rng_state(ranks[me], generator)
            else:
                seed_rank(self.config.seed, me, run.step)
        if saved_world != world:
            self.log(f"the checkpoint was written by {saved_world} process(es) and this run has {world}: the global batches "
                     f"stay the same; dropout on ranks other than 0 will not replay the original run")
        run.resumed_at.append(run.step)
        return run

    def _write_jsonl(self, records: list[dict], rewrite: bool = False) -> None:
        if self.output_dir is None or not distributed.is_main_process():
            return
        path = self.output_dir / "metrics.jsonl"
        text = jsonl(records)
        if rewrite:  # on resume, the file is made to match the checkpoint (later lines belong to lost steps)
            atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        else:
            with open(path, "a", encoding="utf-8") as f:
                f.write(text)

    def _finish(self, run: RunState, tokenize_s: float, wall_s: float, ckpt_root: Path | None, total_steps: int) -> TrainResult:
        cfg = self.config
        network = self.model.network
        best = run.best
        if best and cfg.restore_best:
            def load_best() -> None:
                if ckpt_root is not None and best.get("checkpoint") and (ckpt_root / best["checkpoint"]).is_dir():
                    ckpt.load_weights(network, ckpt_root / best["checkpoint"])
                elif self._best_weights is not None:
                    network.load_state_dict(self._best_weights)

            distributed.on_main(load_best)
            distributed.broadcast_module(network)  # only rank 0 can read the checkpoint folder
        final = best if (best and cfg.restore_best) else run.last_eval
        metrics = {"split": "eval", "step": final["step"], "epoch": final["epoch"], **final["report"]} if final else None
        test_metrics = None
        t = time.perf_counter()
        if self.test_data is not None:
            test_metrics = {"split": "test", **self.evaluate(self._eval_set(self.test_data, "test"))}
        test_s = time.perf_counter() - t
        train_losses = [r["loss"] for r in run.history if r["split"] == "train"]
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
        record = {
            "bertkit_training_record": 1,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **self.record_extra,
            "config": cfg.to_dict(),
            "seed": cfg.seed,
            "base_model": self.model.source,
            "labels": self.label_names,
            "multi_label": self.multi_label,
            "threshold": cfg.threshold if self.multi_label else None,
            "data": {name: {**describe_split(ds), "windows": self.window_counts.get(name)} for name, ds in
                     (("train", self.train_data), ("eval", self.eval_data), ("test", self.test_data)) if ds is not None},
            "long_document": self.plan.saved(),
            "window_tokens": min(cfg.max_length or self.model.max_length, self.model.max_length),
            "eval_loss": EVAL_LOSS,
            "steps": run.step,
            "total_steps_planned": total_steps,
            "epochs_completed": run.epoch,
            "stopped_early": run.stopped_early,
            "best": best_public,
            "final_train_loss": train_losses[-1] if train_losses else None,
            "resumed_at_steps": run.resumed_at,
            "world_size": distributed.world_size(),
            "versions": library_versions(),
            "device": device_info(self.device),
            "timings": timings,
        }
        result = TrainResult(metrics, test_metrics, run.history, best_public, run.step, run.stopped_early,
                             timings, self.output_dir, record)
        if self.output_dir is not None:  # under DDP every rank waits until rank 0 has written the folder
            distributed.on_main(lambda: self._write_run_folder(result, ckpt_root))
        return result

    def _write_run_folder(self, result: TrainResult, ckpt_root: Path | None) -> None:
        from bertkit.train.plots import plot_confusion_matrix, plot_training_curves

        out = self.output_dir
        self.model.save(out)
        final = dict(result.metrics) if result.metrics else {"split": None, "note": "no evaluation data"}
        if result.metrics is None:
            last = [r for r in result.history if r["split"] == "train"]
            final["train_loss"] = last[-1]["loss"] if last else None
        if result.test_metrics is not None:
            final["test"] = result.test_metrics
        final["selected_by"] = result.best and {"metric": result.best["metric"], "step": result.best["step"]}
        final["long_document"] = result.record["long_document"]
        if result.metrics is not None or result.test_metrics is not None:
            final["eval_loss"] = EVAL_LOSS
        write_json(out / "metrics.json", final)
        write_json(out / "training_record.json", result.record)
        try:
            plot_training_curves(result.history, out / "training_curves.png", title=f"Training {out.name}")
            shown = result.test_metrics or result.metrics
            if shown and shown.get("confusion_matrix"):
                plot_confusion_matrix(shown["confusion_matrix"], self.label_names, out / "confusion_matrix.png",
                                      title=f"Confusion matrix ({shown['split']}, n={shown['n']})")
        except Exception as e:  # a plot must never cost the trained model
            warnings.warn(f"could not draw the training plots ({e})", stacklevel=2)
        if ckpt_root is not None and not self.config.keep_checkpoints:
            shutil.rmtree(ckpt_root, ignore_errors=True)


def report_from_logits(logits: torch.Tensor, labels, label_names: list[str], loss: float | None,
                       multi_label: bool, threshold: float = 0.5) -> dict[str, Any]:
    """The metrics report for logits [N, C] against labels (ids, or 0/1 indicator rows)."""
    return report_from_scores(_scores(_kind(multi_label), logits), labels, label_names, loss, multi_label, threshold)


def report_from_scores(scores: torch.Tensor, labels, label_names: list[str], loss: float | None,
                       multi_label: bool, threshold: float = 0.5) -> dict[str, Any]:
    """The metrics report for probabilities [N, C] (softmax, or per-label sigmoids) against labels."""
    if multi_label:
        predicted = (scores >= threshold).int().numpy()
        report = multilabel_report(labels, predicted, label_names, loss=loss)
        report["threshold"] = threshold
        return report
    return classification_report(labels, scores.argmax(dim=1).numpy(), label_names, loss=loss)


def _kind(multi_label: bool) -> str:
    """The classify task's name for how a classifier's logits become probabilities."""
    return "multi_label" if multi_label else "single_label"


def document_scores(logits: torch.Tensor, windows: Windows, multi_label: bool, how: str,
                    threshold: float = 0.5) -> torch.Tensor:
    """Each document's probabilities [D, C] from its windows' logits [N, C], aggregated as predict does."""
    kind = _kind(multi_label)
    probs = _scores(kind, logits)
    if len(windows.encodings) == len(windows.documents):  # one window each: aggregate would return it unchanged
        return probs
    return torch.stack([aggregate(kind, list(probs[a:b]), weights(d), how, threshold)
                        for d, a, b in zip(windows.documents, windows.bounds, windows.bounds[1:])])


def document_report(logits: torch.Tensor, loss: float | None, windows: Windows, label_names: list[str],
                    multi_label: bool, how: str, threshold: float = 0.5) -> dict[str, Any]:
    """The metrics per document of `windows` (their labels), the loss as given (EVAL_LOSS), and the windows read."""
    scores = document_scores(logits, windows, multi_label, how, threshold)
    return {**report_from_scores(scores, windows.labels, label_names, loss, multi_label, threshold),
            "windows": len(windows.encodings)}


__all__ = ["RunState", "Trainer", "TrainConfig", "TrainResult", "document_report", "document_scores", "format_report",
           "planned_steps", "report_from_logits", "report_from_scores"]
