"""`bertkit bench`: run the side-by-side benchmarks that fit this machine and tabulate ours, reference, ratio and MFU.

The benchmarks live in the repository's benchmarks/ folder, not in the package, so they are found
relative to this file (src/bertkit/bench.py -> ../../benchmarks) or through $BERTKIT_BENCHMARKS.
Each is imported and called through the entry point its adapter knows (ENTRY_POINTS): `run(...) -> dict`, or
`main(argv)` with a short configuration (`--quick` for a smoke run) and its JSON output. Outputs are read strictly,
so a script whose output keys change gives an error row naming the key (tests run every adapter on the real scripts).
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import torch

from bertkit.errors import BertkitError

# name -> (script, what it compares, the issue's target ratio)
BENCHMARKS = {
    "infer": ("bench_infer.py", "inference, MiniLM hidden states vs transformers BertModel", 1.5),
    "embed": ("bench_embed.py", "sentence embeddings vs sentence-transformers encode", 1.3),
    "train": ("bench_train.py", "fine-tuning vs transformers Trainer", 1.5),
    "gpu": ("bench_gpu.py", "BERT-base fine-tuning / inference vs transformers' best recipe", None),
}
GPU_TARGETS = {"train": 3.0, "infer": 2.0}


def benchmarks_dir() -> Path | None:
    """The repository's benchmarks/ folder, or None (e.g. bertkit installed from a wheel without the repo)."""
    candidates = [os.environ.get("BERTKIT_BENCHMARKS"), Path(__file__).resolve().parents[2] / "benchmarks",
                  Path.cwd() / "benchmarks"]
    for c in candidates:
        if c and (Path(c) / "bench_infer.py").is_file():
            return Path(c)
    return None


def load_script(folder: Path, filename: str) -> ModuleType | None:
    path = folder / filename
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location(f"bertkit_bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(folder))  # scripts may import their siblings
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(folder))
    return module


def machine() -> dict[str, Any]:
    cpu = "CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def _row(name: str, unit: str, ours: float | None, reference: float | None, ratio: float | None, target: float | None,
         device: str, mfu: float | None = None, note: str = "", raw: Any = None) -> dict[str, Any]:
    return {"name": name, "unit": unit, "ours": ours, "reference": reference, "ratio": ratio, "mfu": mfu,
            "target": target, "met": None if ratio is None or target is None else ratio >= target,
            "device": device, "note": note, "raw": raw}


def _error_row(name: str, target: float | None, device: str, error: str) -> dict[str, Any]:
    return _row(name, "", None, None, None, target, device, note=f"error: {error}")


