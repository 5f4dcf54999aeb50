"""Sentence-embedding throughput: bertkit `Model.embed` against sentence-transformers `encode`, same texts, one process.

    python benchmarks/bench_embed.py                 # 3,000 Rotten Tomatoes texts, 2 threads
    python benchmarks/bench_embed.py --json --threads 4
    python benchmarks/bench_embed.py --quick --json   # a smoke run in seconds: 32 texts, one round (not a measurement)

Both sides get identical inputs (the first 3,000 review snippets, every 10th replaced by eight
snippets joined, so lengths run from a few tokens to past MiniLM's 256-token limit). After a
warm-up, both run in `--repeats` rounds with a rotating order. The speed-up is best time against
best time; the median of the rounds' ratios is printed too, and the two disagree when other work
on the machine came and went during the run.

sentence-transformers runs with batch_size=32: its batches hold 32 texts padded to the longest,
so it computes about 32 x (mean length) token slots per batch. bertkit's equivalent token budget
is that number (`--batch-tokens`, default 32 x mean tokens per text); bertkit's device default
budget is timed as well.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np
import torch


def build_texts(n: int, long_every: int) -> list[str]:
    from bertkit.data import load_dataset

    base = load_dataset("rotten_tomatoes").texts
    texts = list(base[:n])
    if long_every:
        for i in range(0, n, long_every):  # a realistic tail of paragraph-length inputs
            texts[i] = " ".join(base[i: i + 8])
    return texts


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def st_slots(texts: list[str], lengths: list[int], batch_size: int) -> int:
    """Token slots sentence-transformers computes: it sorts by character length, pads each batch to its longest."""
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    return sum(max(lengths[i] for i in chunk) * len(chunk)
               for chunk in (order[s: s + batch_size] for s in range(0, len(order), batch_size)))


QUICK = {"n": 32, "repeats": 1}  # --quick: enough to run every path and print every key, not to time anything


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("-n", type=int, default=3000, help="number of texts (default: 3000)")
    parser.add_argument("--long-every", type=int, default=10, help="every Nth text is 8 snippets joined (0: none)")
    parser.add_argument("--batch-size", type=int, default=32, help="sentence-transformers batch size")
    parser.add_argument("--batch-tokens", type=int, default=None, help="bertkit token budget (default: batch size x mean length)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads for both (default: 2)")
    parser.add_argument("--repeats", type=int, default=5, help="paired rounds (default: 5)")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run: {QUICK['n']} texts, {QUICK['repeats']} round (overrides -n and --repeats)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.repeats = QUICK["n"], QUICK["repeats"]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # both tokenizers run in this one process
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")  # the long texts are cut at 256 tokens on both sides, by design
    import bertkit
    from bertkit.batching import group_by_budget
    from sentence_transformers import SentenceTransformer

    ours = bertkit.load(args.model, device="cpu")
    theirs = SentenceTransformer(str(ours.folder), device="cpu")
    texts = build_texts(args.n, args.long_every)
    lengths = [len(e) for e in ours.tokenize(texts, max_length=ours.sentence_config.get("max_seq_length"))]
    budget = args.batch_tokens or int(args.batch_size * np.mean(lengths))

    runs = {
        "sentence_transformers": lambda: theirs.encode(texts, batch_size=args.batch_size, show_progress_bar=False,
                                                       convert_to_numpy=True),
        "bertkit": lambda: ours.embed(texts, batch_tokens=budget),
        "bertkit_default_budget": lambda: ours.embed(texts),
    }
    # Warm-up: allocator, thread pools, lazy imports.
    theirs.encode(texts[:256], batch_size=args.batch_size, show_progress_bar=False)
    ours.embed(texts[:256], batch_tokens=budget)
    ours.embed(texts[:256])
    names = list(runs)
    walls: dict[str, list[float]] = {n: [] for n in names}
    outputs = {}
    for r in range(args.repeats):
        # Rotating the order spreads any background load over both sides.
        for name in names[r % len(names):] + names[: r % len(names)]:
            wall, outputs[name] = timed(runs[name])
            walls[name].append(wall)
    ratios = {n: float(np.median([s / o for s, o in zip(walls["sentence_transformers"], walls[n])])) for n in names[1:]}
    best = {n: min(w) for n, w in walls.items()}
    ref = outputs["sentence_transformers"]
    cos = float((outputs["bertkit"] * ref).sum(1).min())
    groups = group_by_budget(lengths, budget)
    result = {
        "texts": len(texts), "tokens_mean": round(float(np.mean(lengths)), 1), "tokens_max": int(max(lengths)),
        "threads": args.threads, "repeats": args.repeats, "st_batch_size": args.batch_size,
        "bertkit_batch_tokens": budget, "bertkit_default_batch_tokens": ours.default_batch_tokens,
        "token_slots": {"real": int(sum(lengths)), "sentence_transformers": st_slots(texts, lengths, args.batch_size),
                        "bertkit": int(sum(max(lengths[i] for i in b) * len(b) for b in groups))},
        "texts_per_s_best": {k: round(len(texts) / v, 1) for k, v in best.items()},
        "seconds_all": {k: [round(x, 2) for x in v] for k, v in walls.items()},
        # Best time against best time: the least disturbed run of each side is the closest to its real cost.
        "speedup": round(best["sentence_transformers"] / best["bertkit"], 3),
        "speedup_default_budget": round(best["sentence_transformers"] / best["bertkit_default_budget"], 3),
        "speedup_median_of_rounds": {k: round(v, 3) for k, v in ratios.items()},
        "min_cosine_vs_st": round(cos, 7), "torch": torch.__version__,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        tps, slots = result["texts_per_s_best"], result["token_slots"]
        print(f"{len(texts)} texts, {result['tokens_mean']} tokens on average (max {result['tokens_max']}), "
              f"{args.threads} threads, torch {torch.__version__}, median of {args.repeats} paired rounds")
        print(f"sentence-transformers  batch_size={args.batch_size:<6}     {tps['sentence_transformers']:8.1f} texts/s")
        print(f"bertkit                batch_tokens={budget:<6}   {tps['bertkit']:8.1f} texts/s   {result['speedup']:.2f}x")
        print(f"bertkit                batch_tokens={ours.default_batch_tokens:<6}   "
              f"{tps['bertkit_default_budget']:8.1f} texts/s   {result['speedup_default_budget']:.2f}x")
        med = result["speedup_median_of_rounds"]
        print(f"median of the rounds' ratios: {med['bertkit']:.2f}x and {med['bertkit_default_budget']:.2f}x "
              f"(far from the best-time ratios means the machine was busy: rerun)")
        print(f"token slots computed: sentence-transformers {slots['sentence_transformers']:,}, bertkit "
              f"{slots['bertkit']:,}, real tokens {slots['real']:,}")
        print(f"lowest cosine between the two sides' vectors: {cos:.7f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
