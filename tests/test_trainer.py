"""Trainer and finetune(): learning, the run folder, best checkpoint, early stopping, multi-label, data checks, transformers parity."""
from __future__ import annotations

import json
import random

import pytest
import torch

import bertkit
from bertkit.cli import main
from bertkit.data import TextDataset
from bertkit.errors import BertkitError, OptionError
from bertkit.train import TrainConfig, Trainer, evaluate_model, finetune
from helpers import FAST, FILLER, dataset, sentiment_rows, serve_and

@pytest.fixture()
def tiny(tiny_base_dir):
    return bertkit.load(tiny_base_dir, device="cpu")


def test_trainer_learns_and_writes_a_complete_run_folder(tiny, tmp_path, tiny_base_dir):
    train, evaluation = dataset(sentiment_rows(160, 1)), dataset(sentiment_rows(60, 2))
    out = tmp_path / "run"
    result = Trainer(tiny, train, evaluation, TrainConfig(epochs=3, **FAST), output_dir=out, progress=False).fit()
    assert result.metrics["accuracy"] >= 0.9 and result.metrics["macro_f1"] >= 0.9
    assert not tiny.network.training  # the trainer hands the model back in eval mode

    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"} and config["label2id"] == {"neg": 0, "pos": 1}
    assert config["architectures"] == ["BertForSequenceClassification"]
    for name in ("model.safetensors", "tokenizer.json", "vocab.txt", "training_curves.png", "confusion_matrix.png"):
        assert (out / name).stat().st_size > 0, name
    assert not (out / "checkpoints").exists()  # removed once the run succeeded

    metrics = json.loads((out / "metrics.json").read_text())
    assert {"accuracy", "macro_f1", "loss", "per_class", "confusion_matrix", "n"} <= metrics.keys()
    assert metrics["n"] == 60 and sum(map(sum, metrics["confusion_matrix"])) == 60
    assert set(metrics["per_class"]) == {"neg", "pos"} and "precision" in metrics["per_class"]["pos"]
    assert metrics["selected_by"] == {"metric": "macro_f1", "step": result.best["step"]}

    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["split"] == "eval"]
    trains = [r for r in records if r["split"] == "train"]
    assert [r["epoch"] for r in evals] == [1, 2, 3]
    assert all({"loss", "lr", "examples_per_s", "tokens_per_s", "step"} <= r.keys() for r in trains)
    assert trains[-1]["loss"] < trains[0]["loss"]
    best_eval = max(evals, key=lambda r: r["macro_f1"])  # first of equals, as the trainer keeps it
    assert metrics["step"] == best_eval["step"] and metrics["accuracy"] == best_eval["accuracy"]

    record = json.loads((out / "training_record.json").read_text())
    assert record["seed"] == 0 and record["labels"] == ["neg", "pos"] and record["config"]["lr"] == 5e-3
    assert record["data"]["train"]["rows"] == 160 and record["data"]["eval"]["rows"] == 60
    assert record["data"]["train"]["sha256"] == train.fingerprint()
    assert {"torch", "transformers", "tokenizers", "bertkit"} <= record["versions"].keys()
    assert record["device"]["type"] == "cpu" and record["timings"]["train_s"] > 0
    assert record["steps"] == result.steps == 3 * 10

    # The saved folder loads back with the same predictions, and scores the same through evaluate_model.
    again = evaluate_model(out, _frame(evaluation))
    assert again["accuracy"] == pytest.approx(metrics["accuracy"]) and again["loss"] == pytest.approx(metrics["loss"], rel=1e-4)


def _frame(ds: TextDataset):
    import pandas as pd

    return pd.DataFrame({"text": ds.texts, "label": [ds.label_names[y] for y in ds.labels]})


