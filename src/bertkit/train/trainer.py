"""Trainer: fit a classifier with the training blocks, evaluate, keep the best, checkpoint, resume, and write the run folder."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from bertkit.checkpoint import atomic_write
from bertkit.data import TextDataset
from bertkit.errors import BertkitError
from bertkit.model import Model
from bertkit.train import distributed
from bertkit.train import state as ckpt
from bertkit.train.batches import BatchStream, encode_dataset, seed_everything
from bertkit.train.loop import balanced_class_weights, predict_logits, train_step
from bertkit.train.metrics import classification_report, format_report, multilabel_report
from bertkit.train.optim import linear_warmup_decay, make_optimizer, warmup_steps_for
from bertkit.train.parallel import DataParallel, check_world_size, predict_logits_sharded, seed_rank
from bertkit.train.record import describe_split, device_info, library_versions

HIGHER_IS_BETTER = {"accuracy": True, "macro_f1": True, "micro_f1": True, "loss": False}
CHECKPOINTS = "checkpoints"
RUN_FILES = ("metrics.json", "metrics.jsonl", "training_record.json", "training_curves.png",
             "confusion_matrix.png", "split.json")


@dataclass
class TrainConfig:
    """Everything that decides what a training run computes (and so must match on --resume)."""

    epochs: int = 3
    max_steps: int | None = None  # when set, overrides epochs (as in transformers)
    lr: float = 5e-5
    batch_size: int | None = 32  # sequences per batch; None with batch_tokens = token budget only
    batch_tokens: int | None = None  # token budget per batch (batch size x longest sequence)
    max_length: int | None = 256
    bucket_size: int = 64  # batches' worth of examples sorted by length together; 0 = random batches
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    grad_accum: int = 1
    max_grad_norm: float | None = 1.0
    seed: int = 42
    metric: str = "macro_f1"  # picks the best checkpoint and drives early stopping
    patience: int | None = None  # evaluations without improvement before stopping
    class_weights: str | None = None  # None or "balanced"
    threshold: float = 0.5  # multi-label: a label applies when its sigmoid reaches this
    eval_every: int | None = None  # steps; evaluation also runs at every epoch's end
    save_every: int | None = None  # steps; a checkpoint is also written at every epoch's end
    log_every: int = 10  # steps between loss read-outs (each one is a host sync on a GPU)
    eval_batch_tokens: int | None = None
    restore_best: bool = True  # end with the best evaluated weights rather than the last ones
    keep_checkpoints: bool = False  # keep checkpoints/ after a successful run

    # Settings that may change between a run and its resumption without changing the numbers.
    RESUMABLE_CHANGES = ("log_every", "save_every", "eval_batch_tokens", "keep_checkpoints")

    def validate(self) -> None:
        def positive(name: str, allow_none: bool = True) -> None:
            value = getattr(self, name)
            if value is None and allow_none:
                return
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise BertkitError(f"{name.replace('_', '-')} must be a positive whole number, not {value!r}")

        for name in ("epochs", "grad_accum", "log_every"):
            positive(name, allow_none=False)
        if not isinstance(self.bucket_size, int) or self.bucket_size < 0:
            raise BertkitError(f"bucket-size must be 0 (random batches) or a positive whole number, not {self.bucket_size!r}")
        for name in ("max_steps", "batch_size", "batch_tokens", "max_length", "patience", "eval_every",
                     "save_every", "eval_batch_tokens"):
            positive(name)
        if self.batch_size is None and self.batch_tokens is None:
            raise BertkitError("give --batch-size or --batch-tokens (or both)")
        if self.max_length is not None and self.max_length < 3:
            raise BertkitError(f"--max-length {self.max_length} leaves no room for text; use at least 3")
        if not self.lr > 0:
            raise BertkitError(f"--lr must be positive, not {self.lr}")
        if not 0 <= self.warmup_ratio < 1:
            raise BertkitError(f"--warmup-ratio must be in [0, 1), not {self.warmup_ratio}")
        if self.weight_decay < 0:
            raise BertkitError(f"--weight-decay must be >= 0, not {self.weight_decay}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise BertkitError(f"--max-grad-norm must be positive (or omitted for no clipping), not {self.max_grad_norm}")
        if self.metric not in HIGHER_IS_BETTER:
            raise BertkitError(f"--metric '{self.metric}' is not known; use one of {', '.join(HIGHER_IS_BETTER)}")
        if self.class_weights not in (None, "balanced"):
            raise BertkitError(f"--class-weights '{self.class_weights}' is not known; use 'balanced' or leave it out")
        if not 0 < self.threshold < 1:
            raise BertkitError(f"--threshold must be between 0 and 1, not {self.threshold}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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
        self.config = dataclasses.replace(config or TrainConfig(), **overrides)
        self.config.validate()
        if train_data.labels is None:
            raise BertkitError(f"{train_data.source or 'the training data'} has no labels; pass --label-column")
        if len(train_data) == 0:
            raise BertkitError("the training data is empty")
        from bertkit.accel import linear_weights_dtype

        if linear_weights_dtype(model.network) is not None:
            raise BertkitError("this model's Linear weights were cast for inference (accel.cast_linear_weights); "
                               "load the checkpoint again to train it")
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
            raise BertkitError("--metric micro_f1 is for multi-label data; use accuracy, macro_f1 or loss")
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

    @property
    def device(self) -> torch.device:
        return self.model.device

    def _eval_stream(self, data: TextDataset) -> BatchStream:
        encodings = encode_dataset(self.model, data, self.config.max_length)
        return BatchStream(encodings, data.labels, batch_tokens=self.config.eval_batch_tokens or self.model.default_batch_tokens,
                           shuffle=False, device=self.device)

    # -- evaluation -------------------------------------------------------------------------------
    def evaluate(self, data: TextDataset | BatchStream) -> dict[str, Any]:
        """Loss, accuracy, macro-F1, per-class precision/recall/F1 (and the confusion matrix) on labelled data."""
        stream = data if isinstance(data, BatchStream) else self._eval_stream(data)
        if stream.labels is None:
            raise BertkitError("evaluation needs labelled data; pass the label column")
        if distributed.is_distributed():
            logits, loss = predict_logits_sharded(self.model.network, stream)
        else:
            logits, loss = predict_logits(self.model.network, stream)
        return report_from_logits(logits, stream.labels, self.label_names, loss, self.multi_label, self.config.threshold)

    # -- training ---------------------------------------------------------------------------------
    def fit(self, resume: bool = False) -> TrainResult:
        """Train; with `resume`, carry on from the newest checkpoint in `output_dir` exactly where it stopped."""
        cfg = self.config
        network = self.model.network
        started = time.perf_counter()
        ckpt_root = self.output_dir / CHECKPOINTS if self.output_dir else None
        world = distributed.world_size()
        if distributed.is_distributed():
            check_world_size(cfg.batch_size, world, resuming=resume)
        resume_from = distributed.on_main(lambda: self.prepare_output(resume))  # only rank 0 touches the folder

        generator = seed_everything(cfg.seed)
        t0 = time.perf_counter()
        train_enc = encode_dataset(self.model, self.train_data, cfg.max_length)
        stream = BatchStream(train_enc, self.train_data.labels, batch_tokens=cfg.batch_tokens, batch_size=cfg.batch_size,
                             shuffle=True, generator=generator, device=self.device, bucket_size=cfg.bucket_size)
        eval_stream = self._eval_stream(self.eval_data) if self.eval_data is not None else None
        tokenize_s = time.perf_counter() - t0

        steps_in = lambda epoch: math.ceil(stream.num_batches(epoch) / cfg.grad_accum)  # noqa: E731
        total_steps = cfg.max_steps or sum(steps_in(e) for e in range(cfg.epochs))
        optimizer = make_optimizer(network, cfg.lr, cfg.weight_decay)
        scheduler = linear_warmup_decay(optimizer, warmup_steps_for(total_steps, cfg.warmup_ratio), total_steps)
        class_weights = (balanced_class_weights(self.train_data.labels, len(self.label_names)).to(self.device)
                         if cfg.class_weights == "balanced" else None)

        run = {"step": 0, "epoch": 0, "batch": 0, "best": None, "last_eval": None, "bad_evals": 0, "history": [],
               "finished": False, "stopped_early": False, "train_s": 0.0, "eval_s": 0.0, "save_s": 0.0,
               "examples": 0, "tokens": 0, "resumed_at": []}
        if resume_from is not None:
            run = self._restore(resume_from, optimizer, scheduler, generator)
            self.log(f"resuming from {resume_from} at step {run['step']} (epoch {run['epoch'] + 1}, batch {run['batch']})")
        elif distributed.rank() > 0:  # other dropout masks than rank 0's; rank 0 replays a single process exactly
            seed_rank(cfg.seed, distributed.rank(), 0)
        self._write_jsonl(run["history"], rewrite=True)
        # Wrapped after any restore: DDP starts by broadcasting rank 0's weights to the others.
        ddp = DataParallel(network, self.device) if distributed.is_distributed() else None

        data_sha256 = self.train_data.fingerprint() if ckpt_root is not None else None

        def save() -> Path | None:
            if ckpt_root is None:
                return None
            state = {**run, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                     "rng": ckpt.rng_state(generator), "config": cfg.to_dict(), "data_sha256": data_sha256}
            if ddp is not None:  # every rank's RNGs, so a resume on as many processes replays dropout exactly
                state["rng_ranks"] = distributed.all_gather_object(state["rng"])
                state["world_size"] = world
                if not distributed.is_main_process():
                    return None
            best_name = run["best"]["checkpoint"] if run["best"] else None
            return ckpt.save_checkpoint(ckpt_root, network, state, keep=(best_name,) if best_name else ())

        def evaluate_now(epoch_float: float) -> bool:
            """Evaluate and track the best; True when early stopping says stop."""
            t = time.perf_counter()
            report = self.evaluate(eval_stream)
            run["eval_s"] += time.perf_counter() - t
            record = {"step": run["step"], "epoch": round(epoch_float, 4), "split": "eval", **report}
            run["history"].append(record)
            run["last_eval"] = {"step": run["step"], "epoch": record["epoch"], "report": report}
            self._write_jsonl([record])
            value, best = report[cfg.metric], run["best"]
            improved = best is None or (value > best["value"] if HIGHER_IS_BETTER[cfg.metric] else value < best["value"])
            shown = "  ".join(f"{k}={report[k]:.4f}" for k in ("loss", "accuracy", "macro_f1", "micro_f1") if k in report)
            self._say(bar, f"step {run['step']} epoch {epoch_float:.2f}  eval {shown}" + ("  (best)" if improved else ""))
            if not improved:
                run["bad_evals"] += 1
                return bool(cfg.patience and run["bad_evals"] >= cfg.patience)
            run["bad_evals"] = 0
            run["best"] = {"metric": cfg.metric, "value": value, "step": run["step"], "epoch": record["epoch"],
                           "checkpoint": self._next_checkpoint_name(ckpt_root), "report": report}
            if ckpt_root is None and cfg.restore_best:  # no folder to keep it in: keep a CPU copy
                self._best_weights = {k: v.detach().to("cpu", copy=True) for k, v in network.state_dict().items()}
            return False

        from tqdm import tqdm

        bar = tqdm(total=total_steps, initial=run["step"], unit="step", desc="train", dynamic_ncols=True,
                   disable=(not self.progress) if self.progress is not None else None, file=sys.stderr)
        self._best_weights: dict[str, torch.Tensor] | None = None
        running = torch.zeros((), device=self.device)  # summed loss since the last read-out, kept on the device
        window = {"examples": 0, "tokens": 0, "t": time.perf_counter()}
        network.train()
        try:
            with _Interrupt(announce=distributed.is_main_process()) as interrupt:
                epoch = run["epoch"]
                while not run["finished"] and (cfg.max_steps or epoch < cfg.epochs):
                    plan = stream.plan(epoch)
                    pos = run["batch"] if epoch == run["epoch"] else 0
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
                        run["step"] += 1
                        run["epoch"], run["batch"] = epoch, pos
                        n_examples = sum(len(g) for g in group)
                        run["examples"] += n_examples
                        run["tokens"] += n_tokens
                        window["examples"] += n_examples
                        window["tokens"] += n_tokens
                        bar.update(1)

                        end_of_epoch = pos >= len(plan)
                        done = run["step"] >= total_steps
                        epoch_float = epoch + pos / len(plan)
                        eval_due = eval_stream is not None and (
                            end_of_epoch or done or bool(cfg.eval_every and run["step"] % cfg.eval_every == 0))
                        if run["step"] % cfg.log_every == 0 or end_of_epoch or done or eval_due:
                            self._log_train(run, running, window, scheduler, grad_norm, epoch_float, bar)
                            running.zero_()
                        if end_of_epoch:
                            run["epoch"], run["batch"] = epoch + 1, 0
                        run["train_s"] += time.perf_counter() - t_step

                        paused = time.perf_counter()  # evaluation and saving do not count as throughput
                        best_before = run["best"]
                        stop = evaluate_now(epoch_float) if eval_due else False
                        improved = run["best"] is not best_before
                        run["finished"] = done or stop
                        run["stopped_early"] = stop and not done
                        stopping = interrupt.requested
                        if ddp is not None:  # all ranks stop after the same step, or one would wait for the others forever
                            stopping = distributed.any_true(stopping)
                        if (improved or end_of_epoch or run["finished"] or stopping
                                or (cfg.save_every and run["step"] % cfg.save_every == 0)):
                            t = time.perf_counter()
                            saved = save()
                            run["save_s"] = run.get("save_s", 0.0) + time.perf_counter() - t
                            if saved is not None and (cfg.save_every or stopping):
                                self._say(bar, f"checkpoint saved: {saved}")
                        window["t"] += time.perf_counter() - paused
                        if stopping and not run["finished"]:
                            where = f"; resume with: bertkit train --resume {self.output_dir}" if self.output_dir else ""
                            self.log(f"stopped at step {run['step']}{where}")
                            raise KeyboardInterrupt
                        if run["finished"]:
                            break
                    epoch += 1
        finally:
            bar.close()
            network.eval()
        if run["stopped_early"]:
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

    def _log_train(self, run, running, window, scheduler, grad_norm, epoch_float, bar) -> None:
        # The one host sync of the logging interval: the loss summed on the device since the last one.
        distributed.all_reduce_sum_(running)  # each rank summed its own shards; the record is the global batch's
        elapsed = max(time.perf_counter() - window["t"], 1e-9)
        loss = float(running) / max(1, window["examples"])
        record = {"step": run["step"], "epoch": round(epoch_float, 4), "split": "train", "loss": loss,
                  "lr": scheduler.get_last_lr()[0], "grad_norm": float(grad_norm) if grad_norm is not None else None,
                  "examples_per_s": window["examples"] / elapsed, "tokens_per_s": window["tokens"] / elapsed}
        run["history"].append(record)
        self._write_jsonl([record])
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{record['lr']:.2e}", ex_s=f"{record['examples_per_s']:.0f}",
                        tok_s=f"{record['tokens_per_s']:.0f}", refresh=False)
        window.update(examples=0, tokens=0, steps=0, t=time.perf_counter())

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

    def _restore(self, folder: Path, optimizer, scheduler, generator) -> dict[str, Any]:
        def read() -> dict[str, Any]:
            state = ckpt.load_training_state(folder)
            saved_cfg = state.get("config", {})
            current = self.config.to_dict()
            changed = [k for k in current if k not in TrainConfig.RESUMABLE_CHANGES and saved_cfg.get(k) != current[k]]
            if changed:
                diffs = ", ".join(f"{k}: {saved_cfg.get(k)!r} -> {current[k]!r}" for k in changed)
                raise BertkitError(f"the checkpoint was trained with other settings ({diffs}); resume with the same ones")
            if state.get("data_sha256") != self.train_data.fingerprint():
                raise BertkitError(f"the training data differ from those of the checkpoint in {folder}; "
                                   f"resume with the same --data, columns, --limit, --test-size and --seed")
            ckpt.load_weights(self.model.network, folder)  # under DDP the others get them when DDP wraps the network
            return state

        # Under DDP only rank 0 reads the checkpoint (it need not be on a shared disk) and sends the state round.
        state = distributed.on_main(read)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        ckpt.set_rng_state(state["rng"], generator)
        me, world, saved_world = distributed.rank(), distributed.world_size(), int(state.get("world_size", 1))
        if me > 0:
            ranks = state.get("rng_ranks") or []
            if saved_world == world and me < len(ranks):
                ckpt.set_rng_state(ranks[me], generator)
            else:
                seed_rank(self.config.seed, me, int(state["step"]))
        if saved_world != world:
            self.log(f"the checkpoint was written by {saved_world} process(es) and this run has {world}: the global batches "
                     f"stay the same; dropout on ranks other than 0 will not replay the original run")
        drop = ("optimizer", "scheduler", "rng", "rng_ranks", "world_size", "config", "data_sha256", "version")
        run = {k: v for k, v in state.items() if k not in drop}
        run["resumed_at"] = list(run.get("resumed_at", [])) + [run["step"]]
        return run

    def _write_jsonl(self, records: list[dict], rewrite: bool = False) -> None:
        if self.output_dir is None or not distributed.is_main_process():
            return
        path = self.output_dir / "metrics.jsonl"
        text = "".join(json.dumps(r) + "\n" for r in records)
        if rewrite:  # on resume, the file is made to match the checkpoint (later lines belong to lost steps)
            atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        else:
            with open(path, "a", encoding="utf-8") as f:
                f.write(text)

    def _finish(self, run, tokenize_s: float, wall_s: float, ckpt_root: Path | None, total_steps: int) -> TrainResult:
        cfg = self.config
        network = self.model.network
        best = run["best"]
        if best and cfg.restore_best:
            def load_best() -> None:
                if ckpt_root is not None and best.get("checkpoint") and (ckpt_root / best["checkpoint"]).is_dir():
                    ckpt.load_weights(network, ckpt_root / best["checkpoint"])
                elif self._best_weights is not None:
                    network.load_state_dict(self._best_weights)

            distributed.on_main(load_best)
            distributed.broadcast_module(network)  # only rank 0 can read the checkpoint folder
        final = best if (best and cfg.restore_best) else run["last_eval"]
        metrics = {"split": "eval", "step": final["step"], "epoch": final["epoch"], **final["report"]} if final else None
        test_metrics = None
        t = time.perf_counter()
        if self.test_data is not None:
            test_metrics = {"split": "test", **self.evaluate(self.test_data)}
        test_s = time.perf_counter() - t
        train_losses = [r["loss"] for r in run["history"] if r["split"] == "train"]
        timings = {
            "tokenize_s": round(tokenize_s, 3),
            "train_s": round(run["train_s"], 3),  # optimizer steps only, summed over resumed sessions
            "eval_s": round(run["eval_s"] + test_s, 3),
            "checkpoint_s": round(run["save_s"], 3),
            "wall_s_this_session": round(wall_s, 3),
            "examples_per_s": round(run["examples"] / max(run["train_s"], 1e-9), 2),
            "tokens_per_s": round(run["tokens"] / max(run["train_s"], 1e-9), 1),
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
            "data": {name: describe_split(ds) for name, ds in
                     (("train", self.train_data), ("eval", self.eval_data), ("test", self.test_data)) if ds is not None},
            "steps": run["step"],
            "total_steps_planned": total_steps,
            "epochs_completed": run["epoch"],
            "stopped_early": run["stopped_early"],
            "best": best_public,
            "final_train_loss": train_losses[-1] if train_losses else None,
            "resumed_at_steps": run["resumed_at"],
            "world_size": distributed.world_size(),
            "versions": library_versions(),
            "device": device_info(self.device),
            "timings": timings,
        }
        result = TrainResult(metrics, test_metrics, run["history"], best_public, run["step"], run["stopped_early"],
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
    if multi_label:
        predicted = (torch.sigmoid(logits) >= threshold).int().numpy()
        report = multilabel_report(labels, predicted, label_names, loss=loss)
        report["threshold"] = threshold
        return report
    return classification_report(labels, logits.argmax(dim=1).numpy(), label_names, loss=loss)


def write_json(path: Path, payload: Any) -> None:
    text = json.dumps(payload, indent=2, ensure_ascii=False) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


__all__ = ["Trainer", "TrainConfig", "TrainResult", "report_from_logits", "format_report"]
