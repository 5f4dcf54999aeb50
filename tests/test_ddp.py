"""Data-parallel training: two gloo processes launched by `bertkit train --nproc 2` match one process on the same global batch."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from bertkit.cli import main
from bertkit.train.parallel import check_world_size, shard
from bertkit.errors import BertkitError
from helpers import sentiment_rows, write_tiny

ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def setup(tmp_path_factory, minilm_dir):
    """A dropout-free tiny model (so two processes and one draw the same numbers) and odd-sized splits."""
    folder = tmp_path_factory.mktemp("ddp")
    model = write_tiny("base", folder / "tiny", minilm_dir, seed=3, hidden_dropout_prob=0.0,
                       attention_probs_dropout_prob=0.0)
    # 45 training rows in batches of 6: the last batch of each epoch (3 rows) does not split evenly over 2 ranks.
    for name, n, seed in (("train.csv", 45, 30), ("eval.csv", 11, 31), ("test.csv", 9, 32)):
        rows = sentiment_rows(n, seed)
        pd.DataFrame({"text": [t for t, _ in rows], "label": [y for _, y in rows]}).to_csv(folder / name, index=False)
    return folder, model


def args(folder, model, out, *extra):
    # Uneven shards, gradient accumulation, class weights and a test split all take the sharded paths.
    return ["train", "--model", str(model), "--data", str(folder / "train.csv"), "--eval-data", str(folder / "eval.csv"),
            "--test-data", str(folder / "test.csv"), "--epochs", "3", "--batch-size", "6", "--grad-accum", "2",
            "--max-length", "32", "--lr", str(LR), "--seed", "0", "--class-weights", "balanced", "--eval-every", "3",
            "--log-every", "1", "--device", "cpu", "--no-progress", "--output", str(out), *extra]


def bertkit(*argv, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bertkit", *map(str, argv)], capture_output=True, text=True, env=ENV,
                          timeout=120, **kw)


def interrupt_after_first_checkpoint(argv) -> int:
    """Start a run, Ctrl-C it once its first checkpoint is on disk (it saves and stops), return its exit code."""
    proc = subprocess.Popen([sys.executable, "-m", "bertkit", *map(str, argv)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        for line in proc.stderr:
            if "checkpoint saved" in line:
                proc.send_signal(signal.SIGINT)
                break
        proc.stderr.read()
        return proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


LR, STEPS = 3e-3, 12


def assert_same_weights(a, b):
    """One process and two end with the same weights, up to what AdamW does with reduction-order noise.

    The all-reduce sums gradients in another order (~1e-7 relative). AdamW's update lr·m/(√v+eps)
    turns that into at most ~1e-5 for a gradient well above eps, but a component near zero can flip
    sign and move by up to lr a step. So: all but one in a thousand of each tensor's elements (at
    least one allowed) agree to 1e-5, and none differs by more than every step's full lr — while a
    broken sync (a rank's gradient lost or not averaged) changes nearly every element by about lr.
    """
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys()
    for name in wa:
        diff = (wb[name].double() - wa[name].double()).abs()
        close = diff <= 1e-5 + 1e-5 * wa[name].double().abs()
        assert int((~close).sum()) <= max(1, diff.numel() // 1000), name
        assert diff.max() <= 2 * LR * STEPS, name


@pytest.fixture(scope="module")
def runs(setup, tmp_path_factory):
    folder, model = setup
    out = tmp_path_factory.mktemp("ddp_runs")
    assert main(args(folder, model, out / "one")) == 0
    two = bertkit(*args(folder, model, out / "two", "--nproc", "2", "--json"))
    assert two.returncode == 0, two.stderr
    return out / "one", out / "two", two


def test_sharding_is_disjoint_equal_and_pads_with_zero_weight_repeats():
    batch = [10, 11, 12, 13, 14]
    parts = [shard(batch, r, 2) for r in range(2)]
    assert parts == [([10, 12, 14], 3), ([11, 13, 10], 2)]  # 10 repeated on rank 1, counted as not real
    real = [i for ix, n in parts for i in ix[:n]]
    assert sorted(real) == batch
    one = [shard([7], r, 4) for r in range(4)]
    assert one == [([7], 1), ([7], 0), ([7], 0), ([7], 0)]
    assert shard(batch, 0, 1) == (batch, 5)
    check_world_size(8, 4)
    check_world_size(None, 3)  # a token budget alone: batches are padded, nothing to refuse
    with pytest.raises(BertkitError, match="does not split evenly over 4"):
        check_world_size(6, 4)


def test_two_processes_end_with_the_weights_and_metrics_of_one(runs):
    one, two, proc = runs
    assert_same_weights(one, two)
    m1, m2 = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    for key in ("accuracy", "macro_f1", "confusion_matrix", "n", "step"):
        assert m1[key] == m2[key], key
        assert m1["test"][key if key != "step" else "n"] == m2["test"][key if key != "step" else "n"]
    assert m2["loss"] == pytest.approx(m1["loss"], rel=1e-5)
    r1, r2 = read_jsonl(one / "metrics.jsonl"), read_jsonl(two / "metrics.jsonl")
    assert [(r["step"], r["split"]) for r in r1] == [(r["step"], r["split"]) for r in r2]
    for a, b in zip(r1, r2):  # the train loss is summed over both ranks' shards: the global batch's
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5, abs=1e-6)
        if a["split"] == "train":
            assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4, abs=1e-6)
    assert json.loads((one / "training_record.json").read_text())["world_size"] == 1
    assert json.loads((two / "training_record.json").read_text())["world_size"] == 2
    payload = json.loads(proc.stdout)  # rank 0's result alone on stdout
    assert payload["steps"] == 12 and payload["output_dir"] == str(two)


def test_only_rank_zero_writes_and_speaks(runs):
    one, two, proc = runs
    records = read_jsonl(two / "metrics.jsonl")
    keys = [(r["step"], r["split"]) for r in records]
    assert len(keys) == len(set(keys))
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())
    evals = [line for line in proc.stderr.splitlines() if " eval loss=" in line]
    assert len(evals) == sum(1 for r in records if r["split"] == "eval")
    assert "Traceback" not in proc.stderr


def test_a_ddp_run_interrupted_resumes_on_one_process(setup, runs, tmp_path, capsys):
    folder, model = setup
    one, _, _ = runs
    out = tmp_path / "cut"
    code = interrupt_after_first_checkpoint(args(folder, model, out, "--save-every", "1", "--nproc", "2"))
    assert code == 130 and (out / "checkpoints").is_dir()
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0  # 2 processes -> 1: the same global batches
    assert "written by 2 process(es)" in capsys.readouterr().err
    assert_same_weights(one, out)


def test_a_one_process_run_interrupted_resumes_on_two(setup, runs, tmp_path):
    folder, model = setup
    one, _, _ = runs
    out = tmp_path / "cut"
    assert interrupt_after_first_checkpoint(args(folder, model, out, "--save-every", "1")) == 130
    resumed = bertkit("train", "--resume", out, "--nproc", "2", "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_weights(one, out)
    keys = [(r["step"], r["split"]) for r in read_jsonl(out / "metrics.jsonl")]
    assert keys == [(r["step"], r["split"]) for r in read_jsonl(one / "metrics.jsonl")]


@pytest.mark.parametrize("extra, message", [
    (["--nproc", "0"], "--nproc must be at least 1, not 0"),
    (["--nproc", "4"], "--batch-size 6 does not split evenly over 4 processes; use a multiple of 4"),
    (["--nproc", "2", "--device", "cuda:1"], "error: "),
])
def test_invalid_nproc_is_one_line(setup, tmp_path, capsys, extra, message):
    folder, model = setup
    if extra[-1] == "cuda:1" and torch.cuda.device_count() > 1:
        pytest.skip("a machine with two GPUs would accept the device")
    code = main(args(folder, model, tmp_path / "run", *extra))
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()  # refused before any process started or any file was written


def test_resuming_on_a_process_count_that_cannot_split_the_batch_is_refused(runs, capsys):
    _, two, _ = runs
    code = main(["train", "--resume", str(two), "--nproc", "4"])
    err = capsys.readouterr().err
    assert code == 2 and "the run's --batch-size 6 does not split evenly over 4 processes" in err
    assert len(err.strip().splitlines()) == 1


def test_a_diverging_ddp_run_stops_on_every_rank_with_one_line(setup, tmp_path):
    folder, model = setup
    argv = args(folder, model, tmp_path / "run", "--nproc", "2")
    argv[argv.index(str(LR))] = "1e30"  # the ranks agree on the first non-finite step and all stop there
    proc = bertkit(*argv)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(errors) == 1 and errors[0].startswith("error: --lr 1e+30 is likely too high: the training loss became NaN")
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_an_option_error_found_by_rank_zero_names_the_flag_under_torchrun(setup, tmp_path):
    folder, model = setup
    (tmp_path / "a-file").write_text("not a folder")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "bertkit", "train", "--model", str(model), "--data", str(folder / "train.csv"),
                           "--device", "cpu", "--output", str(tmp_path / "a-file")],
                          capture_output=True, text=True, env=ENV, timeout=120)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0 and errors == [f"error: --output '{tmp_path / 'a-file'}' is a file; pass a folder"], proc.stderr
