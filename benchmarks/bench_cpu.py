"""CPU deployment paths side by side, one process, same texts, same threads: speed and agreement with bertkit fp32.

    python benchmarks/bench_cpu.py                      # 2,000 Rotten Tomatoes snippets, 2 threads, 3 rounds
    python benchmarks/bench_cpu.py --quick              # a smoke run in about a minute: 64 texts, 1 round
    python benchmarks/bench_cpu.py --json out.json --classifier DIR   # also label agreement of a fine-tuned classifier

Paths: bertkit `embed` at fp32, bf16 and int8 (a precision this CPU cannot run is listed with the reason); ONNX
Runtime (ORT_ENABLE_ALL) on bertkit's own export, fp32 and its dynamic int8 graph, fed length-sorted padded batches
of 32; sentence-transformers' PyTorch backend (`encode`, batch 32) and its ONNX backend on the export, where it
loads; transformers `AutoModel` with mean pooling, length-sorted batches of 32. Every path starts from the texts
(tokenization included) and ends in normalised sentence vectors.

Quality, each against bertkit fp32: the lowest and mean cosine of the sentence vectors, the mean top-10 overlap of
`--queries` other snippets searched among the texts, and with `--classifier` the share of equal labels. A path
passes the quality gate (bertkit.precision.QUALITY_GATE) when every figure it has meets it.

Speed: after a warm-up, `--repeats` rounds in rotating order; texts/s is from each path's best round, and the
CPU seconds of that round are printed too (on a shared machine they move less than the wall clock).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

QUICK = {"n": 64, "queries": 16, "repeats": 1}
ORT_BATCH = 32


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="minilm")
    p.add_argument("-n", type=int, default=2000, help="texts embedded by every path (default: 2000)")
    p.add_argument("--queries", type=int, default=100, help="other texts searched among them (default: 100)")
    p.add_argument("--threads", type=int, default=2, help="torch and ONNX Runtime threads (default: 2)")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds per path (default: 3)")
    p.add_argument("--classifier", default=None, help="a fine-tuned classifier folder: adds label agreement")
    p.add_argument("--quick", action="store_true", help=f"a smoke run: {QUICK['n']} texts, {QUICK['repeats']} round")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the results as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.queries, args.repeats = QUICK["n"], QUICK["queries"], QUICK["repeats"]
    return args


def texts_and_queries(n: int, queries: int) -> tuple[list[str], list[str]]:
    from bertkit.data import load_dataset

    rows = list(load_dataset("rotten_tomatoes").texts)
    return rows[:n], rows[-queries:]


# -- the paths: each is texts -> normalised sentence vectors ---------------------------------------------------------
def bertkit_path(model) -> Callable[[list[str]], np.ndarray]:
    return lambda texts: model.embed(texts)


def ort_path(model, onnx_file: Path, threads: int) -> Callable[[list[str]], np.ndarray]:
    from bertkit.export.onnx import padded_inputs, session
    from bertkit.tasks.embed import embed_max_length

    sess = session(onnx_file, threads)

    def run(texts: list[str]) -> np.ndarray:
        encodings = model.tokenize(texts, max_length=embed_max_length(model))
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
        for start in range(0, len(order), ORT_BATCH):
            chunk = order[start:start + ORT_BATCH]
            out[chunk] = sess.run(["sentence_embedding"], padded_inputs([encodings[i] for i in chunk]))[0]
        return out

    return run


def st_path(folder: Path, backend: str = "torch") -> Callable[[list[str]], np.ndarray]:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(folder), device="cpu", backend=backend)
    return lambda texts: st.encode(texts, batch_size=ORT_BATCH, normalize_embeddings=True)


def transformers_path(folder: Path, max_length: int) -> Callable[[list[str]], np.ndarray]:
    from transformers import AutoModel, AutoTokenizer

    tok, net = AutoTokenizer.from_pretrained(str(folder)), AutoModel.from_pretrained(str(folder)).eval()

    def run(texts: list[str]) -> np.ndarray:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), net.config.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), ORT_BATCH):
                chunk = order[start:start + ORT_BATCH]
                b = tok([texts[i] for i in chunk], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt")
                states = net(**b).last_hidden_state
                mask = b["attention_mask"].unsqueeze(-1).float()
                pooled = (states * mask).sum(1) / mask.sum(1)
                out[chunk] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return out

    return run


# -- measuring ------------------------------------------------------------------------------------------------------
def timed(fn: Callable, texts: list[str]) -> tuple[float, float, np.ndarray]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(texts)
    return time.perf_counter() - wall, time.process_time() - cpu, np.asarray(out)


def label_agreements(args, paths_made: dict, texts: list[str], onnx_dir: Path | None) -> dict[str, float]:
    """With --classifier: each precision's (and the ONNX graphs') labels against bertkit fp32's."""
    import bertkit
    from bertkit.export.onnx import INT8_FILE, ONNX_FILE, padded_inputs, session
    from bertkit.precision import why_not

    fp32 = bertkit.load(args.classifier, device="cpu")
    want = np.array([p["label"] for p in fp32.predict(texts)])
    out = {"bertkit fp32": 1.0}
    for precision in ("bf16", "int8"):
        if why_not(precision, torch.device("cpu")) is None:
            got = np.array([p["label"] for p in bertkit.load(args.classifier, device="cpu", precision=precision).predict(texts)])
            out[f"bertkit {precision}"] = float((got == want).mean())
    export_dir = Path(tempfile.mkdtemp(prefix="bench_cpu_cls_"))
    fp32.export_onnx(export_dir, int8=True)
    encodings = fp32.tokenize(texts, max_length=fp32.max_length)
    for name, file in (("ONNX Runtime fp32", ONNX_FILE), ("ONNX Runtime int8", INT8_FILE)):
        sess = session(export_dir / file, args.threads)
        logits = np.concatenate([sess.run(["logits"], padded_inputs(encodings[s:s + ORT_BATCH]))[0]
                                 for s in range(0, len(encodings), ORT_BATCH)])
        out[name] = float((np.array(fp32.labels)[logits.argmax(1)] == want).mean())
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    import bertkit
    from bertkit.export.onnx import INT8_FILE, ONNX_FILE
    from bertkit.precision import PRECISIONS, cosines, cpu_capability, cpu_flags, gate_failures, top_k_overlap, why_not
    from bertkit.tasks.embed import embed_max_length

    texts, queries = texts_and_queries(args.n, args.queries)
    reference = bertkit.load(args.model, device="cpu")
    folder = reference.folder
    onnx_dir = Path(tempfile.mkdtemp(prefix="bench_cpu_onnx_"))
    print(f"exporting {args.model} to {onnx_dir} ...", file=sys.stderr, flush=True)
    export = reference.export_onnx(onnx_dir, int8=True)

    paths: dict[str, Callable | str] = {}
    for precision in PRECISIONS:
        reason = why_not(precision, torch.device("cpu"))
        paths[f"bertkit {precision}"] = (reason if reason else
                                         bertkit_path(bertkit.load(args.model, device="cpu", precision=precision)))
    paths["ONNX Runtime fp32"] = ort_path(reference, onnx_dir / ONNX_FILE, args.threads)
    paths["ONNX Runtime int8"] = ort_path(reference, onnx_dir / INT8_FILE, args.threads)
    paths["sentence-transformers (torch)"] = st_path(folder)
    try:
        paths["sentence-transformers (onnx, our export)"] = st_path(onnx_dir, "onnx")
    except Exception as e:  # its ONNX backend needs optimum, which may be missing or not match transformers
        paths["sentence-transformers (onnx, our export)"] = f"does not load: {str(e).splitlines()[0][:160]}"
    paths["transformers"] = transformers_path(folder, embed_max_length(reference))

    runnable = {name: fn for name, fn in paths.items() if callable(fn)}
    for fn in runnable.values():  # warm-up: first-call allocations, ORT's graph preparation
        fn(texts[:32])
    best: dict[str, tuple[float, float]] = {}
    vectors: dict[str, np.ndarray] = {}
    names = list(runnable)
    for round_ in range(args.repeats):
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            wall, cpu, out = timed(runnable[name], texts)
            vectors[name] = out
            if name not in best or wall < best[name][0]:
                best[name] = (wall, cpu)
            print(f"round {round_ + 1}: {name:<42} {len(texts) / wall:8.1f} texts/s", file=sys.stderr, flush=True)

    ref, ref_queries = vectors["bertkit fp32"], runnable["bertkit fp32"](queries)
    rows = []
    for name, fn in paths.items():
        if not callable(fn):
            rows.append({"path": name, "skipped": fn})
            continue
        agree = cosines(vectors[name], ref)
        figures = {"min_cosine": float(agree.min()), "mean_cosine": float(agree.mean()),
                   "top10_overlap": top_k_overlap(fn(queries), vectors[name], ref_queries, ref)}
        wall, cpu = best[name]
        rows.append({"path": name, "texts_per_s": len(texts) / wall, "cpu_s": cpu, **figures})
    if args.classifier:
        for name, share in label_agreements(args, paths, texts, onnx_dir).items():
            next(r for r in rows if r["path"] == name)["label_agreement"] = share
    for row in rows:
        if "skipped" not in row:
            row["passes_gate"] = not gate_failures(row)

    speed = {r["path"]: r["texts_per_s"] for r in rows if "texts_per_s" in r}
    ort32, ort8 = speed["ONNX Runtime fp32"], speed["ONNX Runtime int8"]
    gated = [r for r in rows if r.get("passes_gate") and r["path"].startswith("bertkit")]
    fastest = max(gated, key=lambda r: r["texts_per_s"])
    summary = {
        "fastest_gated_bertkit_path": fastest["path"],
        "fastest_gated_vs_ort_fp32": fastest["texts_per_s"] / ort32, "fastest_gated_vs_ort_int8": fastest["texts_per_s"] / ort8,
        "bertkit_fp32_vs_ort_fp32": speed["bertkit fp32"] / ort32,
    }
    machine = {"cpu_capability": cpu_capability(), "bf16_flags": sorted(cpu_flags() & {"avx512_bf16", "amx_bf16"}),
               "vnni_flags": sorted(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"}), "threads": args.threads,
               "torch": torch.__version__, "texts": len(texts), "queries": len(queries), "repeats": args.repeats}
    print(table(rows))
    print(f"\nfastest gated bertkit path: {fastest['path']}, {summary['fastest_gated_vs_ort_fp32']:.2f}x ONNX Runtime "
          f"fp32 and {summary['fastest_gated_vs_ort_int8']:.2f}x ONNX Runtime int8; bertkit fp32 is "
          f"{summary['bertkit_fp32_vs_ort_fp32']:.2f}x ONNX Runtime fp32")
    print(f"machine: {machine}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "summary": summary, "machine": machine,
                                               "export_check": {k: export[k] for k in ("check", "check_int8")}},
                                              indent=2))
    return 0


def table(rows: list[dict]) -> str:
    lines = ["| path | texts/s | CPU s | lowest cosine | mean cosine | top-10 overlap | labels equal | gate |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['path']} | – | – | – | – | – | – | not run: {r['skipped']} |")
            continue
        labels = f"{r['label_agreement']:.3f}" if "label_agreement" in r else "–"
        lines.append(f"| {r['path']} | {r['texts_per_s']:.1f} | {r['cpu_s']:.1f} | {r['min_cosine']:.4f} | "
                     f"{r['mean_cosine']:.5f} | {r['top10_overlap']:.3f} | {labels} | "
                     f"{'passes' if r['passes_gate'] else 'misses'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
