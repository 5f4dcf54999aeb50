"""GPU fine-tuning and inference throughput: bertkit (varlen, compiled, CUDA graphs) vs transformers' best recipe, BERT-base shapes.

    python benchmarks/bench_gpu.py --json gpu.json     # one GPU, < 8 minutes on an H100
    python benchmarks/bench_gpu.py --small             # tiny shapes on the CPU: checks the script end to end

Inputs: BERT-base (12 layers, hidden 768, random weights, 2 labels), 4,096 examples with IMDb-like
lengths (log-normal, median ~230 word pieces, capped at 512). Every variant gets the same examples
and the same initial weights.

Reference, transformers' best recipe: BertForSequenceClassification, SDPA attention, bf16 autocast,
fused AdamW, pinned non-blocking copies; batch 32 for training, 128 for inference; batches grouped by
length with dynamic padding (`hf_grouped`), the same with pad_to_multiple_of=8 (`hf_pad8`), and
random batches padded to 512 (`hf_pad512`). Ours: the same weights in bertkit's packed network;
token-budget batches with no padding and flash varlen attention, eager (`ours_eager`), with
`accel.compile_network` and T bucketed to the budget (`ours_compiled`), and CUDA-graph replay for
inference (`ours_graph`, `ours_compiled_graph`). Compiled inference also stores the Linear weights
in bf16 once (`accel.cast_linear_weights`: autocast's numbers without its per-forward casts);
`ours_autotune*` compile with max-autotune, whose matmul templates fuse bias+GELU. No host sync
inside a step. Every inference variant's logits on the first batch are compared with the eager network's.

Timing: one full warm-up pass over every batch (every shape compiled / captured / autotuned), then
`--repeats` timed passes (the fastest counts, for every variant alike), each synchronised only at
its end. Printed per variant: examples/s, real tokens/s and model FLOP utilisation over real tokens
only (the formula is printed), then the ratio of our best to the reference's best. A correctness check of our outputs against transformers on the device (bf16
tolerance) runs first.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import os
import sys
import time
import warnings
from typing import Callable

import torch
import torch.nn.functional as F

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Dense bf16 tensor-core peaks from the datasheets (no sparsity), by a substring of the device name.
PEAK_BF16 = [("H100 PCIe", 756e12), ("H100", 989e12), ("H200", 989e12), ("H800", 989e12), ("GH200", 989e12),
             ("A100", 312e12), ("L40S", 362e12), ("L4", 121e12), ("A10", 125e12), ("4090", 165e12)]
FLOP_FORMULA = ("forward FLOPs of a sequence of n real tokens = n * 2*layers*(4*h^2 + 2*h*ffn) + 4*layers*h*n^2 "
                "(dense matmuls + QK^T and AV); training = 3x forward; padding, embeddings, heads, "
                "softmax and LayerNorm not counted; MFU = FLOPs / time / peak")


def forward_flops(n: int, layers: int, hidden: int, ffn: int) -> float:
    return n * 2 * layers * (4 * hidden * hidden + 2 * hidden * ffn) + 4 * layers * hidden * n * n


def peak_flops(device: torch.device, override_tflops: float | None) -> float | None:
    if override_tflops:
        return override_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16 if key in name), None)


# ---------------------------------------------------------------------------------------------
# Data: IMDb-like lengths, random ids
# ---------------------------------------------------------------------------------------------
def make_data(n: int, median: int, max_len: int, vocab: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lens = torch.exp(torch.randn(n, generator=g) * 0.6 + math.log(median)).long().clamp(16, max_len).tolist()
    seqs = [[101] + torch.randint(1000, vocab, (k - 2,), generator=g).tolist() + [102] for k in lens]
    labels = torch.randint(0, 2, (n,), generator=g).tolist()
    return lens, seqs, labels


def hf_batches(lens, seqs, labels, batch_size: int, grouped: bool, pad_to: int | None, multiple: int, seed: int = 1):
    """transformers-style padded batches, pinned: grouped by length (chunks of 50 batches sorted) or random."""
    perm = torch.randperm(len(lens), generator=torch.Generator().manual_seed(seed)).tolist()
    if grouped:
        chunk = batch_size * 50
        perm = [i for s in range(0, len(perm), chunk) for i in sorted(perm[s: s + chunk], key=lambda i: -lens[i])]
    out = []
    for s in range(0, len(perm), batch_size):
        idx = perm[s: s + batch_size]
        width = pad_to or max(lens[i] for i in idx)
        width = -(-width // multiple) * multiple
        ids = torch.zeros(len(idx), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, i in enumerate(idx):
            ids[row, : lens[i]] = torch.tensor(seqs[i])
            mask[row, : lens[i]] = 1
        y = torch.tensor([labels[i] for i in idx])
        out.append((idx, ids, mask, y))
    return out


def packed_batches(lens, seqs, labels, budget: int, shuffle: bool, seed: int = 1):
    """bertkit batches: sequences packed end to end up to `budget` real tokens; no padding, no sorting needed."""
    from bertkit.batching import pack

    order = list(range(len(lens)))
    if shuffle:
        order = torch.randperm(len(lens), generator=torch.Generator().manual_seed(seed)).tolist()
    plans, current, used = [], [], 0
    for i in order:
        if current and used + lens[i] > budget:
            plans.append(current)
            current, used = [], 0
        current.append(i)
        used += lens[i]
    if current:
        plans.append(current)
    return [(idx, pack([seqs[i] for i in idx], labels=[labels[i] for i in idx], index=idx)) for idx in plans]


# ---------------------------------------------------------------------------------------------
# Models with identical initial weights
# ---------------------------------------------------------------------------------------------
def make_configs(small: bool):
    from transformers import BertConfig as HFConfig

    if small:
        hf = HFConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, num_labels=2)
    else:
        hf = HFConfig(num_labels=2)  # bert-base-uncased's shape
    from bertkit.config import BertConfig

    return hf, BertConfig.from_dict(hf.to_dict())


def hf_model(hf_cfg, state, device):
    from transformers import BertForSequenceClassification

    model = BertForSequenceClassification._from_config(hf_cfg, attn_implementation="sdpa")
    model.load_state_dict(state)
    return model.to(device)


def our_network(cfg, hf_state, device):
    from bertkit.checkpoint import from_hf_names
    from bertkit.modeling import BertNetwork

    net = BertNetwork(copy.deepcopy(cfg), pooler=True, classifier=True)
    ours, unused = from_hf_names(hf_state)
    net.load_state_dict(ours, strict=True)
    return net.to(device)


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------
class Bench:
    def __init__(self, args):
        self.args = args
        self.device = torch.device("cuda" if torch.cuda.is_available() and not args.small else "cpu")
        self.small = args.small
        self.amp = self.device.type == "cuda"  # bf16 autocast on the GPU; fp32 on the CPU smoke run
        self.n = args.n or (96 if self.small else 4096)
        self.hf_cfg, self.cfg = make_configs(self.small)
        median, max_len = (24, 64) if self.small else (230, 512)
        self.lens, self.seqs, self.labels = make_data(self.n, median, max_len, self.cfg.vocab_size)
        self.train_tokens = args.train_tokens or (512 if self.small else 32768)
        self.infer_tokens = args.infer_tokens or (2048 if self.small else 65536)
        torch.manual_seed(0)
        from transformers import BertForSequenceClassification

        init = BertForSequenceClassification._from_config(self.hf_cfg, attn_implementation="sdpa")
        self.hf_state = {k: v.clone() for k, v in init.state_dict().items()}
        c = self.cfg
        self.flops = [forward_flops(k, c.num_hidden_layers, c.hidden_size, c.intermediate_size) for k in self.lens]
        self.peak = peak_flops(self.device, args.peak_tflops)
        self.results: dict[str, dict] = {}
        self.backend = args.compile_backend or ("inductor" if self.device.type == "cuda" else "aot_eager")

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def optimizer(self, params):
        return torch.optim.AdamW(params, lr=2e-5, fused=True)

    def measure(self, name: str, kind: str, step: Callable, items: list, extra: dict | None = None) -> dict:
        """One warm-up pass over every item, then `--repeats` timed ones (the fastest counts); returns (and prints) the numbers."""
        t0 = time.perf_counter()
        for x in items:
            step(x)
        self.sync()
        warm = time.perf_counter() - t0
        passes = []
        for _ in range(self.args.repeats):
            t0 = time.perf_counter()
            for x in items:
                step(x)
            self.sync()
            passes.append(time.perf_counter() - t0)
        dt = min(passes)
        examples = sum(len(x[0]) for x in items)
        tokens = sum(self.lens[i] for x in items for i in x[0])
        flops = sum(self.flops[i] for x in items for i in x[0]) * (3 if kind == "train" else 1)
        r = {"kind": kind, "examples_s": examples / dt, "real_tokens_s": tokens / dt, "seconds": dt,
             "passes_s": [round(p, 4) for p in passes], "warmup_s": warm, "batches": len(items),
             "mfu": flops / dt / self.peak if self.peak else None, **(extra or {})}
        self.results[name] = r
        mfu = f"{r['mfu'] * 100:5.1f}%" if r["mfu"] is not None else "   - "
        spread = f", passes {min(passes):.3f}-{max(passes):.3f}s" if len(passes) > 1 else ""
        print(f"{name:28s} {kind:5s} {r['examples_s']:9.1f} ex/s {r['real_tokens_s']:11.0f} real tok/s  MFU {mfu}  "
              f"({len(items)} batches, warm-up {warm:.1f}s{spread})", flush=True)
        return r

    def free(self):
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # -- transformers ------------------------------------------------------------------------
    def hf(self, name: str, train: bool, grouped: bool, pad_to: int | None = None, multiple: int = 1):
        bs = 32 if train else 128
        items = hf_batches(self.lens, self.seqs, self.labels, bs, grouped, pad_to, multiple)
        if self.device.type == "cuda":
            items = [(i, a.pin_memory(), b.pin_memory(), y.pin_memory()) for i, a, b, y in items]
        model = hf_model(self.hf_cfg, self.hf_state, self.device).train(train)
        opt = self.optimizer(model.parameters()) if train else None
        dev = self.device

        def step(x):
            _, ids, mask, y = x
            ids, mask, y = ids.to(dev, non_blocking=True), mask.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            if train:
                with self.autocast():
                    loss = model(input_ids=ids, attention_mask=mask, labels=y).loss
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
            else:
                with torch.inference_mode(), self.autocast():
                    model(input_ids=ids, attention_mask=mask).logits

        padded = sum(x[1].numel() for x in items)
        self.measure(name, "train" if train else "infer", step, items,
                     {"batch_size": bs, "padding_waste": 1 - sum(self.lens) / padded})
        del model, opt
        self.free()

    # -- ours ----------------------------------------------------------------------------------
    def ours_train(self, name: str, compiled: bool):
        from bertkit import accel

        items = packed_batches(self.lens, self.seqs, self.labels, self.train_tokens, shuffle=True)
        if compiled:  # every batch grown to the budget: one shape for the compiled blocks
            items = [(i, accel.bucket_tokens(b, sizes=[self.train_tokens], multiple=self.train_tokens)) for i, b in items]
        else:
            items = [(i, accel.Bucketed(b, b.num_tokens, b.num_sequences)) for i, b in items]
        if self.device.type == "cuda":
            items = [(i, accel.Bucketed(b.batch.pin_memory(), b.num_tokens, b.num_sequences)) for i, b in items]
        net = our_network(self.cfg, self.hf_state, self.device).train()
        if compiled:
            accel.compile_network(net, mode=self.args.compile_mode, dynamic=False, backend=self.backend)
        opt = self.optimizer(net.parameters())
        dev = self.device

        def step(x):
            _, bucketed = x
            batch = bucketed.batch.to(dev, non_blocking=True)
            with self.autocast():
                logits = bucketed.sequences(net.classify(batch))
            loss = F.cross_entropy(logits.float(), bucketed.sequences(batch.labels))
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        dummy = sum(b.num_dummy_tokens for _, b in items)
        self.measure(name, "train", step, items, {"batch_tokens": self.train_tokens, "dummy_token_frac": dummy / sum(self.lens),
                                                  "compile": accel.is_compiled(net) and net._bertkit_compiled or None})
        del net, opt
        self.free()

    def ours_infer(self, name: str, compiled: bool, graphs: bool, mode: str | None = None, pure_bf16: bool = False,
                   shape_generic: bool = False):
        """Eager: the network as loaded. Compiled: Linear weights stored in bf16 once (same numbers
        under autocast), dense blocks compiled with `mode`, every batch grown to the one budget shape.
        `shape_generic`: `Model.compile()`'s path instead (dynamic shapes, fp32 weights, no bucketing).
        `pure_bf16` (a precision trade, measured not adopted): every weight and the residual stream
        in bf16, no autocast."""
        from bertkit import accel

        items = packed_batches(self.lens, self.seqs, self.labels, self.infer_tokens, shuffle=False)
        if self.device.type == "cuda":
            items = [(i, b.pin_memory()) for i, b in items]
        net = our_network(self.cfg, self.hf_state, self.device).eval()
        eager = copy.deepcopy(net)
        autocast = self.autocast
        if pure_bf16:
            net.to(torch.bfloat16)
            autocast = contextlib.nullcontext
        bucketed = compiled and not shape_generic
        if compiled:
            if self.amp and bucketed and not pure_bf16:
                accel.cast_linear_weights(net)
            accel.compile_network(net, mode=mode or self.args.compile_mode, dynamic=shape_generic, backend=self.backend)
        dev = self.device
        extra = {"batch_tokens": self.infer_tokens, "compile_mode": (mode or self.args.compile_mode) if compiled else None,
                 "pure_bf16": pure_bf16, "shape_generic": shape_generic}
        if graphs:
            runner = accel.CudaGraphRunner(net, output="logits", token_multiple=self.infer_tokens,
                                           capture=self.device.type == "cuda")

            def step(x):
                return runner(x[1])
        else:
            def step(x):
                batch = x[1].to(dev, non_blocking=True)
                b = accel.bucket_tokens(batch, sizes=[self.infer_tokens], multiple=self.infer_tokens) if bucketed else None
                with torch.inference_mode(), autocast():
                    logits = net.classify(b.batch if b else batch)
                return b.sequences(logits) if b else logits

        self.measure(name, "infer", step, items, extra)
        with torch.inference_mode():  # the timed code's answers, against the eager network's under autocast
            with self.autocast():
                want = eager.classify(items[0][1].to(dev)).float()
            got = step(items[0]).float()
        self.results[name]["logits_vs_eager_max_abs"] = float((got - want).abs().max())
        if graphs:
            self.results[name]["graphs"] = len(runner.graphs)
            self.results[name]["captured"] = runner.capture
        del net, eager
        self.free()

    # -- correctness ---------------------------------------------------------------------------
    def check(self) -> dict:
        """Our logits and hidden states vs transformers' on the device: fp32 tightly, bf16 within bf16 tolerance."""
        from bertkit import accel
        from bertkit.batching import pack

        pick = sorted(range(self.n), key=lambda i: self.lens[i])
        idx = [pick[0], pick[len(pick) // 4], pick[len(pick) // 2], pick[-1], pick[3 * len(pick) // 4], pick[1], pick[-2]]
        seqs = [self.seqs[i] for i in idx]
        batch = pack(seqs).to(self.device)
        hf = hf_model(self.hf_cfg, self.hf_state, self.device).eval()
        width = max(len(s) for s in seqs)
        ids = torch.zeros(len(seqs), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, s in enumerate(seqs):
            ids[r, : len(s)] = torch.tensor(s)
            mask[r, : len(s)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        unpad = lambda h: torch.cat([h[r, : len(s)] for r, s in enumerate(seqs)]).float()  # noqa: E731
        net = our_network(self.cfg, self.hf_state, self.device).eval()
        out: dict = {}
        with torch.inference_mode():
            ref32 = hf(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            ours32 = net(batch)
            out["fp32_states_max_abs"] = float((ours32 - unpad(ref32.hidden_states[-1])).abs().max())
            out["fp32_logits_max_abs"] = float((net.classify(batch) - ref32.logits).abs().max())
            with self.autocast():
                ref16 = hf(input_ids=ids, attention_mask=mask, output_hidden_states=True)
                eager16 = net(batch).float()
                logits16 = net.classify(batch).float()
            want = unpad(ref16.hidden_states[-1])
            out["bf16_states_max_abs"] = float((eager16 - want).abs().max())
            out["bf16_states_min_cosine"] = float(F.cosine_similarity(eager16, want).min())
            out["bf16_logits_max_abs"] = float((logits16 - ref16.logits.float()).abs().max())
            compiled = accel.compile_network(copy.deepcopy(net), mode=self.args.compile_mode, dynamic=False, backend=self.backend)
            b = accel.bucket_tokens(batch, 64)
            with self.autocast():
                comp16 = b.tokens(compiled(b.batch)).float()
            out["compiled_vs_eager_max_abs"] = float((comp16 - eager16).abs().max())
        runner = accel.CudaGraphRunner(net, output="states", token_multiple=64, capture=self.device.type == "cuda")
        graph16 = runner(batch).float()
        out["graph_vs_eager_max_abs"] = float((graph16 - eager16).abs().max())
        tol = {"fp32_states_max_abs": 1e-4, "fp32_logits_max_abs": 1e-4, "bf16_states_max_abs": 1e-1,
               "bf16_logits_max_abs": 5e-2, "compiled_vs_eager_max_abs": 5e-2, "graph_vs_eager_max_abs": 5e-2}
        if not self.amp:  # the CPU smoke run is fp32 throughout
            tol = {k: 1e-4 for k in tol}
        out["tolerances"] = tol
        out["passed"] = all(out[k] <= v for k, v in tol.items()) and out["bf16_states_min_cosine"] > 0.999
        print("correctness vs transformers on", self.device, ":",
              ", ".join(f"{k}={v:.2e}" for k, v in out.items() if isinstance(v, float)), "->",
              "PASS" if out["passed"] else "FAIL", flush=True)
        del hf, net, compiled
        self.free()
        return out


VARIANTS = ["hf_grouped_train", "hf_pad8_train", "hf_pad512_train", "ours_eager_train", "ours_compiled_train",
            "hf_grouped_infer", "hf_pad8_infer", "hf_pad512_infer", "ours_eager_infer", "ours_compiled_infer",
            "ours_graph_infer", "ours_compiled_graph_infer", "ours_autotune_infer", "ours_autotune_graph_infer",
            "ours_pure_bf16_infer", "ours_dynamic_infer"]
AUTOTUNE = "max-autotune-no-cudagraphs"  # inductor's own matmul templates, bias+GELU fused into their epilogue


def run(small: bool = False, n: int | None = None, only: list[str] | None = None, json_path: str | None = None,
        **options) -> dict:
    """Run the check and the chosen variants; returns {device, formula, check, results, summary}."""
    args = argparse.Namespace(small=small, n=n, train_tokens=None, infer_tokens=None, peak_tflops=None,
                              compile_mode=None, compile_backend=None, skip_check=False, repeats=1)
    for k, v in options.items():
        setattr(args, k, v)
    warnings.filterwarnings("ignore", message=".*varlen attention has no attention-probability dropout.*")
    bench = Bench(args)
    dev = torch.cuda.get_device_name() if bench.device.type == "cuda" else "CPU"
    print(f"device {dev}  torch {torch.__version__}  examples {bench.n}  mean length {sum(bench.lens) / bench.n:.1f}  "
          f"max {max(bench.lens)}  layers {bench.cfg.num_hidden_layers} hidden {bench.cfg.hidden_size}  "
          f"peak {bench.peak / 1e12 if bench.peak else '-'} TFLOP/s  compile backend {bench.backend}", flush=True)
    print("MFU formula:", FLOP_FORMULA, flush=True)
    t_start = time.perf_counter()
    check = None if args.skip_check else bench.check()
    wanted = only or VARIANTS
    table = {
        "hf_grouped_train": lambda: bench.hf("hf_grouped_train", True, grouped=True),
        "hf_pad8_train": lambda: bench.hf("hf_pad8_train", True, grouped=True, multiple=8),
        "hf_pad512_train": lambda: bench.hf("hf_pad512_train", True, grouped=False, pad_to=max(bench.lens) if small else 512),
        "ours_eager_train": lambda: bench.ours_train("ours_eager_train", compiled=False),
        "ours_compiled_train": lambda: bench.ours_train("ours_compiled_train", compiled=True),
        "hf_grouped_infer": lambda: bench.hf("hf_grouped_infer", False, grouped=True),
        "hf_pad8_infer": lambda: bench.hf("hf_pad8_infer", False, grouped=True, multiple=8),
        "hf_pad512_infer": lambda: bench.hf("hf_pad512_infer", False, grouped=False, pad_to=max(bench.lens) if small else 512),
        "ours_eager_infer": lambda: bench.ours_infer("ours_eager_infer", compiled=False, graphs=False),
        "ours_compiled_infer": lambda: bench.ours_infer("ours_compiled_infer", compiled=True, graphs=False),
        "ours_graph_infer": lambda: bench.ours_infer("ours_graph_infer", compiled=False, graphs=True),
        "ours_compiled_graph_infer": lambda: bench.ours_infer("ours_compiled_graph_infer", compiled=True, graphs=True),
        "ours_autotune_infer": lambda: bench.ours_infer("ours_autotune_infer", compiled=True, graphs=False, mode=AUTOTUNE),
        "ours_autotune_graph_infer": lambda: bench.ours_infer("ours_autotune_graph_infer", compiled=True, graphs=True,
                                                              mode=AUTOTUNE),
        "ours_dynamic_infer": lambda: bench.ours_infer("ours_dynamic_infer", compiled=True, graphs=False, shape_generic=True),
        "ours_pure_bf16_infer": lambda: bench.ours_infer("ours_pure_bf16_infer", compiled=True, graphs=False,
                                                         mode=AUTOTUNE, pure_bf16=True),
    }
    errors = {}
    for name in wanted:
        try:
            table[name]()
        except Exception as e:  # one broken variant must not cost the others' numbers
            errors[name] = f"{type(e).__name__}: {str(e)[:300]}"
            print(f"{name:28s} FAILED {errors[name]}", flush=True)
            bench.free()
    summary = summarize(bench.results)
    for kind, s in summary.items():
        print(f"{kind}: ours best {s['ours']} {s['ours_examples_s']:.1f} ex/s vs transformers best {s['reference']} "
              f"{s['reference_examples_s']:.1f} ex/s -> {s['ratio']:.2f}x", flush=True)
    out = {"device": dev, "torch": torch.__version__, "examples": bench.n, "formula": FLOP_FORMULA,
           "peak_flops": bench.peak, "train_tokens": bench.train_tokens, "infer_tokens": bench.infer_tokens,
           "check": check, "results": bench.results, "errors": errors, "summary": summary,
           "total_s": round(time.perf_counter() - t_start, 1)}
    print(f"total {out['total_s']}s", flush=True)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(out, f, indent=2)
    return out


def summarize(results: dict[str, dict]) -> dict:
    out = {}
    for kind in ("train", "infer"):
        # Only variants that keep autocast's numbers compete; a precision trade is reported on its own.
        ours = {k: v for k, v in results.items() if k.startswith("ours") and v["kind"] == kind and not v.get("pure_bf16")}
        ref = {k: v for k, v in results.items() if k.startswith("hf") and v["kind"] == kind}
        if ours and ref:
            o = max(ours, key=lambda k: ours[k]["examples_s"])
            r = max(ref, key=lambda k: ref[k]["examples_s"])
            out[kind] = {"ours": o, "ours_examples_s": ours[o]["examples_s"], "ours_mfu": ours[o]["mfu"],
                         "reference": r, "reference_examples_s": ref[r]["examples_s"], "reference_mfu": ref[r]["mfu"],
                         "ratio": ours[o]["examples_s"] / ref[r]["examples_s"]}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true", help="tiny shapes and few examples (runs on the CPU)")
    p.add_argument("-n", type=int, default=None, help="examples (default 4096; 96 with --small)")
    p.add_argument("--only", default=None, help=f"comma-separated variants out of: {','.join(VARIANTS)}")
    p.add_argument("--train-tokens", type=int, default=None, help="our training token budget (default 32768: at 16384 the H100 sat 37% idle on launches)")
    p.add_argument("--infer-tokens", type=int, default=None, help="our inference token budget (default 65536)")
    p.add_argument("--compile-mode", default=None, help="torch.compile mode, e.g. max-autotune-no-cudagraphs")
    p.add_argument("--compile-backend", default=None, help="default: inductor on CUDA, aot_eager on the CPU")
    p.add_argument("--peak-tflops", type=float, default=None, help="bf16 dense peak, if the device is not in the table")
    p.add_argument("--repeats", type=int, default=1, help="timed passes per variant after the warm-up; the fastest counts (default 1)")
    p.add_argument("--skip-check", action="store_true")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the results to this JSON file")
    a = p.parse_args(argv)
    only = a.only.split(",") if a.only else None
    if only and (bad := [v for v in only if v not in VARIANTS]):
        p.error(f"unknown variants: {', '.join(bad)}")
    out = run(a.small, a.n, only, a.json, train_tokens=a.train_tokens, infer_tokens=a.infer_tokens,
              compile_mode=a.compile_mode, compile_backend=a.compile_backend, peak_tflops=a.peak_tflops,
              skip_check=a.skip_check, repeats=a.repeats)
    return 0 if (out["check"] is None or out["check"]["passed"]) and not out["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
