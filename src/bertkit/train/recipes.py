"""The whole fine-tuning workflow in calls: load model and data, split and check them, train, evaluate, demo."""
from __future__ import annotations

import dataclasses
import json
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

from bertkit.checkpoint import atomic_write
from bertkit.classification import AGGREGATIONS, MULTI_LABEL, over_threshold, problem_of, problem_type, saved_threshold
from bertkit.data import TextDataset, check_splits, load_dataset, stratified_split
from bertkit.errors import BertkitError
from bertkit.model import Model, load
from bertkit.paths import output_folder
from bertkit.train import distributed
from bertkit.train.arguments import EvaluateOptions, TrainArguments, options_from_keywords
from bertkit.train.batches import BatchStream, Windows, seed_everything, stratified_subset, window_dataset
from bertkit.train.config import TrainConfig
from bertkit.train.jsonout import finite, jsonl, write_json
from bertkit.train.loop import predict_logits
from bertkit.train.record import command_line
from bertkit.train.reports import EVAL_LOSS, document_scores, report_from_scores
from bertkit.train.run_folder import ARGUMENTS, CONFUSION, EVALUATION, PREDICTIONS, RECORD, SPLIT, RunFolder
from bertkit.train.trainer import Trainer, TrainResult
from bertkit.windows import SAVED, Plan

NOTEBOOK_EXAMPLES = (
    "I loved this movie! The acting was great and the plot was amazing.",
    "This movie was terrible. I hated every minute of it.",
)


def finetune(
    model: str | os.PathLike | Model,
    data: Any,
    *,
    output_dir: str | os.PathLike | None = None,
    device: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
    config: TrainConfig | None = None,
    **options: Any,
) -> TrainResult:
    """Fine-tune `model` (name, folder or Model) on `data` (file, built-in name, DataFrame or HF dataset); write `output_dir`.

    `options` are the fields of TrainArguments (how the data are read, split and checked: text_column=,
    label_column=, eval_data=, test_size=, limit=, strict=, ...) and of TrainConfig (epochs=, lr=,
    batch_size=, long=, stride=, aggregate=, ...; they override `config`), with the defaults and meanings
    declared there. Under long="chunk" the documents are split first and then cut into windows that
    train with their document's label; evaluation is per document. Without
    `eval_data`, a seeded stratified `test_size` split of `data` is held out for evaluation. The splits
    are checked (single class, missing classes, label-sorted rows, texts shared between splits): each
    problem is a warning, or an error with `strict`.
    """
    arguments, cfg = options_from_keywords(TrainArguments, model, data, config, options, caller="finetune")
    return train_run(arguments, cfg, output_dir=output_dir, device=device, resume=resume, overwrite=overwrite,
                     progress=progress)


def train_run(
    arguments: TrainArguments,
    config: TrainConfig,
    *,
    output_dir: str | os.PathLike | None = None,
    device: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
    output_param: str = "output_dir",
) -> TrainResult:
    """`finetune` with its options already made (what `bertkit train` calls); `output_param` names `output_dir` in errors."""
    return in_run_folder(output_dir, resume, overwrite, output_param,
                         lambda output: _train(arguments, config, output, device, resume, progress))


def in_run_folder(output_dir: str | os.PathLike | None, resume: bool, overwrite: bool, output_param: str,
                  run: Callable[[Path | None], TrainResult]) -> TrainResult:
    """`run(output folder)` with the folder checked (and made) first, cleared with `overwrite`, and removed again when
    the run is refused before writing anything in it (every training recipe's folder handling)."""
    if resume and output_dir is None:
        raise BertkitError("resume needs the run's output folder")
    output = Path(output_dir) if output_dir is not None else None
    # The output folder is checked (and made) before any work, so a bad one costs nothing; under DDP rank 0 alone
    # writes the run folder.
    created = distributed.on_main(lambda: _checked_folder(output, output_param)) if output is not None else False
    try:
        if output is not None and overwrite and not resume:
            distributed.on_main(RunFolder(output).clear)
        return run(output)
    except BaseException:
        if created and distributed.is_main_process():
            _remove_if_empty(output)  # a run refused before it wrote anything leaves no folder behind
        raise


