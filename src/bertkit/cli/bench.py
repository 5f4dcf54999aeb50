"""`bertkit bench`: the side-by-side speed benchmarks that fit this machine, as one table."""
from __future__ import annotations

import argparse

from bertkit.cli.common import add_json_arg, emit


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run the speed benchmarks against transformers / sentence-transformers (repo checkout)")
    p.add_argument("--quick", action="store_true", help="small inputs, fewer repeats: a smoke run, not a measurement")
    p.add_argument("--only", default=None, help="comma-separated subset of: infer, embed, train, gpu")
    add_json_arg(p)
    p.set_defaults(func=bench)


def bench(args: argparse.Namespace) -> int:
    from bertkit.bench import format_table, run_benchmarks

    report = run_benchmarks(quick=args.quick, only=args.only.split(",") if args.only else None)
    if args.json:
        for row in report["rows"]:
            row.pop("raw", None)  # the scripts' full dicts are for their own --json; the table's numbers suffice
    emit(args, report, format_table)
    return 1 if any(r["note"].startswith("error") for r in report["rows"]) else 0
