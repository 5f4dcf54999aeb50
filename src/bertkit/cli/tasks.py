"""The task commands, one per declared task: `bertkit <task> TEXT... [--input FILE] [--output ...] [--json]`.

Nothing here knows a particular task: flags come from each task's Options, printing from its
`human`, files from its `columns` / `write_output`. Adding a task adds its command.
"""
from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path
from typing import Any

from bertkit.cli.common import DEFAULT_MODEL, add_json_arg, add_model_args, emit, input_frame, load_model, text_column_help
from bertkit.data import SHARD_ROWS, formats_help
from bertkit.errors import BertkitError, OptionError
from bertkit.options import add_flags, from_args, specs
from bertkit.tasks.base import Task


def register(sub: argparse._SubParsersAction) -> None:
    from bertkit.tasks import tasks

    for task in tasks():
        add_task_command(sub, task)


def add_task_command(sub: argparse._SubParsersAction, task: Task) -> argparse.ArgumentParser:
    """The command of one task, its flags derived from the declaration."""
    doc = (type(task).__doc__ or task.summary).strip().split("\n\n")[0].replace("\n", " ")
    p = sub.add_parser(task.name, help=task.summary[0].lower() + task.summary[1:], description=doc)
    noun = {"texts": "TEXT", "sentences": "SENTENCE", "queries": "QUERY"}.get(task.input_name, task.input_name.upper())
    for spec in specs(task.Options):
        if spec.positional:
            p.add_argument(spec.name, metavar=spec.name.upper(), help=spec.help)
    p.add_argument("texts", nargs="*", metavar=noun)
    p.add_argument("--input", "-i", help=f"read the inputs from a file ({formats_help()}; a .txt holds one per line), "
                                         "or '-' for stdin lines")
    p.add_argument("--text-column", help=text_column_help())
    if task.pair_name:
        p.add_argument("--pair", help="a second text, paired with every input")
        p.add_argument("--pair-column", help="the column holding a second text per row of a table --input")
    add_flags(p, task.Options)
    if task.table:
        p.add_argument("--output", "-o", help=f"write every input row with its result to a FILE "
                                              f"({', '.join(task.output_formats)}; input columns kept), or to a FOLDER "
                                              "(corpus mode: sharded Parquet parts, streamed and restartable)")
        _add_corpus_args(p)
    if task.plots:
        p.add_argument("--plot", metavar="FILE.png", help="draw the answer as a picture"
                       + "".join(f" (implies --{k.replace('_', '-')})" for k in task.plot_needs))
    if task.uses_network:
        p.add_argument("--batch-tokens", type=int, default=None, help="token budget per batch (default: by device)")
    # A task with a head needs a model that has it; one whose options name its model (search: the index's) needs none.
    add_model_args(p, default=None if task.head or task.names_its_model else DEFAULT_MODEL,
                   runs_network=task.uses_network, required=not task.names_its_model)
    add_json_arg(p)
    p.set_defaults(func=partial(run_command, task))
    return p


def _add_corpus_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("corpus mode (an --input folder, or an --output folder; shards across torchrun processes)")
    g.add_argument("--shard-rows", type=int, default=SHARD_ROWS, help=f"rows per output part (default: {SHARD_ROWS})")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--ray", action="store_true", help="run on a Ray cluster with Ray Data (pip install 'ray[data]')")
    g.add_argument("--ray-address", default=None, help="the cluster to join (default: RAY_ADDRESS, else a local Ray)")
    g.add_argument("--concurrency", type=int, default=1, help="Ray: model replicas (default: 1)")
    g.add_argument("--num-gpus", type=float, default=0, help="Ray: GPUs per replica (default: 0)")


def command_options(task: Task, args: argparse.Namespace) -> Any:
    """The task's options from the parsed flags (with what --plot implies)."""
    return from_args(task.Options, args, **(task.plot_needs if getattr(args, "plot", None) else {}))


def choose_model(task: Task, args: argparse.Namespace, options: Any) -> None:
    """Without --model, the model the task's options name (search: the one its index was built with)."""
    if args.model is None and task.names_its_model:
        args.model = task.model_for(options)


