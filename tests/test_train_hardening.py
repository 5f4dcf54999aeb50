"""Training hardening: non-finite settings and losses, strict JSON, huge epoch counts, seeds, exact limits, output paths, evaluate's flags."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading

import pandas as pd
import pytest
import torch

import bertkit
from bertkit.cli import build_parser, main
from bertkit.data import TextDataset
from bertkit.errors import OptionError
from bertkit.train import BatchStream, TrainConfig, Trainer, evaluate_model, finetune, stratified_subset
from bertkit.train.jsonout import finite, jsonl, write_json
from bertkit.train.launch import SessionOptions, given_options, worker_argv
from bertkit.train.trainer import MAX_PLANNED_EXAMPLES, planned_steps
from helpers import FAST, dataset, sentiment_rows

ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> bool:
    return err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


def strict_json(text: str):
    """json.loads that fails on NaN / Infinity, as strict JSON readers do."""
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def write_csv(path, rows):
    pd.DataFrame({"text": [t for t, _ in rows], "label": [y for _, y in rows]}).to_csv(path, index=False)
    return path


@pytest.fixture()
def tiny(tiny_base_dir):
    return bertkit.load(tiny_base_dir, device="cpu")


@pytest.fixture(scope="module")
def csv(tmp_path_factory):
    return write_csv(tmp_path_factory.mktemp("hardening") / "d.csv", sentiment_rows(40, 50))


# -- non-finite settings and losses ----------------------------------------------------------------
@pytest.mark.parametrize("flag, value", [("--lr", "inf"), ("--weight-decay", "nan"), ("--max-grad-norm", "inf"),
                                         ("--warmup-ratio", "nan"), ("--threshold", "inf")])
def test_non_finite_settings_are_refused_before_any_work(tiny_base_dir, csv, tmp_path, capsys, flag, value):
    try:  # refused while the flags are parsed: the value never reaches training
        code = main(["train", "--model", str(tiny_base_dir), "--data", str(csv), flag, value, "--output", str(tmp_path / "o")])
    except SystemExit as e:  # argparse's own way of saying it
        code = e.code
    assert code == 2 and f"{flag}: must be a finite number, not '{value}'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_non_finite_settings_are_refused_from_python(tiny):
    with pytest.raises(OptionError, match="^lr must be a finite number, not inf$"):
        TrainConfig(lr=math.inf)
    with pytest.raises(OptionError, match="^weight_decay must be a finite number"):
        finetune(tiny, _frame(sentiment_rows(20, 51)), weight_decay=math.nan)


def test_a_diverging_run_stops_at_the_step_with_one_line_and_keeps_nothing_from_it(tiny_base_dir, csv, tmp_path, capsys):
    out = tmp_path / "run"
    # lr 1e30 leaves the first steps' losses finite and overflows the network within a few steps.
    code, stdout, err = run(capsys, "train", "--model", tiny_base_dir, "--data", csv, "--epochs", "2", "--batch-size", "8",
                            "--lr", "1e30", "--max-length", "24", "--log-every", "1", "--save-every", "1",
                            "--keep-checkpoints", "--device", "cpu", "--no-progress", "--output", out, "--json")
    assert code == 2 and stdout == ""  # no JSON result for a run that failed
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: --lr 1e+30 is likely too high: the training loss became NaN or infinite at step ")
    assert "try a lower value" in last and "Traceback" not in err
    bad_step = int(last.split(" at step ")[1].split(",")[0])
    records = [strict_json(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # Every step before it logged (a read-out per step), none from it on.
    assert [r["step"] for r in records if r["split"] == "train"] == list(range(1, bad_step))
    assert all(math.isfinite(r["loss"]) for r in records)
    states = [torch.load(p / "training_state.pt", weights_only=True)["run"]["step"]
              for p in (out / "checkpoints").iterdir() if p.name.startswith("checkpoint-")]
    assert states and max(states) < bad_step
    assert not (out / "model.safetensors").exists() and not (out / "metrics.json").exists()
    assert "(best)" not in err


def test_a_non_finite_loss_is_never_evaluated_or_selected_as_best(tiny):
    train, evaluation = dataset(sentiment_rows(32, 52)), dataset(sentiment_rows(16, 53))
    lines = []
    trainer = Trainer(tiny, train, evaluation, TrainConfig(epochs=3, eval_every=1, log_every=4,
                                                           **{**FAST, "lr": 1e30, "batch_size": 8}),
                      progress=False, log=lines.append)
    with pytest.raises(OptionError) as error:
        trainer.fit()
    assert error.value.param == "lr" and "became NaN or infinite at step" in error.value.problem
    assert all("nan" not in line.lower() for line in lines)


# -- JSON ------------------------------------------------------------------------------------------
def test_json_writers_refuse_non_finite_numbers(tmp_path):
    with pytest.raises(ValueError):
        write_json(tmp_path / "x.json", {"loss": math.nan})
    with pytest.raises(ValueError):
        jsonl([{"loss": math.inf}])
    assert not (tmp_path / "x.json").exists()
    assert finite({"a": [1.0, math.nan, (math.inf, 2)], "b": -math.inf, "c": "nan"}) == {"a": [1.0, None, [None, 2]],
                                                                                          "b": None, "c": "nan"}


def test_evaluating_a_broken_checkpoint_reports_null_not_nan(tiny_cls_dir, tmp_path, capsys):
    model = bertkit.load(tiny_cls_dir, device="cpu")
    with torch.no_grad():
        model.network.classifier.linear.weight.fill_(math.nan)
    model.save(tmp_path / "broken")
    rows = [(f"a text {i}", label) for i, label in enumerate(["negative", "neutral", "positive"] * 4)]
    data = write_csv(tmp_path / "d.csv", rows)
    code, out, _ = run(capsys, "evaluate", "--model", tmp_path / "broken", "--data", data, "--device", "cpu", "--json",
                       "--output-dir", tmp_path / "report")
    assert code == 0 and strict_json(out)["loss"] is None
    assert strict_json((tmp_path / "report" / "evaluation.json").read_text())["loss"] is None
    predictions = [strict_json(line) for line in (tmp_path / "report" / "predictions.jsonl").read_text().splitlines()]
    assert len(predictions) == 12 and all(v is None for p in predictions for v in p["scores"].values())


# -- huge epoch counts -----------------------------------------------------------------------------
def lengths_stream(lengths, **kw):
    class Enc:  # BatchStream needs only len() of an encoding to plan
        def __init__(self, n):
            self.n = n

        def __len__(self):
            return self.n

    return BatchStream([Enc(n) for n in lengths], shuffle=True, generator=torch.Generator().manual_seed(0), **kw)


def test_a_huge_epoch_count_is_planned_without_visiting_every_epoch():
    stream = lengths_stream([5, 9, 7, 30, 12] * 20, batch_size=8)  # 100 examples: 13 batches in every epoch
    assert stream.same_count_every_epoch
    assert planned_steps(TrainConfig(epochs=10**9, batch_size=8, grad_accum=2), stream) == 10**9 * 7
    budget = lengths_stream([5, 9, 7, 30, 12] * 20, batch_tokens=64)
    assert not budget.same_count_every_epoch
    assert planned_steps(TrainConfig(epochs=3, batch_tokens=64), budget) == sum(budget.num_batches(e) for e in range(3))
    most = MAX_PLANNED_EXAMPLES // 100
    with pytest.raises(OptionError, match=f"^epochs {10**9} is too many to plan with a token budget.* at most {most};"):
        planned_steps(TrainConfig(epochs=10**9, batch_tokens=64), budget)


def test_a_huge_epoch_count_starts_at_once(tiny):
    train, evaluation = dataset(sentiment_rows(32, 54)), dataset(sentiment_rows(8, 55))

    class Reached(Exception):
        pass

    said = []

    def log(line):
        said.append(line)
        raise Reached  # the first evaluation line: the run has started; stop it there

    trainer = Trainer(tiny, train, evaluation, TrainConfig(epochs=10**9, eval_every=1, **FAST), progress=False, log=log)
    outcome = []
    # In a thread, so that a planner that visits every epoch fails this test instead of hanging the suite.
    worker = threading.Thread(target=lambda: outcome.append(_raised(trainer.fit)), daemon=True)
    worker.start()
    worker.join(timeout=300)
    assert outcome == [Reached] and said[0].startswith("step 1 epoch 0.")


def test_a_huge_epoch_count_under_a_token_budget_fails_at_once_with_one_line(tiny_base_dir, csv, tmp_path):
    # A process of its own, so that the old behaviour (planning 10**9 epochs) times out instead of hanging.
    proc = subprocess.run([sys.executable, "-m", "bertkit", "train", "--model", str(tiny_base_dir), "--data", str(csv),
                           "--epochs", "1000000000", "--batch-tokens", "256", "--device", "cpu", "--no-progress",
                           "--output", str(tmp_path / "o")], capture_output=True, text=True, env=ENV, timeout=300)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert last.startswith("error: --epochs 1000000000 is too many to plan with a token budget") and "max steps" in last
    assert not (tmp_path / "o" / "checkpoints").exists()


# -- seeds and limits ------------------------------------------------------------------------------
def test_a_negative_seed_is_refused(capsys, tmp_path):
    # The model does not exist: the seed is refused before anything is loaded.
    code, _, err = run(capsys, "train", "--model", tmp_path / "no-model", "--data", "rotten_tomatoes", "--seed", "-1",
                       "--output", tmp_path / "o")
    assert code == 2 and one_line(err) and "--seed must be at least 0, not -1" in err
    with pytest.raises(OptionError, match="^seed must be at least 0"):
        TrainConfig(seed=-1)


def test_a_limit_is_exact_and_keeps_every_class():
    ds = TextDataset([f"t{i}" for i in range(100)], [0] * 95 + [1] * 3 + [2] * 2, ["a", "b", "c"], source="skewed")
    for n in range(3, 100):
        sub = stratified_subset(ds, n, seed=n)
        assert len(sub) == n and min(sub.label_counts().values()) >= 1, n
        assert sub.row_ids == sorted(sub.row_ids)  # original order kept
    with pytest.raises(OptionError, match="^limit 2 is too small: .* each of the 3 classes of skewed; use at least 3$"):
        stratified_subset(ds, 2)
    with pytest.raises(OptionError, match="^eval_limit 1 is too small"):
        stratified_subset(ds, 1, param="eval_limit")
    assert stratified_subset(ds, 100) is ds


def test_limit_one_is_refused_on_the_command_line(tiny_base_dir, csv, tmp_path, capsys):
    code, _, err = run(capsys, "train", "--model", tiny_base_dir, "--data", csv, "--limit", "1", "--device", "cpu",
                       "--no-progress", "--output", tmp_path / "o")
    assert code == 2 and one_line(err)
    assert "--limit 1 is too small" in err and "use at least 2" in err
    assert not (tmp_path / "o").exists()  # refused before the run wrote anything: no folder left behind


# -- output paths ----------------------------------------------------------------------------------
def output_cases(tmp_path):
    afile = tmp_path / "a-file"
    afile.write_text("not a folder")
    cases = [(afile, "is a file"), (afile / "sub", "which is a file, not a folder")]
    if os.path.isdir("/proc/self"):  # a folder no one can create anything in, even root
        cases.append(("/proc/bertkit-no-such-place", "cannot create folder"))
    return cases


def test_bad_output_folders_fail_in_one_line_before_any_work(tmp_path, capsys):
    for path, problem in output_cases(tmp_path):
        # The model does not exist either: the output folder is checked first.
        code, _, err = run(capsys, "train", "--model", tmp_path / "no-model", "--data", "rotten_tomatoes",
                           "--output", path)
        assert code == 2 and one_line(err) and err.startswith("error: --output ") and repr(str(path)) in err, err
        assert problem in err
        code, _, err = run(capsys, "evaluate", "--model", tmp_path / "no-model", "--data", "rotten_tomatoes",
                           "--output-dir", path)
        assert code == 2 and one_line(err) and err.startswith("error: --output-dir ") and repr(str(path)) in err, err
        assert problem in err
    code, _, err = run(capsys, "train", "--resume", tmp_path / "a-file")
    assert code == 2 and one_line(err) and "--resume" in err


def test_bad_output_folders_name_the_python_parameter(tiny, tmp_path):
    for path, problem in output_cases(tmp_path):
        for call in (lambda: finetune(tiny, _frame(sentiment_rows(20, 56)), output_dir=path, **FAST),
                     lambda: evaluate_model(tiny, _frame(sentiment_rows(20, 56)), output_dir=path)):
            with pytest.raises(OptionError) as error:
                call()
            message = str(error.value)
            assert message.startswith("output_dir ") and repr(str(path)) in message and problem in message


# -- the README's workflow, and evaluate's flags ---------------------------------------------------
@pytest.fixture(scope="module")
def rt_run(tiny_base_dir, tmp_path_factory):
    """The README's `bertkit train --data rotten_tomatoes ... --output runs/rt`, made small."""
    out = tmp_path_factory.mktemp("readme") / "rt"
    assert main(["train", "--model", str(tiny_base_dir), "--data", "rotten_tomatoes", "--limit", "40", "--eval-limit", "20",
                 "--epochs", "1", "--batch-size", "8", "--max-length", "32", "--device", "cpu", "--no-progress",
                 "--output", str(out)]) == 0
    return out


