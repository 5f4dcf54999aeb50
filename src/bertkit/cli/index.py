"""`bertkit index build|add|info`: a thin layer over bertkit.index_build and VectorIndex."""
from __future__ import annotations

import argparse

from bertkit.cli.common import add_json_arg, add_model_args, emit, load_model, text_column_help
from bertkit.data import SHARD_ROWS, formats_help


def register(sub: argparse._SubParsersAction) -> None:
    from bertkit.index import STORAGE_DEFAULT, STORAGES

    p = sub.add_parser("index", help="build, grow and describe a search index of embedded texts")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb, help in (("build", "embed a corpus into a new index (or carry on a killed build)"),
                       ("add", "embed new or changed rows of a corpus into an existing index")):
        q = verbs.add_parser(verb, help=help, description=help + "; unchanged rows are skipped, so a re-run only "
                             "embeds what is new")
        q.add_argument("--input", "-i", required=True, help=f"a file or a folder of files ({formats_help()})")
        q.add_argument("--output", "-o", required=True, metavar="INDEX", help="the index folder")
        q.add_argument("--text-column", help=text_column_help())
        q.add_argument("--id-column", help="a column of unique ids (default: a column named id, else FILE:ROW)")
        q.add_argument("--drop-invalid", action="store_true", help="leave out rows without an id (counted) instead of "
                                                                   "stopping")
        q.add_argument("--metadata-columns", default="", help="comma-separated columns stored with each row and "
                                                              "returned with its hits")
        q.add_argument("--storage", choices=STORAGES, default=STORAGE_DEFAULT,
                       help=f"how the search graph stores vectors; hits are always rescored in float32 "
                            f"(default: {STORAGE_DEFAULT})")
        q.add_argument("--shard-rows", type=int, default=SHARD_ROWS, help=f"rows embedded and written at a time "
                                                                         f"(default: {SHARD_ROWS})")
        q.add_argument("--batch-tokens", type=int, default=None, help="token budget per batch (default: by device)")
        q.add_argument("--no-progress", action="store_true", help="no progress bar")
        add_model_args(q)
        add_json_arg(q)
        q.set_defaults(func=build, must_exist=verb == "add")
    q = verbs.add_parser("info", help="what an index holds: rows, model, pooling, storage, size")
    q.add_argument("index", metavar="INDEX")
    add_json_arg(q)
    q.set_defaults(func=info)


def build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bertkit.errors import OptionError
    from bertkit.index.store import MANIFEST
    from bertkit.index_build import build_index

    if args.must_exist and not (Path(args.output) / MANIFEST).exists():
        raise OptionError("output", f"{args.output!r} holds no index to add to; use `bertkit index build`")
    report = build_index(load_model(args), args.input, args.output, text_column=args.text_column,
                         id_column=args.id_column, metadata_columns=[c for c in args.metadata_columns.split(",") if c],
                         shard_rows=args.shard_rows, storage=args.storage, batch_tokens=args.batch_tokens,
                         drop_invalid=args.drop_invalid, progress=not args.no_progress)
    emit(args, report, summary)
    return 0


def summary(r: dict) -> str:
    ids = f"ids from column {r['id_column']!r}" if r["id_column"] else "ids FILE:ROW"
    dropped = f", {r['dropped']} without an id left out" if r["dropped"] else ""
    return (f"{r['rows']} rows read ({ids}{dropped}): {r['embedded']} embedded ({r['added']} new, {r['replaced']} "
            f"changed), {r['unchanged']} unchanged, {r['errors']} without text; the index holds "
            f"{r['index']['rows']} rows ({r['index']['search']} search) in {r['index']['folder']}")


def info(args: argparse.Namespace) -> int:
    from bertkit.index import open_index

    data = open_index(args.index).info()
    emit(args, data, lambda d: "\n".join(f"{k:<14} {v}" for k, v in d.items()))
    return 0