def run_command(task: Task, args: argparse.Namespace) -> int:
    options = command_options(task, args)
    if task.table and _corpus_mode(args):
        return _run_corpus(task, args, options)
    choose_model(task, args, options)
    frame, column = input_frame(args)
    if task.table and args.output:
        return _run_table_file(task, args, frame, column, options)
    texts = frame[column].tolist()
    pairs = _pairs(task, args, frame, len(texts))
    from bertkit.tasks.base import execute, prepare

    model = load_model(args)
    prepared = prepare(task, model, texts, pairs, options)
    prepared.warn()
    answer = task.present(model, prepared, execute(task, model, prepared, options, getattr(args, "batch_tokens", None)),
                          options)
    payload = task.payload(answer, prepared, options)
    if getattr(args, "plot", None):
        task.plot(answer, args.plot, options)
        if isinstance(payload, dict):
            payload["plot"] = args.plot
        else:  # a list answer has no place to say it; stderr keeps --json's output pure JSON
            print(f"plot written to {args.plot}", file=sys.stderr)
    emit(args, payload, lambda p: task.human(p, prepared))
    return 0


def _pairs(task: Task, args: argparse.Namespace, frame, n: int) -> list | None:
    if not task.pair_name:
        return None
    if getattr(args, "pair", None) is not None and getattr(args, "pair_column", None):
        raise BertkitError("give --pair or --pair-column, not both")
    if getattr(args, "pair", None) is not None:
        return [args.pair] * n
    if getattr(args, "pair_column", None):
        from bertkit.tasks.tables import text_column

        return frame[text_column(frame, args.pair_column, "pair", "pair_column")].tolist()
    return None


def _run_table_file(task: Task, args: argparse.Namespace, frame, column: str, options) -> int:
    from bertkit.paths import output_file
    from bertkit.tasks.tables import run_table, summary

    output_file(args.output, task.output_formats, "results")  # a bad --output fails before any work
    model = load_model(args)
    table, _, _ = run_table(task, model, frame, column, getattr(args, "pair_column", None),
                            getattr(args, "batch_tokens", None), **vars(options))
    report = summary(task, table, str(task.write_output(args.output, table, column)))

    def human(d: dict) -> str:
        lines = [f"wrote {d['rows']} rows to {d['output']} ({d['errors']} flagged, {d['truncated']} truncated)",
                 task.human_summary(d)]
        return "\n".join(line for line in lines if line)

    emit(args, report, human)
    return 0


def _corpus_mode(args: argparse.Namespace) -> bool:
    """A folder on either side means a corpus: stream it in shards instead of loading it whole."""
    if args.ray:
        return True
    source, out = args.input, args.output
    if source and source != "-" and Path(source).is_dir():
        return True
    if source and out and (Path(out).is_dir() or out.endswith(("/", "\\")) or not Path(out).suffix):
        return True
    return False


def _run_corpus(task: Task, args: argparse.Namespace, options) -> int:
    if args.texts:
        raise BertkitError("corpus mode reads --input; give texts there, not as arguments")
    if not args.input or not args.output:
        raise BertkitError("corpus mode needs --input FILE|FOLDER and --output FOLDER")
    if getattr(args, "pair", None) is not None or getattr(args, "pair_column", None):
        raise BertkitError("pairs are not supported in corpus mode yet; use a file --output")
    if args.shard_rows < 1:
        raise OptionError("shard_rows", "must be at least 1")
    run_options = {**vars(options), "batch_tokens": args.batch_tokens}
    if args.ray:
        from bertkit.ray_inference import run_with_ray

        report = run_with_ray(args.input, args.output, task=task.name, model=args.model,
                              text_column=args.text_column, concurrency=args.concurrency,
                              num_gpus=args.num_gpus, address=args.ray_address, options=run_options,
                              device=args.device, compile=args.compile, precision=getattr(args, "precision", None))
        emit(args, report, lambda d: f"Ray wrote {d['rows']} rows to {d['output']}")
        return 0
    from bertkit.corpus import rank_device, run_corpus
    from bertkit.model import load

    model = load(args.model, device=rank_device(args.device), precision=getattr(args, "precision", None))
    args.ran_precision = model.precision
    if args.compile:
        model.compile()
    report = run_corpus(model, task.name, args.input, args.output, text_column=args.text_column,
                        shard_rows=args.shard_rows, progress=not args.no_progress, options=run_options)
    args.compact = report["world_size"] > 1  # one JSON line per rank, so the ranks' reports never interleave
    emit(args, report, lambda d: (f"rank {d['rank']}/{d['world_size']}: wrote {d['shards_written']} parts "
                                  f"({d['rows']} rows; {d['shards_redone']} of them again, as their input changed), "
                                  f"skipped {d['shards_skipped']} finished ones, removed {d['shards_removed']} of "
                                  f"input no longer there, in {d['output']}"))
    return 0
