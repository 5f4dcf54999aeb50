"""`bertkit train`, `bertkit evaluate`, `bertkit datasets`: outputs, files, label mapping and one-line errors."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from bertkit.cli import main
from helpers import sentiment_rows


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def write_csv(path, rows, text="review", label="verdict"):
    pd.DataFrame({text: [t for t, _ in rows], label: [y for _, y in rows]}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def trained(tiny_base_dir, tmp_path_factory):
    """One small run from a CSV with its own column names and string labels; no eval file, so a split."""
    folder = tmp_path_factory.mktemp("cli_train")
    data = write_csv(folder / "reviews.csv", sentiment_rows(64, 40, names=("rotten", "fresh")))
    out = folder / "run"
    code = main(["train", "--model", str(tiny_base_dir), "--data", str(data), "--text-column", "review",
                 "--label-column", "verdict", "--epochs", "2", "--batch-size", "8", "--lr", "5e-3", "--max-length", "32",
                 "--test-size", "0.25", "--seed", "3", "--device", "cpu", "--no-progress", "--output", str(out)])
    assert code == 0
    return out, data


def test_datasets_lists_builtins_with_sizes_and_labels(capsys):
    code, out, _ = run(capsys, "datasets", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert code == 0 and {"rotten_tomatoes", "sms_spam", "trec"} <= rows.keys()
    assert rows["rotten_tomatoes"]["rows"] > 10_000 and rows["rotten_tomatoes"]["label_names"] == ["rotten", "fresh"]
    assert sum(rows["trec"]["label_counts"].values()) == rows["trec"]["rows"]
    code, out, _ = run(capsys, "datasets")
    assert code == 0 and "rotten_tomatoes" in out and "spam (" in out and "bertkit train --data NAME" in out


def test_train_writes_the_run_folder_and_keeps_label_names(trained):
    out, _ = trained
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "fresh", "1": "rotten"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 16 and {"accuracy", "macro_f1", "loss"} <= metrics.keys()
    record = json.loads((out / "training_record.json").read_text())
    assert record["arguments"]["text_column"] == "review" and record["arguments"]["seed"] == 3
    assert record["split"]["method"] == "stratified" and record["data"]["train"]["rows"] == 48
    assert record["command"]
    for name in ("training_curves.png", "confusion_matrix.png", "metrics.jsonl", "tokenizer.json", "split.json"):
        assert (out / name).exists(), name


def test_train_json_and_human_output(tiny_base_dir, tmp_path, capsys):
    data = write_csv(tmp_path / "d.csv", sentiment_rows(40, 41), text="text", label="label")
    code, out, err = run(capsys, "train", "--model", tiny_base_dir, "--data", data, "--epochs", "1", "--batch-size", "8",
                         "--max-length", "24", "--device", "cpu", "--no-progress", "--output", tmp_path / "a", "--json")
    payload = json.loads(out)
    assert code == 0 and payload["steps"] == 5 and payload["metrics"]["n"] == 4
    assert payload["output_dir"] == str(tmp_path / "a") and payload["timings"]["train_s"] > 0
    assert "eval loss=" in err  # evaluation lines go to stderr, the result to stdout
    code, out, _ = run(capsys, "train", "--model", tiny_base_dir, "--data", data, "--epochs", "1", "--batch-tokens", "256",
                       "--device", "cpu", "--no-progress", "--output", tmp_path / "b")
    assert code == 0 and "accuracy=" in out and "confusion matrix" in out and f"model saved to {tmp_path / 'b'}" in out


def test_evaluate_reproduces_the_held_out_score_and_writes_a_report(trained, capsys, tmp_path):
    out, data = trained
    metrics = json.loads((out / "metrics.json").read_text())
    code, stdout, _ = run(capsys, "evaluate", "--model", out, "--data", data, "--text-column", "review",
                          "--label-column", "verdict", "--split", "eval", "--json", "--output-dir", tmp_path / "rep")
    report = json.loads(stdout)
    assert code == 0 and report["n"] == metrics["n"]
    assert report["accuracy"] == pytest.approx(metrics["accuracy"]) and report["loss"] == pytest.approx(metrics["loss"], rel=1e-4)
    assert report["confusion_matrix"] == metrics["confusion_matrix"]
    for name in ("evaluation.json", "predictions.jsonl", "confusion_matrix.png"):
        assert (tmp_path / "rep" / name).exists()
    code, stdout, err = run(capsys, "evaluate", "--model", out, "--data", data, "--text-column", "review",
                            "--label-column", "verdict")
    assert code == 0 and "accuracy=" in stdout and "precision" in stdout
    assert "were in this model's training split" in err  # scoring on training rows is flagged


def test_evaluate_unknown_label_is_a_one_line_error(trained, tmp_path, capsys):
    out, _ = trained
    bad = write_csv(tmp_path / "bad.csv", [("a fine film", "fresh"), ("so so", "meh")], text="text", label="label")
    code, _, err = run(capsys, "evaluate", "--model", out, "--data", bad)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "unknown label 'meh'" in err


def test_strict_fails_on_label_sorted_data_and_warns_without(tiny_base_dir, tmp_path, capsys):
    rows = sorted(sentiment_rows(60, 42), key=lambda r: r[1])
    data = write_csv(tmp_path / "sorted.csv", rows, text="text", label="label")
    evaluation = write_csv(tmp_path / "eval.csv", [r for r in sentiment_rows(10, 43) if r[1] == "pos"], "text", "label")
    args = ["train", "--model", tiny_base_dir, "--data", data, "--eval-data", evaluation, "--epochs", "1",
            "--batch-size", "8", "--max-length", "24", "--device", "cpu", "--no-progress"]
    code, _, err = run(capsys, *args, "--strict", "--output", tmp_path / "s")
    assert code == 2 and err.startswith("error: --strict:") and err.count("\n") == 1
    assert not (tmp_path / "s" / "model.safetensors").exists()
    code, _, err = run(capsys, *args, "--output", tmp_path / "w")
    assert code == 0 and "warning: DATA CHECK:" in err and "sorted by label" in err and "single class" in err


def test_train_argument_errors(tiny_base_dir, tmp_path, capsys):
    code, _, err = run(capsys, "train", "--model", tiny_base_dir, "--output", tmp_path / "x")
    assert code == 2 and "--data" in err
    code, _, err = run(capsys, "train", "--model", tiny_base_dir, "--data", "no_such_dataset", "--output", tmp_path / "x")
    assert code == 2 and "rotten_tomatoes" in err
    data = write_csv(tmp_path / "d.csv", sentiment_rows(20, 44), text="text", label="label")
    code, _, err = run(capsys, "train", "--model", tiny_base_dir, "--data", data, "--label-column", "nope",
                       "--output", tmp_path / "x", "--device", "cpu")
    assert code == 2 and "nope" in err and "--label-column" in err
    code, _, err = run(capsys, "train", "--model", tiny_base_dir, "--data", data, "--lr", "-1", "--output", tmp_path / "x")
    assert code == 2 and "--lr" in err


# The flags of `bertkit train` before they were derived from the option dataclasses: none may change name.
TRAIN_FLAGS = ("--model", "-m", "--data", "--text-column", "--label-column", "--pair-column", "--eval-data", "--test-data",
               "--test-size", "--limit", "--eval-limit", "--multi-label", "--drop-invalid", "--strict", "--epochs",
               "--max-steps", "--lr", "--batch-size", "--batch-tokens", "--max-length", "--bucket-size", "--warmup-ratio",
               "--weight-decay", "--grad-accum", "--max-grad-norm", "--seed", "--class-weights", "--threshold", "--metric",
               "--patience", "--eval-every", "--save-every", "--log-every", "--output", "-o", "--resume", "--overwrite",
               "--keep-checkpoints", "--device", "--no-progress", "--nproc", "--json")


def test_train_help_shows_every_flag_with_the_default_its_option_declares(capsys, monkeypatch):
    from bertkit.options import specs
    from bertkit.train import TrainArguments, TrainConfig
    from bertkit.train.launch import ParallelOptions, SessionOptions

    monkeypatch.setenv("COLUMNS", "400")  # one line per flag: nothing wrapped mid-word
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    shown = {word.rstrip(",") for line in text.splitlines() for word in line.split() if word.startswith("-")}
    assert set(TRAIN_FLAGS) <= shown
    for cls in (TrainArguments, TrainConfig, SessionOptions, ParallelOptions):
        for spec in specs(cls):
            if spec.cli:
                default = spec.describe_default()
                assert spec.help + (f" (default: {default})" if default else "") in text, spec.name


def test_test_size_takes_a_fraction_or_a_row_count(tiny_base_dir, tmp_path, capsys):
    data = write_csv(tmp_path / "d.csv", sentiment_rows(40, 45), text="text", label="label")
    common = ["train", "--model", tiny_base_dir, "--data", data, "--epochs", "1", "--batch-size", "8", "--max-length", "24",
              "--device", "cpu", "--no-progress", "--json"]
    code, out, _ = run(capsys, *common, "--test-size", "10", "--output", tmp_path / "count")
    assert code == 0 and json.loads(out)["metrics"]["n"] == 10
    code, out, _ = run(capsys, *common, "--test-size", "0.25", "--output", tmp_path / "share")
    assert code == 0 and json.loads(out)["metrics"]["n"] == 10
    code, _, err = run(capsys, *common, "--test-size", "1.5", "--output", tmp_path / "bad")
    assert code == 2 and err.startswith("error: --test-size must be a fraction below 1") and err.count("\n") == 1
