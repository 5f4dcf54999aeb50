"""The whole fine-tuning workflow in calls: load model and data, split and check them, train, evaluate, demo."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

from bertkit.data import TextDataset, check_splits, load_dataset, stratified_split
from bertkit.errors import BertkitError
from bertkit.model import Model, load
from bertkit.train import distributed
from bertkit.train.batches import BatchStream, encode_dataset, seed_everything, stratified_subset
from bertkit.train.loop import predict_logits
from bertkit.train.record import command_line
from bertkit.train.trainer import CHECKPOINTS, RUN_FILES, Trainer, TrainConfig, TrainResult, report_from_logits, write_json

NOTEBOOK_EXAMPLES = (
    "I loved this movie! The acting was great and the plot was amazing.",
    "This movie was terrible. I hated every minute of it.",
)
ARGUMENTS_FILE = "training_arguments.json"
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "vocab.txt", "tokenizer_config.json",
               "special_tokens_map.json")


def finetune(
    model: str | os.PathLike | Model = "minilm",
    data: Any = "rotten_tomatoes",
    *,
    output_dir: str | os.PathLike | None = None,
    eval_data: Any = None,
    test_data: Any = None,
    text_column: str | None = None,
    label_column: str | None = None,
    pair_column: str | None = None,
    multi_label: bool = False,
    drop_invalid: bool = False,
    test_size: float | int = 0.1,
    limit: int | None = None,
    eval_limit: int | None = None,
    strict: bool = False,
    device: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
    config: TrainConfig | None = None,
    arguments: dict[str, Any] | None = None,
    **overrides: Any,
) -> TrainResult:
    """Fine-tune `model` on `data` (file, built-in name, DataFrame or HF dataset) and write `output_dir`.

    Without `eval_data`, a seeded stratified `test_size` split of `data` is held out for evaluation.
    `limit` trains on a stratified subset of that many examples. The splits are checked (single
    class, missing classes, label-sorted rows, texts shared between splits): each problem is a
    warning, or an error with `strict`. Keyword overrides set TrainConfig fields (epochs=, lr=, ...).
    """
    cfg = dataclasses.replace(config or TrainConfig(), **overrides)
    cfg.validate()
    if output_dir is not None and overwrite and not resume:
        distributed.on_main(lambda: clear_run_folder(Path(output_dir)))  # under DDP, rank 0 alone writes the run folder
    if resume and output_dir is None:
        raise BertkitError("resume needs the run's output folder")
    model = model if isinstance(model, Model) else load(model, device=device)
    columns = dict(text_column=text_column, label_column=label_column, pair_column=pair_column, multi_label=multi_label,
                   drop_invalid=drop_invalid)

    full = load_dataset(data, **columns)
    if full.labels is None:
        raise BertkitError(f"{full.source} has no label column; pass --label-column")
    full = _align_with_head(model, full, data, columns, cfg.seed)
    if eval_data is not None:
        train = full
        evaluation = load_dataset(eval_data, label_names=full.label_names, **columns)
        split = {"method": "given", "eval_source": evaluation.source}
    else:
        train, evaluation = stratified_split(full, test_size=test_size, seed=cfg.seed)
        split = {"method": "stratified", "test_size": test_size, "seed": cfg.seed}
    if limit is not None:
        train = stratified_subset(train, limit, seed=cfg.seed)
        split["limit"] = limit
    if eval_limit is not None:
        evaluation = stratified_subset(evaluation, eval_limit, seed=cfg.seed)
        split["eval_limit"] = eval_limit
    test = load_dataset(test_data, label_names=full.label_names, **columns) if test_data is not None else None

    splits = {"train": train, "eval": evaluation, **({"test": test} if test is not None else {})}
    problems = check_data(splits)
    for problem in problems:
        if not strict and distributed.is_main_process():  # every rank finds the same problems; one report is enough
            warnings.warn(f"DATA CHECK: {problem}", stacklevel=2)
    if problems and strict:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise BertkitError(f"--strict: {problems[0]}{more}")

    record = {
        "command": command_line(),
        "arguments": arguments if arguments is not None else {
            "model": str(model.source), "data": str(data) if isinstance(data, (str, os.PathLike)) else type(data).__name__,
            **columns, "test_size": test_size, "limit": limit, "eval_limit": eval_limit},
        "split": split,
        "data_warnings": problems,
    }
    trainer = Trainer(model, train, evaluation, cfg, output_dir=output_dir, test_data=test, progress=progress, record=record)
    if output_dir is not None and not resume:
        def start_run_folder() -> None:
            trainer.prepare_output(resume=False)  # refuses a folder holding another run before anything is written
            if arguments is not None:  # what `bertkit train --resume DIR` reuses
                write_json(Path(output_dir) / ARGUMENTS_FILE, arguments)
            write_json(Path(output_dir) / "split.json", {
                "note": "row numbers in each source (0-based, header not counted)", **split,
                **{name: {"source": ds.source, "rows": ds.row_ids} for name, ds in splits.items()}})

        distributed.on_main(start_run_folder)
    return trainer.fit(resume=resume)


def check_data(splits: dict[str, TextDataset]) -> list[str]:
    """check_splits' findings, plus label names with no training example at all."""
    problems = check_splits(splits)
    counts = splits["train"].label_counts()
    empty = [name for name, n in counts.items() if n == 0]
    if empty:
        problems.append(f"label(s) {', '.join(empty)} have no training example; the model can never learn them")
    return problems


