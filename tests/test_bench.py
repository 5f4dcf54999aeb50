"""`bertkit bench`: finding the scripts, tabulating their results, isolating a broken one (fake scripts, no timing)."""
from __future__ import annotations

import json

import pytest
import torch

from bertkit import bench
from bertkit.cli import main
from bertkit.errors import BertkitError

FAKE_INFER = '''
def run(quick=False, int8=False, device="cpu", repeats=5):
    return {"ours": 400.0, "reference_value": 200.0, "ratio": 2.0, "ratio_forward": 2.1, "device": "fake CPU",
            "texts": 128 if quick else 3000}
'''
FAKE_EMBED = '''
def run(quick=False):
    raise RuntimeError("sentence-transformers exploded")
'''


@pytest.fixture()
def fake_benchmarks(tmp_path):
    (tmp_path / "bench_infer.py").write_text(FAKE_INFER)
    (tmp_path / "bench_embed.py").write_text(FAKE_EMBED)
    return tmp_path


def test_rows_ratios_targets_and_a_broken_script(fake_benchmarks):
    report = bench.run_benchmarks(quick=True, only=["infer", "embed", "train"], folder=fake_benchmarks)
    rows = {r["name"]: r for r in report["rows"]}
    assert rows["infer"]["ratio"] == 2.0 and rows["infer"]["target"] == 1.5 and rows["infer"]["met"] is True
    assert rows["infer"]["note"].startswith("128 texts")
    assert rows["embed"]["note"].startswith("error: RuntimeError: sentence-transformers exploded")
    assert any(s.startswith("train:") and "not present" in s for s in report["skipped"])
    table = bench.format_table(report)
    assert "2.00x" in table and ">=1.5x ok" in table and "skipped: train" in table


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA skip")
def test_gpu_benchmark_is_skipped_without_cuda(fake_benchmarks):
    report = bench.run_benchmarks(only=["gpu"], folder=fake_benchmarks)
    assert report["rows"] == [] and report["skipped"] == ["gpu: needs a CUDA device"]


def test_unknown_benchmark_is_a_one_line_error(fake_benchmarks):
    with pytest.raises(BertkitError, match="unknown benchmark"):
        bench.run_benchmarks(only=["nope"], folder=fake_benchmarks)


def test_cli_json_and_exit_code(fake_benchmarks, monkeypatch, capsys):
    monkeypatch.setenv("BERTKIT_BENCHMARKS", str(fake_benchmarks))
    monkeypatch.setattr(bench, "benchmarks_dir", lambda: fake_benchmarks)
    assert main(["bench", "--only", "infer", "--quick", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows"][0]["ours"] == 400.0 and "raw" not in report["rows"][0]
    assert main(["bench", "--only", "embed", "--quick"]) == 1  # a benchmark that failed fails the command
    assert "error: RuntimeError" in capsys.readouterr().out


def test_the_repository_benchmarks_are_found():
    folder = bench.benchmarks_dir()
    assert folder is not None and (folder / "bench_gpu.py").is_file()