def _main_json(module: ModuleType, argv: list[str]) -> dict:
    """Call a script's main(argv) that prints JSON (--json) and return what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = module.main(argv)
    if code not in (0, None):
        raise RuntimeError(f"main({' '.join(argv)}) exited {code}")
    text = out.getvalue()
    return json.loads(text[text.index("{"):])


# ---------------------------------------------------------------------------------------------
# One adapter per benchmark: call the script's real entry point, turn its output into table rows.
# Outputs are read strictly (`_need`): a renamed or missing key is an error row naming the key, never a silent None.
# ---------------------------------------------------------------------------------------------
def _need(r: dict, *path: str, script: str) -> Any:
    value: Any = r
    for depth, key in enumerate(path):
        if not isinstance(value, dict) or key not in value:
            raise RuntimeError(f"{script} output has no {'.'.join(path[: depth + 1])}: its output format changed; "
                               f"update the adapter in bertkit/bench.py")
        value = value[key]
    return value


def _cpu_or(device: str) -> str:
    return machine()["cpu"] if device == "cpu" else device


def _infer(module: ModuleType, quick: bool, device: str) -> list[dict]:
    return _infer_rows(module.run(quick=quick, int8=not quick, device=device, repeats=5))


def _infer_rows(r: dict) -> list[dict]:
    need = lambda *path: _need(r, *path, script="bench_infer.py")  # noqa: E731
    forward = need("ratio_forward")
    rows = [_row("infer", "texts/s", need("ours"), need("reference_value"), need("ratio"), BENCHMARKS["infer"][2],
                 need("device"), note=f"{need('texts')} texts, end to end" + (f"; forward only {forward:.2f}x" if forward else ""),
                 raw=r)]
    if "ratio_int8" in r:  # present when run(int8=True)
        acc = need("int8_accuracy")
        rows.append(_row("infer int8 (opt-in)", "texts/s", need("texts_per_s", "ours_int8_end_to_end"), need("reference_value"),
                         need("ratio_int8"), None, need("device"),
                         note=f"changes numbers: token cosine {acc['token_cosine_mean']}, classifier agreement "
                              f"{acc['classifier']['agreement']:.3f}"))
    return rows


def _embed_argv(quick: bool) -> list[str]:
    return ["--json", "--quick"] if quick else ["--json", "-n", "3000", "--repeats", "3"]


def _embed(module: ModuleType, quick: bool, device: str) -> list[dict]:
    return _embed_rows(_main_json(module, _embed_argv(quick)), device)


def _embed_rows(r: dict, device: str) -> list[dict]:
    need = lambda *path: _need(r, *path, script="bench_embed.py")  # noqa: E731
    return [_row("embed", "texts/s", need("texts_per_s_best", "bertkit"), need("texts_per_s_best", "sentence_transformers"),
                 need("speedup"), BENCHMARKS["embed"][2], _cpu_or(device),
                 note=f"{need('texts')} texts, best of {need('repeats')} rounds", raw=r)]


def _train_argv(json_path: str, quick: bool) -> list[str]:
    # A short configuration keeps the full run to minutes on 2 cores.
    return ["--json", json_path] + (["--quick"] if quick else ["--limit", "512", "--eval-limit", "256", "--epochs", "1"])


def _train(module: ModuleType, quick: bool, device: str) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:  # its main writes JSON to a file
        path = os.path.join(tmp, "train.json")
        with contextlib.redirect_stdout(sys.stderr):
            code = module.main(_train_argv(path, quick))
        if code not in (0, None):
            raise RuntimeError(f"bench_train main exited {code}")
        with open(path) as f:
            r = json.load(f)
    return _train_rows(r, device)


def _train_rows(r: dict, device: str) -> list[dict]:
    need = lambda *path: _need(r, *path, script="bench_train.py")  # noqa: E731
    return [_row("train", "s (lower is better)", need("mean", "bertkit", "wall_s"), need("mean", "transformers", "wall_s"),
                 need("time_ratio"), BENCHMARKS["train"][2], _cpu_or(device),
                 note="short run: wall time, tokenize + train + eval", raw=r)]


def _gpu(module: ModuleType, quick: bool, device: str) -> list[dict]:
    with contextlib.redirect_stdout(sys.stderr):
        r = module.run(small=False, n=1024 if quick else None)
    return _gpu_rows(r)


def _gpu_rows(r: dict) -> list[dict]:
    need = lambda *path: _need(r, *path, script="bench_gpu.py")  # noqa: E731
    rows = []
    for kind, s in need("summary").items():
        rows.append(_row(f"gpu {kind} (BERT-base)", "examples/s", s["ours_examples_s"], s["reference_examples_s"],
                         s["ratio"], GPU_TARGETS[kind], need("device"), mfu=s["ours_mfu"],
                         note=f"{s['ours']} vs {s['reference']}; reference MFU "
                              f"{s['reference_mfu'] * 100 if s['reference_mfu'] else float('nan'):.1f}%"))
    check = need("check")
    if check and not check["passed"]:
        rows.append(_error_row("gpu correctness", None, need("device"), "outputs differ from transformers beyond bf16 tolerance"))
    return rows


ADAPTERS: dict[str, Callable[[ModuleType, bool, str], list[dict]]] = {
    "infer": _infer, "embed": _embed, "train": _train, "gpu": _gpu}
# The entry point each adapter calls in its script.
ENTRY_POINTS = {"infer": "run", "embed": "main", "train": "main", "gpu": "run"}


def run_benchmarks(quick: bool = False, only: list[str] | None = None, folder: Path | None = None) -> dict[str, Any]:
    """Run what fits this machine (CPU: infer, embed, train; CUDA: gpu and infer) and return {machine, rows, skipped}."""
    folder = folder or benchmarks_dir()
    if folder is None:
        raise BertkitError("benchmarks/ not found: `bertkit bench` runs the scripts in the bertkit repository's "
                           "benchmarks/ folder; run it from a checkout, or set BERTKIT_BENCHMARKS=/path/to/benchmarks")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    names = only or (["gpu", "infer"] if device == "cuda" else ["infer", "embed", "train"])
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise BertkitError(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    rows, skipped = [], []
    for name in names:
        script = BENCHMARKS[name][0]
        if name == "gpu" and device != "cuda":
            skipped.append(f"{name}: needs a CUDA device")
            continue
        t0 = time.perf_counter()
        try:
            module = load_script(folder, script)
            if module is None:
                skipped.append(f"{name}: {folder / script} not present")
                continue
            if not hasattr(module, ENTRY_POINTS[name]):
                skipped.append(f"{name}: {script} has no {ENTRY_POINTS[name]}()")
                continue
            with contextlib.redirect_stdout(sys.stderr):  # scripts' progress lines must not spoil --json
                new = ADAPTERS[name](module, quick, device)
        except Exception as e:  # one broken benchmark must not hide the others
            new = [_error_row(name, BENCHMARKS[name][2], device, f"{type(e).__name__}: {str(e)[:200]}")]
        for r in new:
            r["seconds"] = round(time.perf_counter() - t0, 1)
        rows.extend(new)
    return {"machine": machine(), "benchmarks_dir": str(folder), "quick": quick, "rows": rows, "skipped": skipped}


def format_table(report: dict[str, Any]) -> str:
    m = report["machine"]
    head = f"{m['cpu']} ({m['cores']} cores)" + (f", {m['gpu']}" if "gpu" in m else "") + f", torch {m['torch']}"
    lines = [head, f"{'benchmark':22s} {'ours':>10s} {'reference':>10s} {'ratio':>7s} {'target':>7s} {'MFU':>6s}  unit / note"]
    fmt = lambda v, spec: "-" if v is None else format(v, spec)  # noqa: E731
    for r in report["rows"]:
        target = "-" if r["target"] is None else f">={r['target']:g}x" + ("" if r["met"] is None else (" ok" if r["met"] else " !!"))
        mfu = "-" if r["mfu"] is None else f"{r['mfu'] * 100:.1f}%"
        lines.append(f"{r['name']:22s} {fmt(r['ours'], '10.1f')} {fmt(r['reference'], '10.1f')} "
                     f"{fmt(r['ratio'], '6.2f') + ('x' if r['ratio'] is not None else ''):>7s} {target:>7s} {mfu:>6s}  "
                     f"{r['unit']}{'; ' if r['unit'] and r['note'] else ''}{r['note']}")
    for s in report["skipped"]:
        lines.append(f"skipped: {s}")
    return "\n".join(lines)
