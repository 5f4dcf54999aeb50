"""`bertkit train`, `bertkit pretrain`, `bertkit evaluate` and `bertkit datasets`: flags derived from the option dataclasses, and printing."""
from __future__ import annotations

import argparse

from bertkit.cli.common import add_json_arg, add_model_args, emit
from bertkit.data import formats_help
from bertkit.options import add_flags, from_args, specs
from bertkit.train.arguments import EvaluateOptions, TrainArguments
from bertkit.train.config import LONG_OPTIONS, TrainConfig
from bertkit.train.launch import ParallelOptions, SessionOptions
from bertkit.train.run_folder import (ARGUMENTS, CURVES, EVALUATION_FILES, METRICS, MLM_CURVES, RECORD, RECORDS,
                                      RUN_FILES)

PRETRAIN_FILES = (METRICS, RECORDS, RECORD, CURVES, MLM_CURVES, ARGUMENTS)  # what a pretrain run folder holds

# Shown under "evaluation and checkpoints" rather than "optimisation" in the help.
CHECKPOINT_GROUP = ("metric", "patience", "eval_every", "save_every", "log_every", "keep_checkpoints")
LONG_HELP = ("texts longer than --max-length tokens: cut (truncate, head+tail: training reads the tokens kept) or read "
             "whole in windows (chunk: each window trains with its document's label, and evaluation aggregates each "
             "document's windows); the model keeps the choice, and predict and evaluate use it by default")


def _only(cls: type, names: tuple[str, ...]) -> tuple[str, ...]:
    """The option names of `cls` other than `names` (what add_flags should skip to show just those)."""
    return tuple(s.name for s in specs(cls) if s.name not in names)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="fine-tune a classifier on labelled text",
                       description="Fine-tune a BERT model as a text classifier; writes an HF-layout model folder "
                                   f"with the run's record beside the weights ({', '.join(RUN_FILES)}).")
    # suppress: a flag not given stays absent, so --resume can tell it from the saved run's value.
    add_flags(p.add_argument_group("model and data"), TrainArguments, suppress=True)
    add_flags(p.add_argument_group("optimisation"), TrainConfig, skip=CHECKPOINT_GROUP + LONG_OPTIONS, suppress=True)
    add_flags(p.add_argument_group("long documents", LONG_HELP), TrainConfig, skip=_only(TrainConfig, LONG_OPTIONS),
              suppress=True)
    _add_run_flags(p, "train")
    p.set_defaults(func=train)

    from bertkit.pretrain.arguments import NOT_FOR_PRETRAINING, PretrainArguments

    p = sub.add_parser("pretrain", help="masked-LM training on unlabelled text (domain adaptation, or a small BERT)",
                       description="Train a BERT model's encoder and masked-LM head on unlabelled text, BERT's way "
                                   "(whole-word masking, packed windows, a fresh mask each epoch); a model without an "
                                   "MLM head gets one. Writes a Hugging Face BertForMaskedLM folder with the run's "
                                   f"record beside the weights ({', '.join(PRETRAIN_FILES)}).")
    add_flags(p.add_argument_group("model and text"), PretrainArguments, suppress=True)
    add_flags(p.add_argument_group("optimisation"), TrainConfig, skip=CHECKPOINT_GROUP + NOT_FOR_PRETRAINING,
              suppress=True)
    _add_run_flags(p, "pretrain", skip=NOT_FOR_PRETRAINING)
    p.set_defaults(func=pretrain)

    p = sub.add_parser("evaluate", help="score a trained classifier on labelled data")
    add_model_args(p, default=None, runs_network=False)
    p.add_argument("--data", required=True, help=f"a file ({formats_help()}) or a built-in dataset (bertkit datasets)")
    add_flags(p, EvaluateOptions, skip=LONG_OPTIONS)
    add_flags(p.add_argument_group("long documents", "how texts longer than --max-length are read (default: as the "
                                                     "model was trained); metrics are per document"),
              EvaluateOptions, skip=_only(EvaluateOptions, LONG_OPTIONS))
    p.add_argument("--output-dir", default=None, help=f"write {', '.join(EVALUATION_FILES)} here")
    add_json_arg(p)
    p.set_defaults(func=evaluate)

    p = sub.add_parser("datasets", help="list the built-in datasets with their sizes and labels")
    add_json_arg(p)
    p.set_defaults(func=datasets)


