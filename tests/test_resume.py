"""Resume: a run killed with SIGKILL mid-epoch and resumed ends with the weights and the metrics.jsonl of a run never interrupted."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from bertkit.cli import main
from bertkit.options import specs
from bertkit.train import TrainConfig, latest_checkpoint, load_training_state
from bertkit.train.config import resume_conflicts
from bertkit.train.launch import RUN_OPTIONS
from helpers import kill_after_first_checkpoint, sentiment_rows


@pytest.fixture(scope="module")
def data_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resume_data")
    for name, n, seed in (("train.csv", 96, 30), ("eval.csv", 24, 31)):
        rows = sentiment_rows(n, seed)
        pd.DataFrame({"text": [t for t, _ in rows], "label": [y for _, y in rows]}).to_csv(folder / name, index=False)
    return folder


def train_args(model_dir, data, out):
    # 12 steps per epoch; a checkpoint every 3 steps and a loss read-out every 5: a kill after a checkpoint lands
    # inside a read-out window (steps 1-5 or 6-10), whose loss the resumed run must still log as the straight run does.
    return ["train", "--model", str(model_dir), "--data", str(data / "train.csv"), "--eval-data", str(data / "eval.csv"),
            "--epochs", "3", "--batch-size", "8", "--max-length", "32", "--lr", "5e-3", "--seed", "0",
            "--save-every", "3", "--log-every", "5", "--keep-checkpoints", "--device", "cpu", "--no-progress",
            "--output", str(out)]


def numbers(records):
    keep = ("step", "epoch", "split", "loss", "lr", "grad_norm", "accuracy", "macro_f1")
    return [{k: r.get(k) for k in keep} for r in records]


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_killed_run_resumes_to_the_same_weights(tiny_base_dir, data_files, tmp_path, capsys):
    killed = tmp_path / "killed"
    kill_after_first_checkpoint(train_args(tiny_base_dir, data_files, killed))
    assert not (killed / "metrics.json").exists()  # it really died before the end
    state = load_training_state(latest_checkpoint(killed / "checkpoints"))["run"]
    assert 3 <= state["step"] < 36 and not state["finished"]
    assert state["window_examples"] > 0  # killed between two read-outs: the window spans the kill

    assert main(["train", "--resume", str(killed), "--no-progress", "--json"]) == 0
    resumed_out = json.loads(capsys.readouterr().out)
    assert main(train_args(tiny_base_dir, data_files, tmp_path / "straight") + ["--json"]) == 0
    straight_out = json.loads(capsys.readouterr().out)

    assert resumed_out["steps"] == straight_out["steps"] == 36
    for name in ("model.safetensors",):
        ours = load_file(killed / name)
        ref = load_file(tmp_path / "straight" / name)
        for key in ref:
            assert torch.equal(ours[key], ref[key]), key  # the same ops on the same machine: bit for bit
    last_killed = load_file(latest_checkpoint(killed / "checkpoints") / "model.safetensors")
    last_straight = load_file(latest_checkpoint(tmp_path / "straight" / "checkpoints") / "model.safetensors")
    for key in last_straight:  # the last weights, not only the best ones
        assert torch.equal(last_killed[key], last_straight[key]), key
    # Same batches in the same order with the same dropout: every logged number matches, the loss of the read-out
    # window that spans the kill included (its sum so far is saved in the checkpoint and carried on).
    killed_records, straight_records = read_jsonl(killed / "metrics.jsonl"), read_jsonl(tmp_path / "straight" / "metrics.jsonl")
    spanning = next(r for r in straight_records if r["split"] == "train" and r["step"] > state["step"])
    assert spanning["step"] - 5 < state["step"]
    assert numbers(killed_records) == numbers(straight_records)
    record = json.loads((killed / "training_record.json").read_text())
    assert record["resumed_at_steps"] == [state["step"]]
    assert resumed_out["metrics"]["accuracy"] == straight_out["metrics"]["accuracy"]


def test_resume_refuses_other_settings_and_empty_folders(tiny_base_dir, data_files, tmp_path, capsys):
    out = tmp_path / "run"
    args = train_args(tiny_base_dir, data_files, out)
    args[args.index("3")] = "1"  # one epoch is enough here
    assert main(args) == 0
    capsys.readouterr()
    # Everything a resume compares is saved: every run option, and the whole TrainConfig in each checkpoint.
    saved = json.loads((out / "training_arguments.json").read_text())
    assert {s.name for cls in RUN_OPTIONS for s in specs(cls)} <= saved.keys()
    checkpoint = load_training_state(latest_checkpoint(out / "checkpoints"))
    assert checkpoint["config"].keys() == {s.name for s in specs(TrainConfig)}
    # Make it look unfinished: drop the final files but keep the checkpoints.
    (out / "training_record.json").unlink()
    (out / "model.safetensors").unlink()
    code = main(["train", "--resume", str(out), "--lr", "1e-3"])
    err = capsys.readouterr().err
    assert code == 2 and "--lr" in err and "differ" in err
    code = main(["train", "--resume", str(tmp_path / "nothing")])
    assert code == 2 and "no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    code = main(["train", "--resume", str(tmp_path / "empty")])
    assert code == 2 and "training_arguments.json" in capsys.readouterr().err
    code = main(args)  # a fresh start over an unfinished run must be explicit
    assert code == 2 and "--resume" in capsys.readouterr().err
    # How the run is watched may change; it finishes with the settings it was started with.
    assert main(["train", "--resume", str(out), "--log-every", "2", "--no-progress", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 12


def test_every_run_option_is_either_resumable_or_compared():
    """No field escapes the resume rule: each is listed as resumable, or a change to it is refused (a new one too)."""
    names = [s.name for cls in RUN_OPTIONS for s in specs(cls)]
    assert set(TrainConfig.RESUMABLE_CHANGES) <= set(names)  # no stale name in the rule
    saved = {name: object() for name in names}
    for name in names:
        changed = resume_conflicts(saved, {name: "another value"})
        assert changed == ([] if name in TrainConfig.RESUMABLE_CHANGES else [name]), name