def _align_with_head(model: Model, data: TextDataset, source: Any, columns: dict, seed: int) -> TextDataset:
    """Keep a model's existing classifier when the data have the same label names (in its order); else replace it."""
    head = model.network.classifier
    if head is None:
        return data
    if set(model.labels) == set(data.label_names):
        if model.labels != data.label_names:
            return load_dataset(source, label_names=model.labels, **columns)
        return data
    warnings.warn(f"replacing the model's classifier (labels {model.labels}) with a new one for {data.label_names}",
                  stacklevel=3)
    seed_everything(seed)
    problem = "multi_label_classification" if data.multi_label else "single_label_classification"
    model.network.add_classifier(dict(enumerate(data.label_names)), problem_type=problem)
    return data


def clear_run_folder(folder: Path) -> None:
    """Remove what a previous run wrote there (and nothing else the folder may hold)."""
    if not folder.is_dir():
        return
    shutil.rmtree(folder / CHECKPOINTS, ignore_errors=True)
    for name in RUN_FILES + MODEL_FILES + (ARGUMENTS_FILE,):
        (folder / name).unlink(missing_ok=True)


def saved_arguments(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The arguments an unfinished run in `folder` was started with (what --resume reuses)."""
    path = Path(folder) / ARGUMENTS_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# Evaluation and prediction with a trained classifier
# ---------------------------------------------------------------------------------------------
def _training_record(model: Model) -> dict[str, Any]:
    path = model.folder / "training_record.json" if model.folder else None
    if path is None or not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}


def evaluate_model(
    model: str | os.PathLike | Model,
    data: Any,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    pair_column: str | None = None,
    split: str | None = None,
    limit: int | None = None,
    max_length: int | None = None,
    batch_tokens: int | None = None,
    threshold: float | None = None,
    output_dir: str | os.PathLike | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Score a trained classifier on labelled data; labels are mapped through the model's label names.

    `split` ("train", "eval", "test") picks the rows of that split of the model's training run from
    the same data (read from the model's split.json). With `output_dir`, writes evaluation.json,
    predictions.jsonl and confusion_matrix.png there.
    """
    model = model if isinstance(model, Model) else load(model, device=device)
    if model.network.classifier is None:
        raise BertkitError(f"{model.source} has no classification head; pass a model trained with `bertkit train`")
    record = _training_record(model)
    multi = model.config.problem_type == "multi_label_classification"
    if threshold is None:
        threshold = float(model.config.extra.get("multi_label_threshold", record.get("threshold") or 0.5))
    if max_length is None:
        max_length = (record.get("config") or {}).get("max_length")
    ds = load_dataset(data, text_column=text_column, label_column=label_column, pair_column=pair_column,
                      label_names=model.labels, multi_label=multi)
    if ds.labels is None:
        raise BertkitError(f"{ds.source} has no label column; pass --label-column")
    ds = _select_split(model, ds, split)
    if limit is not None:
        ds = stratified_subset(ds, limit, seed=0)
    encodings = encode_dataset(model, ds, max_length)
    stream = BatchStream(encodings, ds.labels, batch_tokens=batch_tokens or model.default_batch_tokens, shuffle=False,
                         device=model.device)
    t = time.perf_counter()
    logits, loss = predict_logits(model.network, stream)
    report = report_from_logits(logits, ds.labels, model.labels, loss, multi, threshold)
    report = {"model": str(model.source), "data": ds.source, "split": split, "n": len(ds), **report,
              "seconds": round(time.perf_counter() - t, 3)}
    if output_dir is not None:
        _write_evaluation(Path(output_dir), report, ds, logits, model.labels, multi, threshold)
    return report


def _select_split(model: Model, ds: TextDataset, split: str | None) -> TextDataset:
    path = model.folder / "split.json" if model.folder else None
    saved = json.loads(path.read_text(encoding="utf-8")) if path and path.exists() else None
    if split is None:
        if saved and "train" in saved and saved["train"]["source"] == ds.source:
            trained = set(saved["train"]["rows"])
            overlap = sum(1 for r in ds.row_ids if r in trained)
            if overlap:
                warnings.warn(f"{overlap} of {len(ds)} rows of {ds.source} were in this model's training split; "
                              f"the scores are optimistic — pass --split eval for the held-out rows", stacklevel=3)
        return ds
    if saved is None:
        raise BertkitError(f"--split needs the model's split.json, which {model.source} lacks; evaluate on a held-out file instead")
    if split not in saved or not isinstance(saved[split], dict):
        names = [k for k, v in saved.items() if isinstance(v, dict) and "rows" in v]
        raise BertkitError(f"the training run has no '{split}' split; choose one of {', '.join(names)}")
    if saved[split]["source"] != ds.source:
        raise BertkitError(f"the '{split}' split came from {saved[split]['source']}, not {ds.source}; pass that data")
    wanted = set(saved[split]["rows"])
    return ds.subset(i for i, r in enumerate(ds.row_ids) if r in wanted)


def _write_evaluation(folder: Path, report: dict, ds: TextDataset, logits, label_names: list[str], multi: bool,
                      threshold: float) -> None:
    import torch

    from bertkit.train.plots import plot_confusion_matrix

    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "evaluation.json", report)
    probs = torch.sigmoid(logits) if multi else torch.softmax(logits, dim=1)
    with open(folder / "predictions.jsonl", "w", encoding="utf-8") as f:
        for i in range(len(ds)):
            p = probs[i].tolist()
            if multi:
                true = [label_names[j] for j, v in enumerate(ds.labels[i]) if v]
                pred = [label_names[j] for j, v in enumerate(p) if v >= threshold]
            else:
                true, pred = label_names[ds.labels[i]], label_names[int(logits[i].argmax())]
            row = {"row": ds.row_ids[i], "text": ds.texts[i], "label": true, "predicted": pred,
                   "correct": true == pred, "scores": dict(zip(label_names, [round(x, 6) for x in p]))}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    if report.get("confusion_matrix"):
        plot_confusion_matrix(report["confusion_matrix"], label_names, folder / "confusion_matrix.png",
                              title=f"Confusion matrix ({ds.source}, n={len(ds)})")


