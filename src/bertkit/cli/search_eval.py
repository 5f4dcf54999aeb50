"""`bertkit search INDEX --eval QRELS`: the search command's evaluation mode (recall, MRR and nDCG over known answers).

The search task answers queries; scoring an index against a file of queries and their relevant ids
is something only the command line offers, so it lives here and extends the command that
bertkit.cli.tasks derived from the task.
"""
from __future__ import annotations

import argparse
from functools import partial
from typing import Callable

from bertkit.cli.common import emit, load_model
from bertkit.cli.tasks import choose_model, command_options
from bertkit.errors import BertkitError

COMMAND = "search"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.choices[COMMAND]  # made by bertkit.cli.tasks, which runs first
    parser.add_argument("--eval", metavar="QRELS", help="score the index on a file of queries and their relevant ids "
                        "(columns query, relevant: ids joined by commas) instead of answering queries: recall@top-k, "
                        "MRR@10, nDCG@10, and the graph's recall against exact search")
    parser.set_defaults(func=partial(evaluate_or, parser.get_default("func")))


def evaluate_or(search: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """With --eval, score the index on the QRELS file; otherwise the search command as declared."""
    if args.eval is None:
        return search(args)
    from bertkit.index.evaluate import evaluate, format_report, read_qrels
    from bertkit.tasks import get

    if args.texts or args.input:
        raise BertkitError("--eval reads its queries from QRELS; give no QUERY arguments or --input with it")
    task = get(COMMAND)
    options = command_options(task, args)
    choose_model(task, args, options)
    queries, relevant = read_qrels(args.eval)
    report = evaluate(load_model(args), options, queries, relevant, batch_tokens=args.batch_tokens)
    emit(args, report, format_report)
    return 0