def test_the_readme_evaluates_the_held_out_rows_of_a_built_in_dataset(rt_run, capsys):
    code, out, _ = run(capsys, "evaluate", "--model", rt_run, "--data", "rotten_tomatoes", "--split", "eval", "--json")
    report = strict_json(out)
    metrics = json.loads((rt_run / "metrics.json").read_text())
    assert code == 0 and report["n"] == metrics["n"] == 20 and report["accuracy"] == pytest.approx(metrics["accuracy"])
    code, _, err = run(capsys, "evaluate", "--model", rt_run, "--data", "rotten_tomatoes", "--split", "test")
    assert code == 2 and one_line(err)
    assert "no 'test' split (a run keeps a 'test' split only when trained with --test-data); choose one of train, eval" in err


def test_evaluate_accepts_the_drop_invalid_it_suggests(rt_run, tmp_path, capsys):
    rows = [("a fine film", "fresh"), ("", "rotten"), ("so dull", "rotten"), ("lovely", "fresh")]
    data = write_csv(tmp_path / "holes.csv", rows)
    code, _, err = run(capsys, "evaluate", "--model", rt_run, "--data", data)
    assert code == 2 and one_line(err) and "--drop-invalid" in err
    code, out, err = run(capsys, "evaluate", "--model", rt_run, "--data", data, "--drop-invalid", "--json")
    assert code == 0 and strict_json(out)["n"] == 3 and "dropped 1 invalid row" in err


# -- workers' command line -------------------------------------------------------------------------
def test_the_workers_command_line_is_rebuilt_from_the_options():
    parser = build_parser()
    argv = ["train", "--data=-odd-name.csv", "--test-size", "500", "--lr", "3e-05", "--max-grad-norm", "0",
            "--multi-label", "--class-weights", "balanced", "--metric", "loss", "--seed", "7", "--device", "cpu",
            "--no-progress", "--nproc", "2", "-o", "runs/x"]
    args = parser.parse_args(argv)
    given, session = given_options(vars(args)), SessionOptions(**{k: getattr(args, k) for k in ("device", "no_progress",
                                                                                               "output")})
    rebuilt = worker_argv(given, session)
    assert "--nproc" not in " ".join(rebuilt)
    again = parser.parse_args(["train", *rebuilt])
    assert given_options(vars(again)) == given and isinstance(given["test_size"], int)
    assert (again.device, again.no_progress, again.output) == ("cpu", True, "runs/x")


def _frame(rows):
    return pd.DataFrame({"text": [t for t, _ in rows], "label": [y for _, y in rows]})


def _raised(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the test looks at which one
        return type(e)
    return None