def _train(arguments: TrainArguments, cfg: TrainConfig, output_dir: Path | None, device: str | None, resume: bool,
           progress: bool | None) -> TrainResult:
    model = arguments.model if isinstance(arguments.model, Model) else load(arguments.model, device=device)
    columns = dict(text_column=arguments.text_column, label_column=arguments.label_column,
                   pair_column=arguments.pair_column, multi_label=arguments.multi_label,
                   drop_invalid=arguments.drop_invalid)

    full = load_dataset(arguments.data, **columns)
    if full.labels is None:
        raise BertkitError(f"{full.source} has no label column; pass --label-column")
    full = _align_with_head(model, full, arguments.data, columns, cfg.seed)
    if arguments.eval_data is not None:
        train = full
        evaluation = load_dataset(arguments.eval_data, label_names=full.label_names, **columns)
        split = {"method": "given", "eval_source": evaluation.source}
    else:
        train, evaluation = stratified_split(full, test_size=arguments.test_size, seed=cfg.seed)
        split = {"method": "stratified", "test_size": arguments.test_size, "seed": cfg.seed}
    if arguments.limit is not None:
        train = stratified_subset(train, arguments.limit, seed=cfg.seed, param="limit")
        split["limit"] = arguments.limit
    if arguments.eval_limit is not None:
        evaluation = stratified_subset(evaluation, arguments.eval_limit, seed=cfg.seed, param="eval_limit")
        split["eval_limit"] = arguments.eval_limit
    test = (load_dataset(arguments.test_data, label_names=full.label_names, **columns)
            if arguments.test_data is not None else None)

    splits = {"train": train, "eval": evaluation, **({"test": test} if test is not None else {})}
    problems = check_data(splits)
    for problem in problems:
        if not arguments.strict and distributed.is_main_process():  # every rank finds the same problems; one report
            warnings.warn(f"DATA CHECK: {problem}", stacklevel=3)
    if problems and arguments.strict:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise BertkitError(f"--strict: {problems[0]}{more}")

    # Every argument, defaults included, so a resumed run never depends on what a later version's defaults are.
    recorded = {**arguments.to_record(), **cfg.to_dict()}
    record = {"command": command_line(), "arguments": recorded, "split": split, "data_warnings": problems}
    trainer = Trainer(model, train, evaluation, cfg, output_dir=output_dir, test_data=test, progress=progress,
                      record=record)
    if output_dir is not None and not resume:
        def start_run_folder() -> None:
            trainer.prepare_output(resume=False)  # refuses a folder holding another run before anything is written
            if arguments.given_by_name():  # what `bertkit train --resume DIR` reuses
                write_json(output_dir / ARGUMENTS, recorded)
            write_json(output_dir / SPLIT, {
                "note": "row numbers in each source (0-based, header not counted)", **split,
                **{name: {"source": ds.source, "rows": ds.row_ids} for name, ds in splits.items()}})

        distributed.on_main(start_run_folder)
    return trainer.fit(resume=resume)


def _checked_folder(path: Path, param: str) -> bool:
    """Check (and make) an output folder; whether it was made here."""
    made = not path.exists()
    output_folder(path, param)
    return made


def _remove_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:  # it holds something: keep it
        pass


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
    model.network.add_classifier(dict(enumerate(data.label_names)), problem_type=problem_type(data.multi_label))
    return data


