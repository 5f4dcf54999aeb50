"""`bertkit train`, `bertkit evaluate` and `bertkit datasets`: thin layers over bertkit.train and bertkit.data."""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from bertkit.cli.common import add_json_arg, emit
from bertkit.errors import BertkitError

# Flags that fix what a run computes, with their defaults. On --resume they come from the run's
# training_arguments.json, and giving one with another value is an error rather than a silent change.
RUN_DEFAULTS: dict[str, Any] = {
    "model": "minilm", "data": None, "text_column": None, "label_column": None, "pair_column": None,
    "eval_data": None, "test_data": None, "test_size": 0.1, "limit": None, "eval_limit": None,
    "multi_label": False, "drop_invalid": False, "strict": False,
    "epochs": 3, "max_steps": None, "lr": 5e-5, "batch_size": None, "batch_tokens": None, "max_length": 256,
    "bucket_size": 64,
    "warmup_ratio": 0.1, "weight_decay": 0.01, "grad_accum": 1, "max_grad_norm": 1.0, "seed": 42,
    "metric": "macro_f1", "patience": None, "class_weights": None, "threshold": 0.5, "eval_every": None,
}
# Flags that may differ on --resume: they change how the run is watched or stored, not its numbers.
SESSION_DEFAULTS: dict[str, Any] = {"save_every": None, "log_every": 10, "keep_checkpoints": False}
CONFIG_FIELDS = ("epochs", "max_steps", "lr", "batch_size", "batch_tokens", "max_length", "bucket_size", "warmup_ratio",
                 "weight_decay", "grad_accum", "max_grad_norm", "seed", "metric", "patience", "class_weights",
                 "threshold", "eval_every", "save_every", "log_every", "keep_checkpoints")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="fine-tune a classifier on labelled text",
                       description="Fine-tune a BERT model as a text classifier; writes an HF-layout model folder "
                                   "with metrics.json, metrics.jsonl, plots and training_record.json.")
    g = p.add_argument_group("model and data")
    g.add_argument("--model", "-m", default=None, help="bundled alias, local folder or hub id (default: minilm)")
    g.add_argument("--data", default=None, help="CSV/TSV/JSONL/Parquet file or built-in dataset (see `bertkit datasets`)")
    g.add_argument("--text-column", default=None, help="column holding the text (default: text/sentence/review/content)")
    g.add_argument("--label-column", default=None, help="column holding the label (default: label/labels/category/class/target)")
    g.add_argument("--pair-column", default=None, help="column holding a second text, for sentence-pair tasks")
    g.add_argument("--eval-data", default=None, help="a separate evaluation file (default: a stratified split of --data)")
    g.add_argument("--test-data", default=None, help="a held-out test file, scored once with the final model")
    g.add_argument("--test-size", type=_size, default=None, help="evaluation share of --data: a fraction or a row count (default: 0.1)")
    g.add_argument("--limit", type=int, default=None, help="train on a stratified subset of N examples")
    g.add_argument("--eval-limit", type=int, default=None, help="evaluate on a stratified subset of N examples")
    g.add_argument("--multi-label", action="store_true", default=None, help="each row may carry several labels (sigmoid + BCE)")
    g.add_argument("--drop-invalid", action="store_true", default=None, help="drop (with a warning) rows with empty text or label")
    g.add_argument("--strict", action="store_true", default=None, help="fail, rather than warn, on suspicious splits")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=None, help="passes over the training data (default: 3)")
    g.add_argument("--max-steps", type=int, default=None, help="stop after N optimizer steps (overrides --epochs)")
    g.add_argument("--lr", type=float, default=None, help="peak learning rate (default: 5e-5)")
    g.add_argument("--batch-size", type=int, default=None, help="sequences per batch (default: 32 unless --batch-tokens)")
    g.add_argument("--batch-tokens", type=int, default=None, help="token budget per batch (batch size x longest sequence)")
    g.add_argument("--max-length", type=int, default=None, help="truncate texts to N tokens; the count is reported (default: 256)")
    g.add_argument("--bucket-size", type=int, default=None,
                   help="batches' worth of examples grouped by length before shuffling; 0 = random batches (default: 64)")
    g.add_argument("--warmup-ratio", type=float, default=None, help="share of steps with linear warm-up (default: 0.1)")
    g.add_argument("--weight-decay", type=float, default=None, help="AdamW weight decay, not on biases/LayerNorm (default: 0.01)")
    g.add_argument("--grad-accum", type=int, default=None, help="batches per optimizer step (default: 1)")
    g.add_argument("--max-grad-norm", type=float, default=None, help="gradient clipping norm; 0 disables (default: 1.0)")
    g.add_argument("--seed", type=int, default=None, help="one seed for split, order, dropout and head (default: 42)")
    g.add_argument("--class-weights", choices=["balanced"], default=None, help="weigh classes inversely to their frequency")
    g.add_argument("--threshold", type=float, default=None, help="multi-label decision threshold (default: 0.5)")
    g = p.add_argument_group("evaluation and checkpoints")
    g.add_argument("--metric", choices=["macro_f1", "accuracy", "loss", "micro_f1"], default=None,
                   help="selects the best checkpoint and drives early stopping (default: macro_f1)")
    g.add_argument("--patience", type=int, default=None, help="stop after N evaluations without improvement")
    g.add_argument("--eval-every", type=int, default=None, help="also evaluate every N steps (always at each epoch's end)")
    g.add_argument("--save-every", type=int, default=None, help="also checkpoint every N steps (always at each epoch's end)")
    g.add_argument("--log-every", type=int, default=None, help="steps between loss read-outs (default: 10)")
    g.add_argument("--output", "-o", default=None, help="run folder to write (default: runs/train-TIMESTAMP)")
    g.add_argument("--resume", metavar="DIR", default=None, help="carry on the unfinished run in DIR where it stopped")
    g.add_argument("--overwrite", action="store_true", help="replace a finished or unfinished run in --output")
    g.add_argument("--keep-checkpoints", action="store_true", default=None, help="keep DIR/checkpoints after success")
    g.add_argument("--device", default=None, help="cpu, cuda, cuda:N, mps (default: best available)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = p.add_argument_group("data-parallel training",
                             "--batch-size and --batch-tokens are global: each of N processes trains on 1/N of every "
                             "batch. For several machines start torchrun yourself: torchrun --nnodes M "
                             "--nproc-per-node N --node-rank R --rdzv-endpoint HOST:PORT -m bertkit train ...")
    g.add_argument("--nproc", type=int, default=None,
                   help="train with N processes on this machine (DDP; one per GPU, or gloo on the CPU); launches torchrun")
    add_json_arg(p)
    p.set_defaults(func=train, train_parser=p)

    p = sub.add_parser("evaluate", help="score a trained classifier on labelled data")
    p.add_argument("--model", "-m", required=True, help="a folder written by `bertkit train` (or any classifier)")
    p.add_argument("--data", required=True, help="CSV/TSV/JSONL/Parquet file or built-in dataset")
    p.add_argument("--text-column", default=None)
    p.add_argument("--label-column", default=None)
    p.add_argument("--pair-column", default=None)
    p.add_argument("--split", choices=["train", "eval", "test"], default=None,
                   help="only the rows of this split of the model's training run (from its split.json)")
    p.add_argument("--limit", type=int, default=None, help="a stratified subset of N examples")
    p.add_argument("--max-length", type=int, default=None, help="truncate to N tokens (default: the training run's)")
    p.add_argument("--batch-tokens", type=int, default=None)
    p.add_argument("--threshold", type=float, default=None, help="multi-label decision threshold (default: the model's)")
    p.add_argument("--output-dir", default=None, help="write evaluation.json, predictions.jsonl and confusion_matrix.png here")
    p.add_argument("--device", default=None)
    add_json_arg(p)
    p.set_defaults(func=evaluate)

    p = sub.add_parser("datasets", help="list the built-in datasets with their sizes and labels")
    add_json_arg(p)
    p.set_defaults(func=datasets)


