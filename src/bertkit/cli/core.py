"""`bertkit tokenize`, `bertkit models` and `bertkit info`."""
from __future__ import annotations

import argparse

from bertkit.cli.common import add_json_arg, add_model_args, emit, load_model, read_texts


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tokenize", help="show word pieces, ids and character offsets")
    p.add_argument("texts", nargs="*", metavar="TEXT")
    p.add_argument("--input", help="a text file, one text per line ('-' for stdin)")
    p.add_argument("--pair", help="a second text, tokenized as a pair with every TEXT")
    p.add_argument("--max-length", type=int, default=None, help="truncate to this many tokens (reported)")
    add_model_args(p, runs_network=False)
    add_json_arg(p)
    p.set_defaults(func=tokenize)

    p = sub.add_parser("models", help="list the bundled model aliases and where they live")
    add_json_arg(p)
    p.set_defaults(func=models)

    p = sub.add_parser("info", help="a model's config, parameter count and heads")
    p.add_argument("model", metavar="MODEL", help="bundled alias, local folder or hub id")
    p.add_argument("--device", default="cpu")
    add_json_arg(p)
    p.set_defaults(func=info)


def tokenize(args: argparse.Namespace) -> int:
    from bertkit.checkpoint import resolve
    from bertkit.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_dir(resolve(args.model))  # no weights needed to tokenize
    texts = read_texts(args)
    pairs = [args.pair] * len(texts) if args.pair is not None else None
    encodings = tokenizer.encode_batch(texts, pairs, max_length=args.max_length)
    rows = [{"text": t, **e.to_dict()} for t, e in zip(texts, encodings)]

    def human(rows):
        lines = []
        for r in rows:
            lines.append(" ".join(r["tokens"]))
            lines.append(" ".join(str(i) for i in r["ids"]))
            if r["n_truncated"]:
                lines.append(f"(truncated: {r['n_truncated']} tokens cut)")
        return "\n".join(lines)

    emit(args, rows, human)
    return 0


def models(args: argparse.Namespace) -> int:
    from bertkit.checkpoint import bundled_models

    rows = bundled_models()
    emit(args, rows, lambda rows: "\n".join(
        f"{r['alias']:<10} {r['origin']:<42} {r['path'] if r['installed'] else 'not installed: ' + r['install']}" for r in rows))
    return 0


def info(args: argparse.Namespace) -> int:
    model = load_model(args)
    data = model.info()

    def human(d):
        c = d["config"]
        return "\n".join([
            f"model       {d['source']}  ({d['folder']})",
            f"shape       {c['num_hidden_layers']} layers, hidden {c['hidden_size']}, {c['num_attention_heads']} heads, "
            f"FFN {c['intermediate_size']}, vocab {c['vocab_size']}, max length {d['max_length']}",
            f"parameters  {d['parameters']:,}",
            f"heads       {', '.join(d['heads']) or 'none (encoder only)'}",
            f"labels      {', '.join(d['labels']) or '-'}",
        ] + ([f"sentence    {d['sentence_transformers']}"] if d["sentence_transformers"] else []))

    emit(args, data, human)
    return 0
