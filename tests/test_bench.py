"""`bertkit bench`: finding the scripts, tabulating their results, isolating a broken one (fake scripts), and every
adapter against the real scripts in benchmarks/ run in their smallest configuration (their output keys, not speed)."""
from __future__ import annotations

import functools
import json
import math

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
def main(argv=None):
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


def test_a_script_without_the_entry_point_is_skipped(tmp_path):
    (tmp_path / "bench_infer.py").write_text("def main(argv=None):\n    return 0\n")  # infer's adapter calls run()
    report = bench.run_benchmarks(only=["infer"], folder=tmp_path)
    assert report["rows"] == [] and report["skipped"] == ["infer: bench_infer.py has no run()"]


def test_a_changed_output_key_is_an_error_row_naming_it(tmp_path):
    (tmp_path / "bench_infer.py").write_text(FAKE_INFER.replace('"reference_value"', '"reference"'))
    row = bench.run_benchmarks(quick=True, only=["infer"], folder=tmp_path)["rows"][0]
    assert row["ours"] is None and "bench_infer.py output has no reference_value" in row["note"]


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


# -- the real scripts ---------------------------------------------------------------------------------
@pytest.fixture()
def real_benchmarks():
    folder = bench.benchmarks_dir()
    assert folder is not None
    threads = torch.get_num_threads()
    yield folder
    torch.set_num_threads(threads)  # the scripts pin their own thread count


def script(folder, name):
    return bench.load_script(folder, bench.BENCHMARKS[name][0])


def assert_measured(row: dict, name: str, lower_is_better: bool = False) -> None:
    """A row with both sides measured; the ratio agrees with them (scripts round: 3 decimals of the ratio, 1 of rates)."""
    assert not row["note"].startswith("error"), row["note"]
    assert row["name"] == name and row["ours"] > 0 and row["reference"] > 0 and row["ratio"] > 0
    expected = row["ours"] / row["reference"] if not lower_is_better else row["reference"] / row["ours"]
    # Rates are rounded to 0.1 texts/s (relative error 0.05 / rate each, twice in a quotient), the ratio to 1e-3.
    slack = 2 * 0.05 / min(row["ours"], row["reference"]) * expected + 5e-4
    assert math.isclose(row["ratio"], expected, rel_tol=0, abs_tol=slack), (row["ratio"], expected)
    assert row["target"] == bench.BENCHMARKS[name.split()[0]][2]


def test_infer_adapter_on_the_real_script(real_benchmarks):
    """The `bertkit bench --quick` adapter on bench_infer.run(quick=True), held to 32 texts (its quick mode has 128)."""
    module = script(real_benchmarks, "infer")
    module.run = functools.partial(module.run, n=32)
    rows = bench.ADAPTERS["infer"](module, True, "cpu")
    assert len(rows) == 1
    assert_measured(rows[0], "infer")
    assert rows[0]["note"] == "32 texts, end to end"


def test_infer_int8_rows_from_the_real_script():
    """The full run adds int8 (`int8=not quick`): its keys, from the real run() on 16 texts."""
    r = script(bench.benchmarks_dir(), "infer").run(n=16, quick=True, int8=True)
    rows = bench._infer_rows(r)
    assert [row["name"] for row in rows] == ["infer", "infer int8 (opt-in)"]
    assert rows[1]["ours"] > 0 and rows[1]["ratio"] > 0 and "token cosine" in rows[1]["note"]


def test_embed_adapter_on_the_real_script(real_benchmarks):
    """`bertkit bench --quick` path: bench_embed.main(["--json", "--quick"]), 32 texts, one round."""
    report = bench.run_benchmarks(quick=True, only=["embed"], folder=real_benchmarks)
    assert report["skipped"] == [] and len(report["rows"]) == 1
    row = report["rows"][0]
    assert_measured(row, "embed")  # was None for both sides: the adapter read keys the script never wrote
    assert row["note"] == "32 texts, best of 1 rounds"


def test_train_adapter_on_the_real_script(real_benchmarks):
    """`bertkit bench --quick` path: bench_train.main(["--json", PATH, "--quick"]), 32 + 32 examples, one epoch."""
    report = bench.run_benchmarks(quick=True, only=["train"], folder=real_benchmarks)
    assert report["skipped"] == [] and len(report["rows"]) == 1
    row = report["rows"][0]
    assert not row["note"].startswith("error"), row["note"]
    # wall_s is not rounded, so the ratio is theirs / ours to float64 precision (a division and a mean of 1 run).
    assert row["ours"] > 0 and row["reference"] > 0
    assert row["ratio"] == pytest.approx(row["reference"] / row["ours"], rel=1e-12)


def test_the_full_run_arguments_parse_with_the_real_scripts(real_benchmarks, tmp_path):
    """The non-quick configurations the adapters pass (too slow to run here) are accepted by the scripts' parsers."""
    embed = script(real_benchmarks, "embed").parse_args(bench._embed_argv(quick=False))
    assert (embed.n, embed.repeats, embed.json, embed.quick) == (3000, 3, True, False)
    train = script(real_benchmarks, "train").parse_args(bench._train_argv(str(tmp_path / "t.json"), quick=False))
    assert (train.limit, train.eval_limit, train.epochs, train.quick) == (512, 256, 1, False)
    quick = script(real_benchmarks, "train").parse_args(bench._train_argv(str(tmp_path / "t.json"), quick=True))
    assert (quick.limit, quick.eval_limit, quick.epochs) == (32, 32, 1)


def test_gpu_rows_from_the_real_script_on_the_cpu(real_benchmarks):
    """bench_gpu's own small mode (tiny shapes on the CPU), four cheap variants: the keys the gpu adapter reads."""
    variants = ["hf_grouped_train", "ours_eager_train", "hf_grouped_infer", "ours_eager_infer"]
    r = script(real_benchmarks, "gpu").run(small=True, n=32, only=variants)
    rows = bench._gpu_rows(r)
    assert [row["name"] for row in rows] == ["gpu train (BERT-base)", "gpu infer (BERT-base)"]
    for row in rows:
        assert row["ours"] > 0 and row["reference"] > 0
        assert row["ratio"] == pytest.approx(row["ours"] / row["reference"], rel=1e-12)  # unrounded floats
