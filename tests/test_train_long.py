"""Training on long documents: split documents, then window them; windows train with their document's label; evaluation
aggregates per document; the model keeps its strategy and predict and evaluate use it."""
from __future__ import annotations

import json
import random

import pandas as pd
import pytest
import torch

import bertkit
from bertkit.cli import main
from bertkit.data import TextDataset
from bertkit.errors import OptionError
from bertkit.options import specs
from bertkit.tasks.base import documents
from bertkit.train import TrainConfig, Trainer, evaluate_model
from bertkit.train.batches import window_dataset
from bertkit.train.config import defaults, resume_conflicts
from bertkit.windows import LongOptions, Plan, weights
from helpers import FILLER

POS = ["great", "wonderful", "excellent", "superb"]
NEG = ["terrible", "awful", "boring", "dreadful"]
WINDOW, STRIDE = 24, 4  # 22 text tokens a window: most documents below need two to five
LONG_TEXT = "the film was quite a story " * 120  # 720 word pieces: over the 512 a model reads at once


def documents_rows(n: int, seed: int) -> list[tuple[str, str]]:
    """Documents of 8 to 80 filler words with a few label words spread through them; a few fit in one window."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = [rng.choice(FILLER) for _ in range(rng.choice([8, 30, 50, 80]))]
        for _ in range(3):
            words.insert(rng.randrange(len(words) + 1), rng.choice(POS if label else NEG))
        rows.append((" ".join(words) + f" doc{i}", ("neg", "pos")[label]))
    return rows


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def windows_of(model, texts: list[str], limit: int = WINDOW, **plan) -> list:
    return documents(model, texts, None, limit, Plan(**plan))


@pytest.fixture(scope="module")
def chunked(tiny_base_dir, tmp_path_factory):
    """One `bertkit train --long chunk` run on a CSV of long documents; no eval file, so a stratified split."""
    folder = tmp_path_factory.mktemp("train_long")
    rows = documents_rows(40, 7)
    data = folder / "docs.csv"
    pd.DataFrame({"text": [t for t, _ in rows], "label": [y for _, y in rows]}).to_csv(data, index=False)
    out = folder / "run"
    code = main(["train", "--model", str(tiny_base_dir), "--data", str(data), "--long", "chunk", "--stride", str(STRIDE),
                 "--max-length", str(WINDOW), "--epochs", "1", "--batch-size", "16", "--lr", "5e-3", "--test-size", "10",
                 "--seed", "0", "--device", "cpu", "--no-progress", "--output", str(out)])
    assert code == 0
    return out, data, rows


def read(folder, name: str) -> dict:
    return json.loads((folder / name).read_text())


def test_documents_are_split_first_and_each_ones_windows_stay_in_its_split(chunked):
    out, _, rows = chunked
    split, record, metrics = read(out, "split.json"), read(out, "training_record.json"), read(out, "metrics.json")
    train_rows, eval_rows = split["train"]["rows"], split["eval"]["rows"]
    assert not set(train_rows) & set(eval_rows) and sorted(train_rows + eval_rows) == list(range(len(rows)))
    model = bertkit.load(out, device="cpu")
    count = {name: sum(len(d.windows) for d in windows_of(model, [rows[r][0] for r in ids], long="chunk",
                                                             stride=STRIDE))
             for name, ids in (("train", train_rows), ("eval", eval_rows))}
    # Each split's sequences are exactly its own documents' windows: none was dealt to the other side.
    assert record["data"]["train"]["windows"] == count["train"] > len(train_rows)
    assert record["data"]["eval"]["windows"] == count["eval"] > len(eval_rows)
    assert metrics["n"] == len(eval_rows) and metrics["windows"] == count["eval"]
    assert record["window_tokens"] == WINDOW and "mean loss over the evaluation windows" in record["eval_loss"]


def test_the_model_keeps_its_training_strategy_and_predict_uses_it_by_default(chunked):
    out, _, _ = chunked
    plan = {"long": "chunk", "side": "right", "head": 128, "stride": STRIDE, "aggregate": "mean", "window": WINDOW}
    # The run evaluated with predict's default aggregation; the model records none, as none was chosen.
    assert read(out, "training_record.json")["long_document"] == plan == read(out, "metrics.json")["long_document"]
    assert read(out, "config.json")["long_document"] == {**plan, "aggregate": None}
    model = bertkit.load(out, device="cpu")
    row = model.predict([LONG_TEXT])[0]
    assert row["windows"] > 1 and row["truncated"] == 0
    with pytest.warns(UserWarning, match="1 of 1 texts"):  # the caller's option still wins
        assert model.predict([LONG_TEXT], long="truncate")[0]["windows"] == 1


def test_evaluation_aggregates_each_documents_window_probabilities(chunked, tmp_path):
    out, data, rows = chunked
    model = bertkit.load(out, device="cpu")
    eval_rows = read(out, "split.json")["eval"]["rows"]
    docs = windows_of(model, [rows[r][0] for r in eval_rows], long="chunk", stride=STRIDE)
    labels = [model.labels.index(rows[r][1]) for r in eval_rows]
    probs, losses = [], []
    for doc, label in zip(docs, labels):  # every window run alone, as its own batch
        with torch.inference_mode():
            logits = torch.cat([model.network.classify(bertkit.pack([w.ids], [w.type_ids])) for w in doc.windows])
        losses += torch.nn.functional.cross_entropy(logits, torch.tensor([label] * len(logits)), reduction="none").tolist()
        probs.append(logits.softmax(-1))
    expected = {
        "mean": [(p * torch.tensor(weights(d), dtype=torch.float32)[:, None]).sum(0) / sum(weights(d))
                 for p, d in zip(probs, docs)],
        "first": [p[0] for p in probs],
    }
    for how, scores in expected.items():
        chosen = {"aggregate": how} if how != "mean" else {}  # mean: the model's saved plan, by default
        report = evaluate_model(out, data, split="eval", output_dir=tmp_path / how, **chosen)
        assert report["long_document"]["aggregate"] == how and report["n"] == len(docs)
        assert report["windows"] == sum(len(d.windows) for d in docs)
        # Windows batched together against one at a time: float32 rounding of two 64-wide layers, far below 1e-5.
        assert report["loss"] == pytest.approx(sum(losses) / len(losses), rel=1e-5)
        predicted = [int(s.argmax()) for s in scores]
        assert report["accuracy"] == pytest.approx(sum(p == y for p, y in zip(predicted, labels)) / len(labels))
        written = [json.loads(line) for line in (tmp_path / how / "predictions.jsonl").read_text().splitlines()]
        for line, want, doc in zip(written, scores, docs):
            assert list(line["scores"].values()) == pytest.approx(want.tolist(), abs=1e-5)  # written rounded to 1e-6
            assert line["windows"] == len(doc.windows)


def test_cli_evaluate_takes_the_long_flags_and_defaults_to_the_models_plan(chunked, capsys):
    out, data, _ = chunked
    code, text, _ = run(capsys, "evaluate", "--model", out, "--data", data, "--split", "eval", "--device", "cpu", "--json")
    default = json.loads(text)
    assert code == 0 and default["long_document"]["long"] == "chunk" and default["windows"] > default["n"]
    code, text, _ = run(capsys, "evaluate", "--model", out, "--data", data, "--split", "eval", "--long", "truncate",
                        "--device", "cpu", "--json")
    cut = json.loads(text)
    assert code == 0 and cut["long_document"]["long"] == "truncate" and cut["windows"] == cut["n"] == default["n"]
    code, text, _ = run(capsys, "evaluate", "--model", out, "--data", data, "--split", "eval", "--device", "cpu")
    assert code == 0 and f"{default['n']} examples in {default['windows']} windows" in text


def test_the_long_flags_derive_from_long_options_and_a_bad_one_is_one_line(tiny_base_dir, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    shown = capsys.readouterr().out
    assert all(spec.flag in shown for spec in specs(LongOptions))
    long_names = {s.name for s in specs(LongOptions)}
    assert long_names <= {s.name for s in specs(TrainConfig)}
    # A resumed run may not change how it reads long documents: the windows are its training examples.
    assert all(resume_conflicts(defaults(TrainConfig), {name: "changed"}) == [name] for name in long_names)
    data = tmp_path / "docs.csv"
    rows = documents_rows(12, 1)
    pd.DataFrame({"text": [t for t, _ in rows], "label": [y for _, y in rows]}).to_csv(data, index=False)
    common = ["train", "--model", tiny_base_dir, "--data", data, "--max-length", WINDOW, "--long", "chunk", "--device",
              "cpu", "--no-progress", "--output", tmp_path / "run"]
    code, _, err = run(capsys, *common, "--max-windows", "1")
    assert code == 2 and err.startswith("error: --max-windows is 1, but a text needs") and err.count("\n") == 1
    code, _, err = run(capsys, *common, "--stride", WINDOW)
    assert code == 2 and err.startswith("error: --stride must be less than") and err.count("\n") == 1


def test_head_tail_and_truncate_train_on_the_tokens_they_keep(tiny_base_dir):
    model = bertkit.load(tiny_base_dir, device="cpu")
    text = " ".join(f"w{i}" for i in range(40))
    ds = TextDataset([text, "short one"], [0, 1], ["neg", "pos"], source="synthetic")
    full = model.tokenizer.encode_batch([text])[0].ids  # [CLS] ... [SEP]
    budget = 16 - 2
    with pytest.warns(UserWarning, match="1 of 2 texts"):
        head_tail = window_dataset(model, ds, 16, Plan(long="head+tail", head=4))
    assert head_tail.encodings[0].ids == full[:1 + 4] + full[-1 - (budget - 4):]
    with pytest.warns(UserWarning, match="1 of 2 texts"):
        left = window_dataset(model, ds, 16, Plan(long="truncate", side="left"))
    assert left.encodings[0].ids == full[:1] + full[-1 - budget:]
    for windows in (head_tail, left):  # one sequence per text, and the short text untouched
        assert windows.owners == [0, 1] and windows.encodings[1].ids == model.tokenizer.encode_batch(["short one"])[0].ids
    trainer = Trainer(model, ds, None, TrainConfig(long="head+tail", head=4, max_length=16, max_steps=1, batch_size=2,
                                                   seed=0), progress=False)
    with pytest.warns(UserWarning, match="1 of 2 texts"):
        trainer.fit()
    assert trainer.objective.window_counts["train"] == 2
    assert model.config.extra["long_document"] == {"long": "head+tail", "side": "right", "head": 4, "stride": None,
                                                   "aggregate": None, "window": 16}


def test_chunk_windows_inherit_their_documents_label(tiny_base_dir):
    model = bertkit.load(tiny_base_dir, device="cpu")
    rows = documents_rows(6, 3)
    ds = TextDataset([t for t, _ in rows], [("neg", "pos").index(y) for _, y in rows], ["neg", "pos"])
    windows = window_dataset(model, ds, WINDOW, Plan(long="chunk", stride=STRIDE))
    full = [e.ids[1:-1] for e in model.tokenizer.encode_batch(ds.texts)]
    assert windows.owners == sorted(windows.owners) and set(windows.owners) == set(range(len(ds)))
    for encoding, owner, label in zip(windows.encodings, windows.owners, windows.window_labels):
        assert label == ds.labels[owner] and len(encoding.ids) <= WINDOW
        body = encoding.ids[1:-1]  # a window's text is a run of its own document's tokens
        assert any(full[owner][k:k + len(body)] == body for k in range(len(full[owner]) - len(body) + 1))


def test_a_model_trained_on_chunks_passes_its_plan_on_to_the_next_training(chunked):
    out, _, rows = chunked
    ds = TextDataset([t for t, _ in rows[:4]], [("neg", "pos").index(y) for _, y in rows[:4]], ["neg", "pos"])
    model = bertkit.load(out, device="cpu")
    assert Trainer(model, ds, None, TrainConfig(max_length=WINDOW), progress=False).objective.plan == \
        Plan(long="chunk", stride=STRIDE, window=WINDOW)
    trainer = Trainer(bertkit.load(out, device="cpu"), ds, None, TrainConfig(long="truncate", aggregate="max"),
                      progress=False)
    assert (trainer.objective.plan.long, trainer.objective.plan.stride, trainer.objective.plan.aggregate) == \
        ("truncate", STRIDE, "max")
    assert trainer.model.config.extra["long_document"]["aggregate"] == "max"  # chosen, so the model keeps it
    with pytest.raises(OptionError, match="stride must be at least 0"):
        TrainConfig(stride=-1)