def _size(text: str) -> float | int:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is neither a fraction (0.1) nor a row count (500)") from None


def resolve_arguments(args: argparse.Namespace) -> tuple[dict[str, Any], Path, bool]:
    """(run arguments, output folder, resume?) from the flags, the defaults and, on --resume, the saved run."""
    from bertkit.train.recipes import saved_arguments

    given = {k: getattr(args, k) for k in {**RUN_DEFAULTS, **SESSION_DEFAULTS} if getattr(args, k, None) is not None}
    if given.get("max_grad_norm") == 0:
        given["max_grad_norm"] = None  # 0 means no clipping
    if args.resume:
        output = Path(args.resume)
        if args.output and Path(args.output).resolve() != output.resolve():
            raise BertkitError(f"--resume {args.resume} continues the run in that folder; drop --output {args.output}")
        if not output.is_dir():
            raise BertkitError(f"--resume {args.resume}: no such folder")
        saved = saved_arguments(output)
        if saved is None:
            raise BertkitError(f"{output} has no training_arguments.json; it was not started by `bertkit train`")
        changed = [k for k, v in given.items() if k in RUN_DEFAULTS and saved.get(k) != v]
        if changed:
            diffs = ", ".join(f"--{k.replace('_', '-')} {given[k]!r} (run: {saved.get(k)!r})" for k in changed)
            raise BertkitError(f"--resume continues a run with its own settings; these differ: {diffs}. "
                               f"Drop them, or start a new run")
        run = {**RUN_DEFAULTS, **SESSION_DEFAULTS, **saved, **given}
        return run, output, True
    run = {**RUN_DEFAULTS, **SESSION_DEFAULTS, **given}
    if run["data"] is None:
        raise BertkitError("no training data; pass --data FILE or a built-in name (see `bertkit datasets`)")
    if run["batch_size"] is None and run["batch_tokens"] is None:
        run["batch_size"] = 32
    output = Path(args.output) if args.output else Path("runs") / time.strftime("train-%Y%m%d-%H%M%S")
    return run, output, False


