"""Masked-LM training end to end: `bertkit pretrain` learns a tiny repetitive corpus past the unigram baseline, saves a
BertForMaskedLM transformers loads with equal logits, fill-mask runs on it, a killed run resumes bit-identically, and
bad inputs get one line."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import bertkit
from bertkit.batching import pack
from bertkit.cli import main
from bertkit.pretrain import prepare_data
from bertkit.pretrain.recipe import pretrain_mlm
from bertkit.pretrain.training import MaskedLanguageModeling
from bertkit.train import TrainConfig, latest_checkpoint, load_training_state
from helpers import TINY_TERMS, assert_fp32_close, kill_after_first_checkpoint

# The same threads as the test process: the killed run's steps and the resumed ones must do the same arithmetic.
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
# Nine sentences that differ in two words: a model that reads the context beats token frequencies at once.
SENTENCES = [f"the {a} sat on the {b} ." for a in ("cat", "dog", "bird") for b in ("mat", "log", "rug")]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pretrain_text")
    (folder / "train.txt").write_text("\n".join(SENTENCES * 12) + "\n", encoding="utf-8")
    (folder / "eval.txt").write_text("\n".join(SENTENCES * 2) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def trained(tiny_base_dir, corpus, tmp_path_factory):
    """The tiny model without an MLM head, trained 16 steps on the corpus through the Python API."""
    out = tmp_path_factory.mktemp("pretrained") / "run"
    result = pretrain_mlm(tiny_base_dir, corpus / "train.txt", eval_data=corpus / "eval.txt", output_dir=out,
                          max_length=32, epochs=8, batch_size=16, lr=5e-3, warmup_ratio=0.0, seed=0, progress=False,
                          device="cpu")
    return result, out


def test_training_lowers_the_held_out_loss_below_the_unigram_baseline(trained):
    result, out = trained
    evals = [r for r in result.history if r["split"] == "eval"]
    assert len(evals) == 8 and evals[-1]["loss"] < evals[0]["loss"]
    final = result.metrics
    assert final["loss"] < final["unigram"]["loss"] and final["perplexity"] < final["unigram"]["perplexity"]
    assert final["masked_tokens"] == final["unigram"]["masked_tokens"] > 0
    train = [r for r in result.history if r["split"] == "train"]
    assert all(abs(r["perplexity"] - np.exp(r["loss"])) < 1e-6 * r["perplexity"] for r in train)
    record = json.loads((out / "training_record.json").read_text())
    assert record["objective"] == "masked-lm" and record["mlm_head"] == "new" and record["config"]["metric"] == "loss"
    assert record["masking"] == {"mask_prob": 0.15, "mask": "whole-word"}
    assert json.loads((out / "metrics.json").read_text())["selected_by"]["metric"] == "loss"
    assert (out / "mlm_curves.png").stat().st_size > 0 and (out / "training_curves.png").exists()
    assert not (out / "checkpoints").exists()


def test_the_output_is_a_bert_for_masked_lm_transformers_loads_with_equal_logits(trained):
    from transformers import BertForMaskedLM

    _, out = trained
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["BertForMaskedLM"]
    theirs = BertForMaskedLM.from_pretrained(out).eval()
    ours = bertkit.load(out, device="cpu")
    ids = ours.tokenize(["the dog sat on the [MASK] ."])[0].ids
    with torch.no_grad():
        expected = theirs(input_ids=torch.tensor([ids])).logits[0]
        batch = pack([ids], [[0] * len(ids)])
        got = ours.network.mlm_head(ours.network.encoder(batch))
    assert_fp32_close(got, expected, terms=TINY_TERMS, depth=5, what="MLM logits")


def test_fill_mask_runs_on_the_output(trained, capsys):
    _, out = trained
    assert main(["fill-mask", "--model", str(out), "the cat sat on the [MASK] .", "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert json.dumps(answer).count("token") > 0  # one ranked list of guesses, whatever its exact shape


def test_each_epoch_masks_afresh_and_the_loss_skips_ddp_repeats(tiny_mlm, corpus):
    data = prepare_data(tiny_mlm.tokenizer, corpus / "train.txt", max_length=32, limit=512, eval_fraction=0,
                        progress=False)
    objective = MaskedLanguageModeling(tiny_mlm, data, TrainConfig(batch_size=4, seed=0, metric="loss"), 0.15,
                                       "whole-word")
    stream = objective.batches(torch.Generator().manual_seed(0))
    indices = stream.plan(0)[0]
    first, again, later = stream.batch(indices, 0), stream.batch(indices, 0), stream.batch(indices, 1)
    assert torch.equal(first.positions, again.positions) and not torch.equal(first.positions, later.positions)
    # Counting a step's masked tokens masks its batches once; `batch` hands out those very ones.
    assert objective.weight(stream, [indices], 0) == first.num_masked
    # A DDP shard topped up with repeats: only the masked rows of its first `real` windows count.
    with torch.no_grad():
        logits = objective.module(tiny_mlm.network)(first)
        alone = stream.batch(indices[:2], 0)
        expected = objective.loss(objective.module(tiny_mlm.network)(alone), alone)
    assert torch.allclose(objective.loss(logits, first, real=2), expected, rtol=1e-5)


# -- resume ----------------------------------------------------------------------------------------
def cli_args(model, corpus, out):
    # 3 steps an epoch over 3 epochs; a checkpoint every 2 steps and a read-out every 3, so a kill after the first
    # checkpoint lands inside a read-out window.
    return ["pretrain", "--model", str(model), "--data", str(corpus / "train.txt"), "--eval-fraction", "0.2",
            "--max-length", "32", "--epochs", "3", "--batch-size", "8", "--lr", "5e-3", "--seed", "0",
            "--save-every", "2", "--log-every", "3", "--keep-checkpoints", "--device", "cpu", "--no-progress",
            "--output", str(out)]


def test_a_killed_run_resumes_bit_identically(tiny_base_dir, corpus, tmp_path, capsys):
    killed = tmp_path / "killed"
    kill_after_first_checkpoint(cli_args(tiny_base_dir, corpus, killed))
    state = load_training_state(latest_checkpoint(killed / "checkpoints"))["run"]
    assert 2 <= state["step"] and not state["finished"] and state["window_examples"] > 0

    assert main(["pretrain", "--resume", str(killed), "--no-progress", "--json"]) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert main(cli_args(tiny_base_dir, corpus, tmp_path / "straight") + ["--json"]) == 0
    straight = json.loads(capsys.readouterr().out)
    assert resumed["steps"] == straight["steps"] and resumed["metrics"] == straight["metrics"]
    ours, ref = load_file(killed / "model.safetensors"), load_file(tmp_path / "straight" / "model.safetensors")
    assert ours.keys() == ref.keys() and all(torch.equal(ours[k], ref[k]) for k in ours)
    keep = ("step", "split", "loss", "perplexity", "lr", "grad_norm", "top1", "top5")

    def records(folder):
        return [{k: r.get(k) for k in keep} for r in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines())]

    assert records(killed) == records(tmp_path / "straight")
    assert json.loads((killed / "training_record.json").read_text())["resumed_at_steps"] == [state["step"]]


# -- one-line errors ---------------------------------------------------------------------------------
def one_line_error(capsys, argv):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err and len(err.splitlines()) == 1 and err.startswith("error:"), err
    return err


def test_bad_inputs_are_one_line_errors_that_leave_no_folder(tiny_base_dir, corpus, tmp_path, capsys):
    (tmp_path / "blank.txt").write_text("\n  \n\n", encoding="utf-8")
    (tmp_path / "numbers.jsonl").write_text('{"text": 1}\n{"text": 2}\n', encoding="utf-8")
    base = ["pretrain", "--model", str(tiny_base_dir), "--no-progress", "--device", "cpu"]
    good = ["--data", str(corpus / "train.txt")]
    cases = [
        (["--data", str(tmp_path / "blank.txt")], "blank"),
        (["--data", str(tmp_path / "numbers.jsonl")], "not a string"),
        (good + ["--mask-prob", "0"], "--mask-prob"),
        (good + ["--mask-prob", "1.5"], "--mask-prob"),
        (good + ["--max-length", "1000"], "--max-length"),
        (good + ["--mask", "span"], "--mask"),
        (good + ["--metric", "accuracy"], "--metric"),  # classification's: not a pretrain flag
    ]
    for i, (extra, word) in enumerate(cases):
        out = tmp_path / f"out{i}"
        err = one_line_error(capsys, base + extra + ["--output", str(out)])
        assert word in err, err
        assert not out.exists(), err
    with pytest.raises(bertkit.BertkitError, match="metric"):
        pretrain_mlm(tiny_base_dir, corpus / "train.txt", metric="accuracy")


# -- data-parallel -----------------------------------------------------------------------------------
def test_two_gloo_processes_train_as_one(minilm_dir, corpus, tmp_path, capsys):
    """`--nproc 2` (torchrun, gloo) ends where one process does: the same masked tokens, the loss of every global
    batch, and weights equal up to the reduction-order noise AdamW can amplify (see test_ddp.assert_same_weights)."""
    from helpers import write_tiny

    model = write_tiny("base", tmp_path / "tiny", minilm_dir, seed=3, hidden_dropout_prob=0.0,
                       attention_probs_dropout_prob=0.0)
    lr, argv = 5e-3, ["pretrain", "--model", str(model), "--data", str(corpus / "train.txt"), "--eval-fraction", "0.2",
                      "--max-length", "32", "--max-steps", "4", "--batch-size", "6", "--lr", "5e-3", "--seed", "0",
                      "--log-every", "1", "--eval-every", "2", "--device", "cpu", "--no-progress"]
    assert main(argv + ["--output", str(tmp_path / "one")]) == 0
    two = subprocess.run([sys.executable, "-m", "bertkit", *argv, "--output", str(tmp_path / "two"), "--nproc", "2",
                          "--json"], capture_output=True, text=True, env=dict(ENV, OMP_NUM_THREADS="1"), timeout=300)
    assert two.returncode == 0, two.stderr
    r1, r2 = (list(map(json.loads, (tmp_path / d / "metrics.jsonl").read_text().splitlines())) for d in ("one", "two"))
    assert [(r["step"], r["split"]) for r in r1] == [(r["step"], r["split"]) for r in r2]
    for a, b in zip(r1, r2):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-5)
        if a["split"] == "eval":
            assert (b["masked_tokens"], b["unigram"]) == (a["masked_tokens"], a["unigram"])
    w1, w2 = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    for name in w1:
        diff = (w2[name].double() - w1[name].double()).abs()
        assert int((diff > 1e-5 + 1e-5 * w1[name].double().abs()).sum()) <= max(1, diff.numel() // 1000), name
        assert diff.max() <= 2 * lr * 4, name
    assert json.loads(two.stdout)["steps"] == 4
