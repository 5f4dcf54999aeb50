"""`bertkit models` and `bertkit info` (the task commands, tokenize included, come from bertkit.cli.tasks)."""
from __future__ import annotations

import argparse

from bertkit.cli.common import add_json_arg, emit, load_model


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the bundled model aliases and where they live")
    add_json_arg(p)
    p.set_defaults(func=models)

    p = sub.add_parser("info", help="a model's config, parameter count and heads")
    p.add_argument("model", metavar="MODEL", help="bundled alias, local folder or hub id")
    p.add_argument("--device", default="cpu")
    p.add_argument("--layers", action="store_true", help="also every part's parameter count: embeddings, each "
                                                         "layer's attention and feed-forward, one head, the heads")
    add_json_arg(p)
    p.set_defaults(func=info)


def models(args: argparse.Namespace) -> int:
    from bertkit.checkpoint import bundled_models

    rows = bundled_models()
    emit(args, rows, lambda rows: "\n".join(
        f"{r['alias']:<10} {r['origin']:<42} {r['path'] if r['installed'] else 'not installed: ' + r['install']}" for r in rows))
    return 0


def info(args: argparse.Namespace) -> int:
    model = load_model(args)
    data = model.info()
    summary = model.summary() if args.layers else None
    if summary is not None:
        data["summary"] = summary.to_dict()

    def human(d):
        c = d["config"]
        return "\n".join([
            f"model       {d['source']}  ({d['folder']})",
            f"shape       {c['num_hidden_layers']} layers, hidden {c['hidden_size']}, {c['num_attention_heads']} heads, "
            f"FFN {c['intermediate_size']}, vocab {c['vocab_size']}, max length {d['max_length']}",
            f"parameters  {d['parameters']:,}",
            f"heads       {', '.join(d['heads']) or 'none (encoder only)'}",
            f"labels      {', '.join(d['labels']) or '-'}",
        ] + ([f"sentence    {d['sentence_transformers']}"] if d["sentence_transformers"] else [])
            + (["", str(summary)] if summary is not None else []))

    emit(args, data, human)
    return 0
