"""Where a GPU training or inference step spends its time: torch.profiler over bench_gpu.py's compiled variants.

    python benchmarks/profile_gpu.py [--n 1024] [--train-tokens 16384] [--steps 8] [--infer-mode MODE] [--no-train]

Prints the top CUDA kernels and CPU ops by self time for a warmed, compiled training step and a
warmed, compiled inference step on BERT-base shapes (inference as bench_gpu.py's compiled variants
run it: bf16-stored Linear weights, torch.compile `--infer-mode`), and the share of the step that
the GPU was busy.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
import bench_gpu  # noqa: E402


def profile_steps(label: str, step, items, steps: int) -> None:
    for x in items:  # warm every shape first
        step(x)
    torch.cuda.synchronize()
    chosen = items[:steps]
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for x in chosen:
            step(x)
        torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    events = prof.key_averages()
    gpu_busy = sum(e.self_device_time_total for e in events) / 1e6
    print(f"\n== {label}: {len(chosen)} steps, wall {wall * 1e3:.1f} ms under the profiler, GPU busy {gpu_busy * 1e3:.1f} ms "
          f"({gpu_busy / wall:.0%})", flush=True)
    print(events.table(sort_by="self_device_time_total", row_limit=22, max_name_column_width=60), flush=True)
    print(events.table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=60), flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1024)
    p.add_argument("--train-tokens", type=int, default=16384)
    p.add_argument("--infer-tokens", type=int, default=65536)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--infer-mode", default=None, help="torch.compile mode for inference, e.g. max-autotune-no-cudagraphs")
    p.add_argument("--no-train", action="store_true", help="profile inference only")
    a = p.parse_args()
    from bertkit import accel

    args = argparse.Namespace(small=False, n=a.n, train_tokens=a.train_tokens, infer_tokens=a.infer_tokens,
                              peak_tflops=None, compile_mode=None, compile_backend=None, skip_check=True,
                              repeats=1)
    bench = bench_gpu.Bench(args)
    dev = bench.device

    if not a.no_train:
        profile_training(bench, a.steps)

    items = bench_gpu.packed_batches(bench.lens, bench.seqs, bench.labels, bench.infer_tokens, shuffle=False)
    items = [b.pin_memory() for _, b in items]
    net = accel.cast_linear_weights(bench_gpu.our_network(bench.cfg, bench.hf_state, dev).eval())
    net = accel.compile_network(net, mode=a.infer_mode, dynamic=False)

    def infer_step(b):
        batch = accel.bucket_tokens(b.to(dev, non_blocking=True), sizes=[bench.infer_tokens], multiple=bench.infer_tokens).batch
        with torch.inference_mode(), bench.autocast():
            net.classify(batch)

    profile_steps(f"compiled inference ({a.infer_mode or 'default mode'}), {bench.infer_tokens} tokens per step",
                  infer_step, items, a.steps)
    return 0


def profile_training(bench, steps: int) -> None:
    from bertkit import accel

    dev = bench.device
    items = bench_gpu.packed_batches(bench.lens, bench.seqs, bench.labels, bench.train_tokens, shuffle=True)
    items = [accel.bucket_tokens(b, sizes=[bench.train_tokens], multiple=bench.train_tokens) for _, b in items]
    items = [accel.Bucketed(b.batch.pin_memory(), b.num_tokens, b.num_sequences) for b in items]
    net = accel.compile_network(bench_gpu.our_network(bench.cfg, bench.hf_state, dev).train(), dynamic=False)
    opt = bench.optimizer(net.parameters())

    def train_step(b):
        batch = b.batch.to(dev, non_blocking=True)
        with bench.autocast():
            logits = b.sequences(net.classify(batch))
        F.cross_entropy(logits.float(), b.sequences(batch.labels)).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    profile_steps(f"compiled training, {bench.train_tokens} tokens per step", train_step, items, steps)
    del net, opt
    torch.cuda.empty_cache()


if __name__ == "__main__":
    sys.exit(main())