def test_transformers_loads_the_output_and_predicts_the_same_labels(tiny, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    train = dataset(sentiment_rows(96, 3))
    out = tmp_path / "run"
    Trainer(tiny, train, dataset(sentiment_rows(32, 4)), TrainConfig(epochs=2, **FAST), output_dir=out, progress=False).fit()
    texts = [t for t, _ in sentiment_rows(24, 5)]
    hf = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tok = AutoTokenizer.from_pretrained(out)
    assert hf.config.id2label == {0: "neg", 1: "pos"}
    with torch.no_grad():
        hf_logits = hf(**tok(texts, padding=True, return_tensors="pt")).logits
    ours = bertkit.load(out, device="cpu")
    enc = ours.tokenize(texts)
    batch = bertkit.pack([e.ids for e in enc], [e.type_ids for e in enc])
    with torch.no_grad():
        our_logits = ours.network.classify(batch)
    torch.testing.assert_close(our_logits, hf_logits, atol=1e-4, rtol=1e-4)
    assert our_logits.argmax(1).tolist() == hf_logits.argmax(1).tolist()


def test_early_stopping_and_the_best_checkpoint(tiny, tmp_path):
    train, evaluation = dataset(sentiment_rows(64, 6)), dataset(sentiment_rows(32, 7))
    # A learning rate this small changes no prediction: no evaluation after the first improves accuracy.
    cfg = TrainConfig(epochs=10, patience=2, metric="accuracy", **{**FAST, "lr": 1e-12})
    result = Trainer(tiny, train, evaluation, cfg, output_dir=tmp_path / "run", progress=False).fit()
    evals = [r for r in result.history if r["split"] == "eval"]
    assert result.stopped_early and len(evals) == 3 and result.steps == 3 * 4
    assert result.best["step"] == 4 and result.metrics["step"] == 4
    record = json.loads((tmp_path / "run" / "training_record.json").read_text())
    assert record["stopped_early"] is True and record["epochs_completed"] == 3


def test_max_steps_and_eval_every_without_an_output_folder(tiny):
    train, evaluation = dataset(sentiment_rows(64, 8)), dataset(sentiment_rows(16, 9))
    result = Trainer(tiny, train, evaluation, TrainConfig(epochs=1, max_steps=7, eval_every=3, log_every=2, **FAST),
                     progress=False).fit()
    assert result.steps == 7 and result.output_dir is None
    assert [r["step"] for r in result.history if r["split"] == "eval"] == [3, 4, 6, 7]  # every 3, each epoch end, the last


def test_restore_best_puts_the_best_weights_back(tiny):
    train, evaluation = dataset(sentiment_rows(64, 10)), dataset(sentiment_rows(32, 11))
    trainer = Trainer(tiny, train, evaluation, TrainConfig(epochs=3, **FAST), progress=False)
    result = trainer.fit()
    assert trainer.evaluate(evaluation)["macro_f1"] == pytest.approx(result.best["value"])


def test_class_weights_balanced_and_grad_accum_run(tiny):
    rows = sentiment_rows(90, 12)
    rows = [r for r in rows if r[1] == "neg"][:10] + [r for r in rows if r[1] == "pos"]
    train = dataset(rows)
    result = Trainer(tiny, train, dataset(sentiment_rows(20, 13)),
                     TrainConfig(epochs=1, class_weights="balanced", grad_accum=2, **FAST), progress=False).fit()
    n_batches = -(-len(train) // 16)
    assert result.steps == -(-n_batches // 2)


def test_multi_label_training_uses_sigmoid_and_a_threshold(tiny, tmp_path, capsys):
    rng = random.Random(0)
    names = ["action", "comedy", "drama"]
    cues = {"action": "explosions", "comedy": "jokes", "drama": "tears"}
    texts, labels = [], []
    for i in range(120):
        row = [int(rng.random() < 0.5) for _ in names]
        words = [rng.choice(FILLER) for _ in range(4)] + [cues[n] for n, on in zip(names, row) if on]
        rng.shuffle(words)
        texts.append(" ".join(words) + f" m{i}")
        labels.append(row)
    train = TextDataset(texts[:90], labels[:90], names)
    evaluation = TextDataset(texts[90:], labels[90:], names)
    assert train.multi_label
    out = tmp_path / "ml"
    trainer = Trainer(tiny, train, evaluation, TrainConfig(epochs=2, threshold=0.4, metric="micro_f1", **FAST),
                      output_dir=out, progress=False)
    result = trainer.fit()
    assert result.metrics["multi_label"] and result.metrics["threshold"] == 0.4
    # The report is BCE on sigmoid outputs, and a label counts as predicted from a probability of 0.4.
    from bertkit.train import BatchStream, encode_dataset, predict_logits
    from bertkit.train.metrics import multilabel_report

    stream = BatchStream(encode_dataset(tiny, evaluation, 32), evaluation.labels, batch_tokens=4096, shuffle=False)
    logits, _ = predict_logits(tiny.network, stream)
    target = torch.tensor(evaluation.labels, dtype=torch.float32)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    expected = multilabel_report(evaluation.labels, (torch.sigmoid(logits) >= 0.4).int().numpy(), names)
    assert result.metrics["loss"] == pytest.approx(float(bce), rel=1e-4)
    assert result.metrics["micro_f1"] == pytest.approx(expected["micro_f1"])
    assert result.metrics["per_class"] == expected["per_class"]
    config = json.loads((out / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification" and config["multi_label_threshold"] == 0.4
    assert json.loads((out / "training_record.json").read_text())["threshold"] == 0.4

    # The saved threshold is the default everywhere: predict and evaluate agree on the same model, at 0.4.
    probs = torch.sigmoid(logits)
    assert ((probs >= 0.4) & (probs < 0.5)).any()  # some label lies between the two, so 0.5 would predict otherwise
    saved = bertkit.load(out, device="cpu")
    rows = saved.predict(evaluation.texts)
    assert [[int(n in r["labels"]) for n in names] for r in rows] == (probs >= 0.4).int().tolist()
    # The command line and the server read the same saved threshold (the answers equal the API's).
    assert main(["predict", "--model", str(out), "--device", "cpu", "--json", *evaluation.texts]) == 0
    assert [r["labels"] for r in json.loads(capsys.readouterr().out)] == [r["labels"] for r in rows]

    async def ask(client):
        return (await client.post("/v1/predict", json={"texts": evaluation.texts})).json()

    assert [r["labels"] for r in serve_and(saved, ask, warmup=False)] == [r["labels"] for r in rows]
    report = evaluate_model(saved, evaluation)
    assert report["threshold"] == 0.4 and report["per_class"] == expected["per_class"]


def test_finetune_splits_checks_and_keeps_label_names(tiny, tmp_path):
    import pandas as pd

    rows = sentiment_rows(120, 14, names=("rotten", "fresh"))
    frame = pd.DataFrame({"review": [t for t, _ in rows], "verdict": [y for _, y in rows]})
    result = finetune(tiny, frame, text_column="review", label_column="verdict", output_dir=tmp_path / "ft",
                      test_size=0.25, limit=60, epochs=1, progress=False, **FAST)
    record = result.record
    assert record["labels"] == ["fresh", "rotten"]  # string labels: sorted names, kept end to end
    assert record["data"]["train"]["rows"] == 60 and record["data"]["eval"]["rows"] == 30
    assert record["split"] == {"method": "stratified", "test_size": 0.25, "seed": 0, "limit": 60}
    split = json.loads((tmp_path / "ft" / "split.json").read_text())
    assert not set(split["train"]["rows"]) & set(split["eval"]["rows"])
    assert bertkit.load(tmp_path / "ft").labels == ["fresh", "rotten"]


def test_data_checks_warn_and_strict_fails(tiny_base_dir, tmp_path):
    rows = sorted(sentiment_rows(80, 15), key=lambda r: r[1])  # label-sorted, as the notebook's data
    frame = _frame(dataset(rows))
    evaluation = _frame(dataset([r for r in sentiment_rows(20, 16) if r[1] == "pos"]))  # one class only
    with pytest.raises(BertkitError, match="--strict"):
        finetune(tiny_base_dir, frame, eval_data=evaluation, strict=True, epochs=1, progress=False, device="cpu", **FAST)
    with pytest.warns(UserWarning, match="DATA CHECK") as caught:
        finetune(tiny_base_dir, frame, eval_data=evaluation, epochs=1, progress=False, device="cpu", **FAST)
    text = " ".join(str(w.message) for w in caught)
    assert "sorted by label" in text and "single class" in text and "missing from 'eval'" in text


def test_trainer_refuses_mismatched_labels_and_bad_settings(tiny_cls_dir, tiny):
    cls = bertkit.load(tiny_cls_dir, device="cpu")  # a head for negative / neutral / positive
    with pytest.raises(BertkitError, match="classifier predicts"):
        Trainer(cls, dataset(sentiment_rows(8)), progress=False)
    with pytest.raises(BertkitError, match="labels"):
        Trainer(tiny, dataset(sentiment_rows(8)), dataset(sentiment_rows(8, names=("bad", "good")), ("bad", "good")), progress=False)
    with pytest.raises(OptionError, match="metric must be one of macro_f1, accuracy, loss, micro_f1"):
        TrainConfig(metric="f2")
    with pytest.raises(OptionError, match="warmup_ratio must be less than 1"):
        TrainConfig(warmup_ratio=1.5)
    config = TrainConfig()
    config.lr = -1.0  # assigned after construction: validate() checks again
    with pytest.raises(OptionError, match="lr must be more than 0"):
        config.validate()
    # No size and no budget means the default size; a budget alone shapes the batches by itself.
    assert TrainConfig(batch_size=None, batch_tokens=None).sequences_per_batch == 32
    assert TrainConfig(batch_tokens=512).sequences_per_batch is None
    assert TrainConfig(batch_size=8, batch_tokens=512).sequences_per_batch == 8
    with pytest.raises(OptionError, match="micro_f1 is for multi-label data"):
        Trainer(tiny, dataset(sentiment_rows(8)), config=TrainConfig(metric="micro_f1"), progress=False)
    with pytest.raises(BertkitError, match="no labels"):
        Trainer(tiny, TextDataset(["a", "b"], None, []), progress=False)


def test_finetune_keeps_a_matching_head_and_replaces_another(tiny_cls_dir):
    cls = bertkit.load(tiny_cls_dir, device="cpu")
    rows = sentiment_rows(40, 17, names=("negative", "positive"))
    rows += [(f"it was fine {i}", "neutral") for i in range(20)]
    import pandas as pd

    frame = pd.DataFrame({"text": [t for t, _ in rows], "label": [y for _, y in rows]})
    before = cls.network.classifier.linear.weight.detach().clone()
    result = finetune(cls, frame, epochs=1, progress=False, **{**FAST, "lr": 1e-12})
    assert result.record["labels"] == ["negative", "neutral", "positive"]
    torch.testing.assert_close(cls.network.classifier.linear.weight, before)  # kept, not re-initialised
    with pytest.warns(UserWarning, match="replacing the model's classifier"):
        finetune(cls, _frame(dataset(sentiment_rows(30, 18))), epochs=1, progress=False, **FAST)
    assert cls.labels == ["neg", "pos"]


def test_output_folder_is_not_overwritten_by_accident(tiny_base_dir, tmp_path):
    frame = _frame(dataset(sentiment_rows(40, 19)))
    out = tmp_path / "run"
    finetune(tiny_base_dir, frame, output_dir=out, epochs=1, progress=False, device="cpu", **FAST)
    with pytest.raises(BertkitError, match="--overwrite"):
        finetune(tiny_base_dir, frame, output_dir=out, epochs=1, progress=False, device="cpu", **FAST)
    (out / "notes.txt").write_text("mine")
    finetune(tiny_base_dir, frame, output_dir=out, overwrite=True, epochs=1, progress=False, device="cpu", **FAST)
    assert (out / "notes.txt").read_text() == "mine"  # --overwrite removes only what a run writes


def test_evaluate_model_maps_labels_by_name_and_rejects_unknown_ones(tiny, tmp_path):
    import pandas as pd

    out = tmp_path / "run"
    Trainer(tiny, dataset(sentiment_rows(48, 20)), dataset(sentiment_rows(16, 21)),
            TrainConfig(epochs=1, **FAST), output_dir=out, progress=False).fit()
    rows = sentiment_rows(20, 22)
    swapped = pd.DataFrame({"text": [t for t, _ in rows], "label": [y for _, y in rows]})
    report = evaluate_model(out, swapped, output_dir=tmp_path / "eval")
    assert report["n"] == 20 and sum(report["per_class"][n]["support"] for n in ("neg", "pos")) == 20
    assert report["per_class"]["pos"]["support"] == sum(1 for _, y in rows if y == "pos")
    for name in ("evaluation.json", "predictions.jsonl", "confusion_matrix.png"):
        assert (tmp_path / "eval" / name).exists()
    first = json.loads((tmp_path / "eval" / "predictions.jsonl").read_text().splitlines()[0])
    assert {"text", "label", "predicted", "scores", "correct", "row"} <= first.keys()
    bad = pd.DataFrame({"text": ["a film", "another"], "label": ["pos", "meh"]})
    with pytest.raises(BertkitError, match="unknown label 'meh'"):
        evaluate_model(out, bad)
    with pytest.raises(BertkitError, match="no classification head"):
        evaluate_model(bertkit.load(tiny.folder, device="cpu"), swapped)  # the base model: no head


def test_demo_finetune_trains_evaluates_and_predicts_the_notebook_sentences(tmp_path):
    from bertkit.train import NOTEBOOK_EXAMPLES, demo_finetune

    result = demo_finetune("minilm", output_dir=tmp_path / "demo", limit=48, eval_limit=32, epochs=1, device="cpu",
                           progress=False)
    assert result["train_examples"] == 48 and result["eval_examples"] == 32
    assert {"accuracy", "macro_f1", "loss"} <= result["metrics"].keys()
    assert [p["text"] for p in result["predictions"]] == list(NOTEBOOK_EXAMPLES)
    assert all(p["label"] in ("fresh", "rotten") for p in result["predictions"])
    assert (tmp_path / "demo" / "metrics.json").exists()


def test_a_compiled_model_fine_tunes_and_saves(tiny_base_dir, tmp_path):
    """Model.compile() promises training and saving as before: the compiled blocks learn, the folder reloads."""
    model = bertkit.load(tiny_base_dir, device="cpu").compile()
    train, evaluation = dataset(sentiment_rows(160, 1)), dataset(sentiment_rows(60, 2))
    result = Trainer(model, train, evaluation, TrainConfig(epochs=3, **FAST), output_dir=tmp_path / "run", progress=False).fit()
    assert result.metrics["accuracy"] >= 0.9
    reloaded = bertkit.load(tmp_path / "run", device="cpu")
    texts = [t for t, _ in sentiment_rows(20, 3)]
    assert [r["label"] for r in reloaded.predict(texts)] == [r["label"] for r in model.predict(texts)]


def test_another_objective_drives_the_same_loop(tiny_base_dir, tmp_path):
    """The seam pre-training builds on: an Objective of its own batches, module, loss and evaluation gets the loop's
    schedule, checkpoints, records, best-model selection and run folder, with no classification in sight."""
    from bertkit.train import BatchStream, Objective, seed_everything
    from helpers import random_sequences

    class Sequence:
        def __init__(self, ids, type_ids):
            self.ids, self.type_ids = ids, type_ids

        def __len__(self):
            return len(self.ids)

    class Shrink(Objective):
        """Pull every hidden state of a sequence towards zero: a loss summed over tokens, weighed by tokens."""

        def __init__(self, model):
            ids, types = random_sequences([5, 9, 7, 12, 6, 8], seed=7)
            self.encodings = [Sequence(i, t) for i, t in zip(ids, types)]
            self.model = model

        def batches(self, generator):
            return BatchStream(self.encodings, batch_size=2, generator=generator)

        def module(self, network):
            return network.encoder

        def weight(self, stream, group, epoch=0):
            return float(sum(stream.lengths[i] for indices in group for i in indices))

        def loss(self, outputs, batch, real=None):
            return outputs.float().pow(2).mean(dim=-1).sum()

        @property
        def evaluates(self):
            return True

        def evaluate(self):
            stream = BatchStream(self.encodings, batch_size=6, shuffle=False)
            with torch.no_grad():
                self.model.network.eval()
                batch = next(stream.epoch(0))
                report = {"loss": float(self.loss(self.model.network(batch), batch)) / batch.num_tokens}
                self.model.network.train()
            return report

        def fingerprint(self):
            return "shrink"

        def describe(self):
            return {"objective": "shrink"}

    model = bertkit.load(tiny_base_dir, device="cpu")
    seed_everything(0)
    out = tmp_path / "shrink"
    trainer = Trainer(model, objective=Shrink(model), config=TrainConfig(max_steps=6, lr=1e-3, metric="loss",
                                                                         eval_every=3, seed=0),
                      output_dir=out, progress=False)
    result = trainer.fit()
    evals = [r for r in result.history if r["split"] == "eval"]
    assert result.steps == 6 and [r["step"] for r in evals] == [3, 6] and evals[-1]["loss"] < evals[0]["loss"]
    record = json.loads((out / "training_record.json").read_text())
    assert record["objective"] == "shrink" and record["steps"] == 6 and "labels" not in record
    assert json.loads((out / "metrics.json").read_text())["selected_by"] == {"metric": "loss", "step": 6}
    with pytest.raises(BertkitError, match="holds its own data"):
        Trainer(model, dataset(sentiment_rows(4)), objective=Shrink(model))
