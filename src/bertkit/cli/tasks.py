"""`bertkit fill-mask`, `embed`, `similarity` and `predict`: argument wiring and printing over bertkit.tasks."""
from __future__ import annotations

import argparse
from pathlib import Path

from bertkit.cli.common import add_json_arg, add_model_args, emit, load_model, read_texts
from bertkit.errors import BertkitError

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fill-mask", help="predict the word behind every [MASK]")
    _add_inputs(p, table=False)
    p.add_argument("--top-k", type=int, default=5, help="candidates per mask (default: 5)")
    p.add_argument("--targets", action="append", metavar="WORDS",
                   help="score only these candidates (comma-separated, repeatable); multi-piece words allowed")
    _add_common(p, model_default=None)
    p.set_defaults(func=fill_mask)

    p = sub.add_parser("embed", help="sentence embeddings (mean pooling by default)")
    _add_inputs(p, table=True)
    p.add_argument("--pooling", choices=("mean", "cls", "max", "mean_sqrt_len"), default=None,
                   help="default: the model's sentence-transformers setting, else mean")
    p.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                   help="L2-normalise the vectors (default: the model's sentence-transformers setting)")
    p.add_argument("--max-length", type=int, default=None, help="truncate to this many tokens (default: the model's)")
    p.add_argument("--output", "-o", help="write the vectors to FILE.npy, FILE.parquet or FILE.json, or a FOLDER "
                   "(corpus mode: sharded Parquet parts, streamed and restartable)")
    _add_corpus_args(p)
    _add_common(p)
    p.set_defaults(func=embed)

    p = sub.add_parser("similarity", help="cosine similarity of a word's contextual vectors across sentences")
    _add_inputs(p, table=False, name="SENTENCE")
    p.add_argument("--word", "-w", action="append", required=True,
                   help="the word (or phrase) to compare; give it once, or once per sentence")
    p.add_argument("--occurrence", type=int, action="append",
                   help="which occurrence when the word repeats (0 = first, -1 = last); once, or once per sentence")
    p.add_argument("--pooling", choices=("mean", "first", "last"), default="mean", help="how to pool a word's pieces")
    p.add_argument("--layer", default="-1", help="layer index (0 = embeddings, -1 = last), sum4 or concat4")
    p.add_argument("--matrix", action="store_true", help="compare every sentence with every other")
    p.add_argument("--plot", metavar="FILE.png", help="draw the similarity matrix as a heatmap (implies --matrix)")
    _add_common(p)
    p.set_defaults(func=similarity)

    p = sub.add_parser("predict", help="classify texts or a file with a fine-tuned classifier")
    _add_inputs(p, table=True)
    p.add_argument("--pair-column", help="a second text column, classified as a pair with the text")
    p.add_argument("--threshold", type=float, default=0.5, help="multi-label: scores >= this are predicted (default: 0.5)")
    p.add_argument("--output", "-o", help="write predictions to FILE.csv, .jsonl, .json or .parquet (input columns kept), "
                   "or a FOLDER (corpus mode: sharded Parquet parts, streamed and restartable)")
    _add_corpus_args(p)
    _add_common(p, model_default=None)
    p.set_defaults(func=predict)


def _add_inputs(p: argparse.ArgumentParser, table: bool, name: str = "TEXT") -> None:
    p.add_argument("texts", nargs="*", metavar=name)
    if table:
        p.add_argument("--input", "-i",
                       help="a file: .txt (one text per line), .csv, .tsv, .jsonl, .json or .parquet; '-' for stdin")
        p.add_argument("--text-column", help="the column holding the texts (default: text, sentence, ... or the only column)")
    else:
        p.add_argument("--input", "-i", help="a text file, one text per line ('-' for stdin)")


def _add_corpus_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("corpus mode (an --input folder, or an --output folder; shards across torchrun processes)")
    g.add_argument("--shard-rows", type=int, default=10_000, help="rows per output part (default: 10000)")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    g.add_argument("--ray", action="store_true", help="run on a Ray cluster with Ray Data (pip install 'ray[data]')")
    g.add_argument("--ray-address", default=None, help="the cluster to join (default: RAY_ADDRESS, else a local Ray)")
    g.add_argument("--concurrency", type=int, default=1, help="Ray: model replicas (default: 1)")
    g.add_argument("--num-gpus", type=float, default=0, help="Ray: GPUs per replica (default: 0)")


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