def _add_run_flags(p: argparse.ArgumentParser, command: str, skip: tuple[str, ...] = ()) -> None:
    """A training command's evaluation, checkpoint, session, data-parallel and --json flags."""
    g = p.add_argument_group("evaluation and checkpoints")
    add_flags(g, TrainConfig, skip=_only(TrainConfig, CHECKPOINT_GROUP) + skip, suppress=True)
    add_flags(g, SessionOptions, suppress=True)
    g = p.add_argument_group("data-parallel training",
                             "--batch-size and --batch-tokens are global: each of N processes trains on 1/N of every "
                             "batch. For several machines start torchrun yourself: torchrun --nnodes M "
                             f"--nproc-per-node N --node-rank R --rdzv-endpoint HOST:PORT -m bertkit {command} ...")
    add_flags(g, ParallelOptions, suppress=True)
    add_json_arg(p)


def train(args: argparse.Namespace) -> int:
    from bertkit.train import launch
    from bertkit.train.metrics import format_report

    outcome = launch.train(launch.given_options(vars(args)), from_args(SessionOptions, args),
                           from_args(ParallelOptions, args), extra_flags=["--json"] if args.json else [])
    if outcome.result is None:
        return outcome.exit_code

    def human(p: dict) -> str:
        lines = []
        if p["metrics"]:
            lines += [f"evaluation ({_size(p['metrics'])}, step {p['metrics']['step']}):", format_report(p["metrics"])]
        if p["test_metrics"]:
            lines += ["", f"test ({_size(p['test_metrics'])}):", format_report(p["test_metrics"])]
        t = p["timings"]
        lines += ["", f"{p['steps']} steps in {t['train_s']:.1f}s training ({t['examples_per_s']:.1f} examples/s) "
                      f"+ {t['eval_s']:.1f}s evaluation" + ("; stopped early" if p["stopped_early"] else ""),
                  f"model saved to {p['output_dir']} ({', '.join(_written(p['output_dir'], RUN_FILES))})"]
        return "\n".join(lines)

    emit(args, outcome.result.summary(), human)
    return outcome.exit_code


def pretrain(args: argparse.Namespace) -> int:
    from bertkit.pretrain.recipe import PRETRAIN
    from bertkit.train import launch

    outcome = launch.train(launch.given_options(vars(args), PRETRAIN), from_args(SessionOptions, args),
                           from_args(ParallelOptions, args), extra_flags=["--json"] if args.json else [],
                           command=PRETRAIN)
    if outcome.result is None:
        return outcome.exit_code

    def human(p: dict) -> str:
        m, lines = p["metrics"], []
        if m:
            lines.append(f"held-out masked tokens ({m['masked_tokens']:,}, step {m['step']}):")
            for name, f in (("model", m), ("unigram baseline", m.get("unigram"))):
                if f:
                    lines.append(f"  {name:<17} loss {f['loss']:.4f}  perplexity {f['perplexity']:.2f}  "
                                 f"top-1 {f['top1']:.3f}  top-5 {f['top5']:.3f}")
        t = p["timings"]
        lines += [f"{p['steps']} steps in {t['train_s']:.1f}s training ({t['tokens_per_s']:.0f} tokens/s) "
                  f"+ {t['eval_s']:.1f}s evaluation" + ("; stopped early" if p["stopped_early"] else ""),
                  f"model saved to {p['output_dir']} ({', '.join(_written(p['output_dir'], PRETRAIN_FILES))}); "
                  f"try: bertkit fill-mask --model {p['output_dir']} \"the capital of france is [MASK].\""]
        return "\n".join(lines)

    emit(args, outcome.result.summary(), human)
    return outcome.exit_code


def evaluate(args: argparse.Namespace) -> int:
    from bertkit.train.metrics import format_report
    from bertkit.train.recipes import evaluate_model

    report = evaluate_model(args.model, args.data, from_args(EvaluateOptions, args), output_dir=args.output_dir,
                            device=args.device)

    def human(r: dict) -> str:
        where = f" (split {r['split']})" if r["split"] else ""
        lines = [f"{r['model']} on {r['data']}{where}: {_size(r)}", format_report(r)]
        if args.output_dir:
            lines.append(f"report written to {args.output_dir} ({', '.join(_written(args.output_dir, EVALUATION_FILES))})")
        return "\n".join(lines)

    emit(args, report, human)
    return 0


def _written(folder: str, names: tuple[str, ...]) -> list[str]:
    """Which of a run's files are in its folder (a plot or a split is there only when the run made one)."""
    from pathlib import Path

    return [name for name in names if (Path(folder) / name).exists()]


def _size(report: dict) -> str:
    """How many examples a report scored, and in how many windows when long documents were chunked."""
    windows = report.get("windows")
    return f"{report['n']} examples" + (f" in {windows} windows" if windows not in (None, report["n"]) else "")


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