def train(args: argparse.Namespace) -> int:
    from bertkit.train import distributed

    if getattr(args, "nproc", None) is not None:
        return launch(args)
    if distributed.launched_by_torchrun():
        return train_worker(args)
    return run_training(args, args.device)


def run_training(args: argparse.Namespace, device: str | None) -> int:
    from bertkit.train import distributed
    from bertkit.train.metrics import format_report
    from bertkit.train.recipes import finetune

    # Under DDP rank 0 resolves (it alone may see the run folder; the default name holds a timestamp) and tells the rest.
    run, output, resume = distributed.on_main(lambda: resolve_arguments(args))
    config = {k: run[k] for k in CONFIG_FIELDS}
    result = finetune(
        run["model"], run["data"], output_dir=output, eval_data=run["eval_data"], test_data=run["test_data"],
        text_column=run["text_column"], label_column=run["label_column"], pair_column=run["pair_column"],
        multi_label=run["multi_label"], drop_invalid=run["drop_invalid"], test_size=run["test_size"],
        limit=run["limit"], eval_limit=run["eval_limit"], strict=run["strict"], device=device, resume=resume,
        overwrite=args.overwrite, progress=False if args.no_progress else None,
        arguments={k: run[k] for k in RUN_DEFAULTS | SESSION_DEFAULTS}, **config,
    )
    if not distributed.is_main_process():
        return 0
    payload = {"output_dir": str(output), "metrics": result.metrics, "test_metrics": result.test_metrics,
               "best": result.best, "steps": result.steps, "stopped_early": result.stopped_early,
               "timings": result.timings}

    def human(p: dict) -> str:
        lines = []
        if p["metrics"]:
            lines += [f"evaluation ({p['metrics']['n']} examples, step {p['metrics']['step']}):", format_report(p["metrics"])]
        if p["test_metrics"]:
            lines += ["", f"test ({p['test_metrics']['n']} examples):", format_report(p["test_metrics"])]
        t = p["timings"]
        lines += ["", f"{p['steps']} steps in {t['train_s']:.1f}s training ({t['examples_per_s']:.1f} examples/s) "
                      f"+ {t['eval_s']:.1f}s evaluation" + ("; stopped early" if p["stopped_early"] else ""),
                  f"model saved to {p['output_dir']} (metrics.json, metrics.jsonl, training_curves.png, "
                  f"confusion_matrix.png, training_record.json)"]
        return "\n".join(lines)

    emit(args, payload, human)
    return 0


def train_worker(args: argparse.Namespace) -> int:
    """One process of a torchrun job: join the process group, train its share, leave; rank 0 alone reports."""
    from bertkit.train import distributed

    device = distributed.device_for(args.device)
    distributed.setup(device)
    quiet = not distributed.is_main_process()
    if quiet:
        warnings.simplefilter("ignore")  # rank 0 shows the same warnings once
    try:
        return run_training(args, str(device))
    except distributed.SharedError:
        if quiet:  # rank 0 reports it
            return 2
        raise
    except KeyboardInterrupt:
        if quiet:  # rank 0 says where the run stopped
            return 130
        raise
    except BertkitError as e:
        if quiet:
            # Another node may lack what rank 0 has (data, model): one line per node, naming the rank.
            if distributed.local_rank() == 0:
                print(f"error: [rank {distributed.rank()}] {e}", file=sys.stderr)
            return 2
        raise
    finally:
        distributed.teardown()