def _run_corpus(args: argparse.Namespace, task: str, options: dict) -> int:
    if args.texts:
        raise BertkitError("corpus mode reads --input; give texts there, not as arguments")
    if not args.input or not args.output:
        raise BertkitError("corpus mode needs --input FILE|FOLDER and --output FOLDER")
    if args.ray:
        from bertkit.ray_inference import run_with_ray

        report = run_with_ray(args.input, args.output, task=task, model=args.model, text_column=args.text_column or "text",
                              concurrency=args.concurrency, num_gpus=args.num_gpus, address=args.ray_address,
                              options=options, device=args.device, compile=args.compile)
        emit(args, report, lambda d: f"Ray wrote {d['rows']} rows to {d['output']}")
        return 0
    from bertkit.corpus import rank_device, run_corpus
    from bertkit.model import load

    if args.shard_rows < 1:
        raise BertkitError("--shard-rows must be at least 1")
    model = load(args.model, device=rank_device(args.device))
    if args.compile:
        model.compile()
    report = run_corpus(model, task, args.input, args.output, text_column=args.text_column, shard_rows=args.shard_rows,
                        progress=not args.no_progress, options=options)
    args.compact = report["world_size"] > 1  # one JSON line per rank, so the ranks' reports never interleave
    emit(args, report, lambda d: (f"rank {d['rank']}/{d['world_size']}: wrote {d['shards_written']} parts "
                                  f"({d['rows']} rows), skipped {d['shards_skipped']} finished ones, in {d['output']}"))
    return 0


def _add_common(p: argparse.ArgumentParser, model_default: str | None = "minilm") -> None:
    p.add_argument("--batch-tokens", type=int, default=None, help="token budget per batch (default: by device)")
    add_model_args(p, default=model_default)
    add_json_arg(p)


def _table(args: argparse.Namespace):
    """The input as a DataFrame: TEXT arguments become a `text` column; a table file is read as is."""
    import pandas as pd

    source = args.input
    if source and source != "-" and any(s.lower() in TABLE_SUFFIXES for s in Path(source).suffixes):
        from bertkit.data import read_table

        frame = read_table(source)
        if args.texts:
            raise BertkitError("give texts as arguments or with --input FILE, not both")
        return frame
    return pd.DataFrame({"text": read_texts(args)})


# -- fill-mask ---------------------------------------------------------------------------------
def fill_mask(args: argparse.Namespace) -> int:
    texts = read_texts(args)
    targets = [w.strip() for group in args.targets for w in group.split(",") if w.strip()] if args.targets else None
    results = load_model(args).fill_mask(texts, top_k=args.top_k, targets=targets, batch_tokens=args.batch_tokens)
    payload = [{"text": t, "masks": r} for t, r in zip(texts, results)]

    def human(rows):
        lines = []
        for row in rows:
            lines.append(row["text"])
            for j, cands in enumerate(row["masks"]):
                shown = "  ".join(f"{c['token']} {c['score']:.4g}" for c in cands)
                lines.append(f"  mask {j + 1}: {shown}")
        return "\n".join(lines)

    emit(args, payload, human)
    return 0


# -- embed ------------------------------------------------------------------------------------
def embed(args: argparse.Namespace) -> int:
    from bertkit.tasks.classify import text_column
    from bertkit.tasks.embeddings import embeddings_payload, write_embeddings

    if _corpus_mode(args):
        options = {"pooling": args.pooling, "normalize": args.normalize, "max_length": args.max_length,
                   "batch_tokens": args.batch_tokens}
        return _run_corpus(args, "embed", options)
    frame = _table(args)
    texts = frame[text_column(frame, args.text_column)].tolist()
    vectors = load_model(args).embed(texts, pooling=args.pooling, normalize=args.normalize,
                                     batch_tokens=args.batch_tokens, max_length=args.max_length)
    if args.output:
        path = write_embeddings(args.output, vectors, texts)
        emit(args, {"output": str(path), "rows": len(texts), "dim": int(vectors.shape[1])},
             lambda d: f"wrote {d['rows']} embeddings of dimension {d['dim']} to {d['output']}")
        return 0

    def human(_):
        lines = [f"{len(texts)} embeddings of dimension {vectors.shape[1]} (use --json or --output FILE for all values)"]
        for text, v in zip(texts, vectors):
            preview = ", ".join(f"{x:+.4f}" for x in v[:4])
            lines.append(f"[{preview}, …]  norm {float((v ** 2).sum()) ** 0.5:.3f}  {text[:60]}")
        return "\n".join(lines)

    emit(args, embeddings_payload(vectors), human)
    return 0