# ---------------------------------------------------------------------------------------------
# The demo's fine-tuning section
# ---------------------------------------------------------------------------------------------
def demo_finetune(
    model: str | os.PathLike = "minilm",
    output_dir: str | os.PathLike | None = None,
    limit: int = 2000,
    eval_limit: int | None = 1000,
    epochs: int = 2,
    device: str | None = None,
    progress: bool | None = None,
    examples: Sequence[str] = NOTEBOOK_EXAMPLES,
    seed: int = 42,
    lr: float = 1e-4,
) -> dict[str, Any]:
    """Fine-tune on a stratified `limit`-example subset of rotten_tomatoes, evaluate, classify the notebook's sentences.

    Sized to finish in about two minutes on two CPU cores. 126 steps at lr 1e-4 reach about 0.80
    accuracy; one epoch at 5e-5 (63 steps) is too few for MiniLM to leave the majority class, and
    then every prediction is "fresh" (the notebook's failure, for another reason). Returns the
    evaluation report, the predictions for `examples`, the timings and where the model was written.
    """
    from bertkit.tasks.classify import predict

    t = time.perf_counter()
    if output_dir is not None and (Path(output_dir) / "training_record.json").exists():
        clear_run_folder(Path(output_dir))
    trained = load(model, device=device)
    result = finetune(trained, "rotten_tomatoes", output_dir=output_dir, limit=limit, eval_limit=eval_limit,
                      progress=progress, epochs=epochs, lr=lr, batch_size=32, max_length=128, warmup_ratio=0.1,
                      seed=seed)
    return {
        "accuracy": result.metrics["accuracy"],
        "macro_f1": result.metrics["macro_f1"],
        "metrics": result.metrics,
        "predictions": [{"text": t, **row} for t, row in zip(examples, predict(trained, list(examples)))],
        "train_examples": result.record["data"]["train"]["rows"],
        "eval_examples": result.record["data"]["eval"]["rows"],
        "timings": {**result.timings, "total_s": round(time.perf_counter() - t, 2)},
        "output_dir": str(output_dir) if output_dir is not None else None,
    }