def launch(args: argparse.Namespace) -> int:
    """`bertkit train --nproc N`: check the flags, then start N workers on this machine through torchrun's launcher."""
    import torch

    from bertkit.device import pick_device
    from bertkit.train import distributed
    from bertkit.train.parallel import check_world_size
    from bertkit.train.trainer import TrainConfig

    n = args.nproc
    if n < 1:
        raise BertkitError(f"--nproc must be a positive whole number of processes, not {n}")
    if distributed.launched_by_torchrun():
        raise BertkitError("--nproc starts torchrun itself; under torchrun, drop --nproc")
    # Everything a worker would refuse at once is refused here, as one line, before any process starts.
    run, output, resume = resolve_arguments(args)
    TrainConfig(**{k: run[k] for k in CONFIG_FIELDS}).validate()
    check_world_size(run["batch_size"], n, resuming=resume)
    device = pick_device(args.device if args.device not in (None, "auto") else
                         ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "mps":
        raise BertkitError("data-parallel training runs on CUDA (NCCL) or the CPU (gloo), not MPS; pass --device cpu")
    if device.type == "cuda":
        if device.index is not None:
            raise BertkitError(f"--nproc {n} uses GPUs 0..{n - 1} (or those in CUDA_VISIBLE_DEVICES); pass --device cuda")
        if n > torch.cuda.device_count():
            raise BertkitError(f"--nproc {n} needs {n} GPUs but torch sees {torch.cuda.device_count()}; "
                               f"use --nproc {torch.cuda.device_count()} or fewer")
    elif "OMP_NUM_THREADS" not in os.environ:  # torchrun would give each CPU worker one thread; share the cores instead
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // n))
    # The default run folder is named by the clock: name it once here, so the workers use the one announced.
    pinned = ["--output", str(output)] if not resume and args.output is None else []
    return _torchrun(["--standalone", "--nnodes", "1", "--nproc-per-node", str(n), "--module", "bertkit", "train",
                      *worker_argv(args), *pinned])


def worker_argv(args: argparse.Namespace) -> list[str]:
    """The command line the workers get: the user's flags, rebuilt from the parsed ones, minus --nproc."""
    out: list[str] = []
    for action in args.train_parser._actions:
        if not action.option_strings or action.dest in ("help", "nproc"):
            continue
        value = getattr(args, action.dest, None)
        flag = next(o for o in action.option_strings if o.startswith("--"))
        if isinstance(action, argparse._StoreTrueAction):
            out += [flag] if value else []
        elif value is not None and value != action.default:
            out += [flag, str(value)]
    return out


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


def evaluate(args: argparse.Namespace) -> int:
    from bertkit.train.metrics import format_report
    from bertkit.train.recipes import evaluate_model

    report = evaluate_model(args.model, args.data, text_column=args.text_column, label_column=args.label_column,
                            pair_column=args.pair_column, split=args.split, limit=args.limit, max_length=args.max_length,
                            batch_tokens=args.batch_tokens, threshold=args.threshold, output_dir=args.output_dir,
                            device=args.device)

    def human(r: dict) -> str:
        where = f" (split {r['split']})" if r["split"] else ""
        lines = [f"{r['model']} on {r['data']}{where}", format_report(r)]
        if args.output_dir:
            lines.append(f"report written to {args.output_dir} (evaluation.json, predictions.jsonl, confusion_matrix.png)")
        return "\n".join(lines)

    emit(args, report, human)
    return 0


def datasets(args: argparse.Namespace) -> int:
    from bertkit.data import list_datasets

    rows = list_datasets()

    def human(rows: list[dict]) -> str:
        lines = [f"{'name':<16} {'rows':>6}  labels (count)"]
        for r in rows:
            if r["available"]:
                labels = ", ".join(f"{k} ({v})" for k, v in r["label_counts"].items())
                lines.append(f"{r['name']:<16} {r['rows']:>6}  {labels}")
            else:
                lines.append(f"{r['name']:<16} {'-':>6}  unavailable: {r['error']}")
            lines.append(f"{'':<16} {'':>6}  {r['description']}")
        lines.append("use one with: bertkit train --data NAME ...")
        return "\n".join(lines)

    emit(args, rows, human)
    return 0