def saved_arguments(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The arguments an unfinished run in `folder` was started with (what --resume reuses)."""
    path = Path(folder) / ARGUMENTS
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# Evaluation and prediction with a trained classifier
# ---------------------------------------------------------------------------------------------
def _training_record(model: Model) -> dict[str, Any]:
    path = model.folder / RECORD if model.folder else None
    if path is None or not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}


def evaluate_model(
    model: str | os.PathLike | Model,
    data: Any,
    options: EvaluateOptions | None = None,
    *,
    output_dir: str | os.PathLike | None = None,
    device: str | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Score a trained classifier on labelled data; labels are mapped through the model's label names.

    `overrides` are EvaluateOptions fields (text_column=, split=, limit=, threshold=, long=, ...). `split`
    ("train", "eval", "test") picks the rows of that split of the model's training run from the same
    data (read from the model's split.json). Long texts are read as the model was trained (its saved
    long-document plan) unless `long=` and its companions say otherwise; the metrics are per document
    and the loss is the windows' mean. With `output_dir`, writes evaluation.json, predictions.jsonl
    and the confusion matrix there (run_folder.EVALUATION_FILES). NaN or infinite numbers are reported as None.
    """
    opts = dataclasses.replace(options, **overrides) if options is not None else EvaluateOptions(**overrides)
    folder = Path(output_dir) if output_dir is not None else None
    created = _checked_folder(folder, "output_dir") if folder is not None else False  # before any work
    try:
        return _evaluate(model, data, opts, folder, device)
    except BaseException:
        if created:
            _remove_if_empty(folder)
        raise


def _evaluate(model: str | os.PathLike | Model, data: Any, opts: EvaluateOptions, output_dir: Path | None,
              device: str | None) -> dict[str, Any]:
    model = model if isinstance(model, Model) else load(model, device=device)
    if model.network.classifier is None:
        raise BertkitError(f"{model.source} has no classification head; pass a model trained with `bertkit train`")
    record = _training_record(model)
    multi = problem_of(model.config) == MULTI_LABEL
    threshold = opts.threshold if opts.threshold is not None else saved_threshold(model.config)
    max_length = opts.max_length
    if max_length is None:
        max_length = (record.get("config") or {}).get("max_length")
    ds = load_dataset(data, text_column=opts.text_column, label_column=opts.label_column, pair_column=opts.pair_column,
                      label_names=model.labels, multi_label=multi, drop_invalid=opts.drop_invalid)
    if ds.labels is None:
        raise BertkitError(f"{ds.source} has no label column; pass --label-column")
    ds = _select_split(model, ds, opts.split)
    if opts.limit is not None:
        ds = stratified_subset(ds, opts.limit, seed=0, param="limit")
    plan = Plan.of(opts, model.config.extra.get(SAVED), AGGREGATIONS, "evaluate")
    windows = window_dataset(model, ds, max_length, plan)
    stream = BatchStream(windows.encodings, windows.window_labels, shuffle=False, device=model.device,
                         batch_tokens=opts.batch_tokens or model.default_batch_tokens)
    t = time.perf_counter()
    logits, loss = predict_logits(model.network, stream)
    scores = document_scores(logits, windows, multi, plan.aggregate, threshold)
    report = report_from_scores(scores, ds.labels, model.labels, loss, multi, threshold)
    # A broken checkpoint (NaN weights) gives a NaN loss: reported as None, which JSON can hold.
    report = finite({"model": str(model.source), "data": ds.source, "split": opts.split, "n": len(ds), **report,
                     "windows": len(windows.encodings), "long_document": plan.saved(), "eval_loss": EVAL_LOSS,
                     "seconds": round(time.perf_counter() - t, 3)})
    if output_dir is not None:
        _write_evaluation(output_dir, report, ds, windows, scores, model.labels, multi, threshold)
    return report


def _select_split(model: Model, ds: TextDataset, split: str | None) -> TextDataset:
    path = model.folder / SPLIT if model.folder else None
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
        # A run holds a test split only when trained with a test file: without one, the held-out rows are 'eval'.
        hint = " (a run keeps a 'test' split only when trained with --test-data)" if split == "test" else ""
        raise BertkitError(f"the training run has no '{split}' split{hint}; choose one of {', '.join(names)}")
    if saved[split]["source"] != ds.source:
        raise BertkitError(f"the '{split}' split came from {saved[split]['source']}, not {ds.source}; pass that data")
    wanted = set(saved[split]["rows"])
    return ds.subset(i for i, r in enumerate(ds.row_ids) if r in wanted)


def _write_evaluation(folder: Path, report: dict, ds: TextDataset, windows: Windows, probs, label_names: list[str],
                      multi: bool, threshold: float) -> None:
    from bertkit.train.plots import plot_confusion_matrix

    write_json(folder / EVALUATION, report)
    rows = []
    for i in range(len(ds)):
        p = probs[i].tolist()
        if multi:
            true = [label_names[j] for j, v in enumerate(ds.labels[i]) if v]
            pred = [label_names[j] for j, v in enumerate(over_threshold(probs[i], threshold).tolist()) if v]
        else:
            true, pred = label_names[ds.labels[i]], label_names[int(probs[i].argmax())]
        rows.append({"row": ds.row_ids[i], "text": ds.texts[i], "label": true, "predicted": pred,
                     "correct": true == pred, "scores": finite(dict(zip(label_names, [round(x, 6) for x in p]))),
                     "windows": len(windows.documents[i].windows)})
    text = jsonl(rows)
    atomic_write(folder / PREDICTIONS, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    if report.get("confusion_matrix"):
        plot_confusion_matrix(report["confusion_matrix"], label_names, folder / CONFUSION,
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
    t = time.perf_counter()
    if output_dir is not None and (Path(output_dir) / RECORD).exists():
        RunFolder(output_dir).clear()
    trained = load(model, device=device)
    result = finetune(trained, "rotten_tomatoes", output_dir=output_dir, limit=limit, eval_limit=eval_limit,
                      progress=progress, epochs=epochs, lr=lr, batch_size=32, max_length=128, warmup_ratio=0.1,
                      seed=seed)
    return {
        "accuracy": result.metrics["accuracy"],
        "macro_f1": result.metrics["macro_f1"],
        "metrics": result.metrics,
        "predictions": [{"text": t, **row} for t, row in zip(examples, trained.predict(list(examples)))],
        "train_examples": result.record["data"]["train"]["rows"],
        "eval_examples": result.record["data"]["eval"]["rows"],
        "timings": {**result.timings, "total_s": round(time.perf_counter() - t, 2)},
        "output_dir": str(output_dir) if output_dir is not None else None,
    }