# -- similarity ------------------------------------------------------------------------------
def similarity(args: argparse.Namespace) -> int:
    from bertkit.tasks.word_similarity import parse_layer

    sentences = read_texts(args)
    layer = parse_layer(args.layer)
    model = load_model(args)
    words = args.word[0] if len(args.word) == 1 else args.word
    occurrence = (args.occurrence[0] if len(args.occurrence) == 1 else args.occurrence) if args.occurrence else 0
    if args.matrix or args.plot:
        if len(sentences) < 2:
            raise BertkitError("a similarity matrix needs at least two sentences")
        result = model.similarity_matrix(sentences, words, occurrence, args.pooling, layer)
        if args.plot:
            from bertkit.train.plots import plot_similarity_matrix

            word = words if isinstance(words, str) else "/".join(dict.fromkeys(words))
            plot_similarity_matrix(result.matrix, result.labels, args.plot,
                                   title=f"'{word}' in context: cosine similarity (layer {layer}, {args.pooling} of pieces)")
        emit(args, result.to_dict() | {"plot": args.plot}, _human_matrix)
        return 0
    if len(sentences) != 2:
        raise BertkitError(f"got {len(sentences)} sentences; give exactly two, or pass --matrix to compare them all")
    if not isinstance(words, str) and len(words) != 2 or isinstance(occurrence, list) and len(occurrence) != 2:
        raise BertkitError("give --word (and --occurrence) once, or once per sentence")
    word_a, word_b = (words, None) if isinstance(words, str) else words
    occ_a, occ_b = (occurrence, None) if isinstance(occurrence, int) else occurrence
    result = model.word_similarity(sentences[0], sentences[1], word_a, word_b, occ_a, occ_b, args.pooling, layer)
    emit(args, result.to_dict(), _human_pair)
    return 0


def _marked(w: dict) -> str:
    start, end = w["span"]
    return f"{w['sentence'][:start]}[{w['sentence'][start:end]}]{w['sentence'][end:]}"


def _human_pair(d: dict) -> str:
    a, b = d["a"], d["b"]
    words = f"'{a['word']}'" + (f" and '{b['word']}'" if b["word"] != a["word"] else "")
    head = f"{d['similarity']:.4f}  cosine similarity of {words}"
    lines = [head + f" (layer {a['layer']}, {a['pooling']} of word pieces)"]
    for tag, w in (("a", a), ("b", b)):
        lines.append(f"  {tag}: {_marked(w)}")
        start, end = w["span"]
        lines.append(f"     pieces {' '.join(w['tokens'])}  chars {start}-{end}  "
                     f"occurrence {w['occurrence']} (0-based) of {len(w['occurrences'])}")
    return "\n".join(lines)


def _human_matrix(d: dict) -> str:
    n = len(d["labels"])
    lines = ["      " + " ".join(f"{j:>6}" for j in range(n))]
    for i, row in enumerate(d["matrix"]):
        lines.append(f"{i:>5} " + " ".join(f"{x:6.3f}" for x in row) + f"   {d['labels'][i]}")
    if d.get("plot"):
        lines.append(f"heatmap written to {d['plot']}")
    return "\n".join(lines)


# -- predict ---------------------------------------------------------------------------------
def predict(args: argparse.Namespace) -> int:
    from bertkit.tasks.classify import predict_table, summary, text_column, write_predictions

    if _corpus_mode(args):
        if args.pair_column:
            raise BertkitError("--pair-column is not supported in corpus mode yet; use a file --output")
        return _run_corpus(args, "predict", {"threshold": args.threshold, "batch_tokens": args.batch_tokens})
    frame = _table(args)
    model = load_model(args)
    table, rows = predict_table(model, frame, args.text_column, args.pair_column, args.threshold, args.batch_tokens)
    if args.output:
        path = write_predictions(table, args.output)
        emit(args, summary(rows, str(path)), _human_summary)
        return 0
    texts = frame[text_column(frame, args.text_column)].tolist()
    payload = [{"text": t if isinstance(t, str) else None, **r} for t, r in zip(texts, rows)]

    def human(rows):
        lines = []
        for r in rows:
            if r["error"]:
                lines.append(f"{'-':<14} {'':>6}  {r['text']!r}  ({r['error']})")
                continue
            score = r["scores"][r["label"]] if r["label"] is not None else max(r["scores"].values())
            label = ",".join(r["labels"]) if "labels" in r else str(r["label"])
            note = f"  ({r['truncated']} tokens cut)" if r["truncated"] else ""
            lines.append(f"{label:<14} {score:6.3f}  {r['text']}{note}")
        return "\n".join(lines)

    emit(args, payload, human)
    return 0


def _human_summary(d: dict) -> str:
    counts = ", ".join(f"{k}: {v}" for k, v in d["label_counts"].items()) or "none"
    return (f"wrote {d['rows']} predictions to {d['output']} ({d['errors']} flagged, {d['truncated']} truncated)\n"
            f"predicted labels: {counts}")
