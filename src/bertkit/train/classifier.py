"""Fine-tuning a sequence classifier as a training Objective: labelled texts (or pairs) in windows, cross-entropy or BCE, per-document reports.

Long documents (`long=` in TrainConfig, resolved against the base model's saved plan): the texts of
each split are cut into windows after the split is made, so a document's windows never straddle
two splits. Under `chunk` every window is a training example carrying its document's label;
evaluation scores each window, aggregates each document's window probabilities as predict does
(bertkit.classification.aggregate), and computes the metrics per document. The saved model records
the plan, so predict and evaluate use it by default.
"""
from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from bertkit.batching import Batch, labels_to_tensor
from bertkit.classification import AGGREGATIONS, problem_type, save_threshold
from bertkit.data import TextDataset
from bertkit.errors import BertkitError, OptionError
from bertkit.model import Model
from bertkit.modeling import BertNetwork
from bertkit.train import distributed
from bertkit.train.batches import BatchStream, Windows, seed_everything, window_dataset
from bertkit.train.config import Metric, TrainConfig
from bertkit.train.loop import balanced_class_weights, classification_loss, example_weight, predict_logits
from bertkit.train.objective import Objective
from bertkit.train.parallel import predict_logits_sharded
from bertkit.train.record import describe_split
from bertkit.train.reports import EVAL_LOSS, document_report
from bertkit.train.run_folder import CONFUSION
from bertkit.windows import SAVED, Document, Plan

EvalSet = tuple[BatchStream, Windows]  # an evaluation split's batches, and the documents its sequences belong to


class ClassifierPath(nn.Module):
    """Just the parts `classify` uses, so DDP waits for gradients of exactly those (an MLM head would sit idle)."""

    def __init__(self, network: BertNetwork):
        super().__init__()
        self.encoder, self.pooler, self.classifier = network.encoder, network.pooler, network.classifier
        self._classify = network.classify  # a bound method, not a submodule: nothing is registered twice

    def forward(self, batch: Batch) -> torch.Tensor:
        return self._classify(batch)


class Classification(Objective):
    """Fine-tune `model` as a text classifier on labelled `train_data`, evaluating on `eval_data` (and `test_data`, once).

    Adds a classifier head when the model has none (its weights drawn from the seed alone) and
    records in the model's config what predict and evaluate use by default: the problem type, the
    multi-label threshold, and the long-document plan (its aggregation only when one was chosen, so
    that each task otherwise uses its own: predict averages windows, rerank takes the best).
    """

    shown = ("loss", "accuracy", "macro_f1", "micro_f1")

    def __init__(self, model: Model, train_data: TextDataset, eval_data: TextDataset | None = None,
                 test_data: TextDataset | None = None, config: TrainConfig | None = None):
        self.config = config = config if config is not None else TrainConfig()
        if train_data.labels is None:
            raise BertkitError(f"{train_data.source or 'the training data'} has no labels; pass --label-column")
        if len(train_data) == 0:
            raise BertkitError("the training data is empty")
        self.model = model
        self.train_data, self.eval_data, self.test_data = train_data, eval_data, test_data
        self.multi_label = train_data.multi_label
        self.label_names = list(train_data.label_names)
        for name, ds in (("evaluation", eval_data), ("test", test_data)):
            if ds is not None:
                self._check_like_training(name, ds)
        if config.metric == "micro_f1" and not self.multi_label:
            others = ", ".join(m for m in typing.get_args(Metric) if m != "micro_f1")
            raise OptionError("metric", f"micro_f1 is for multi-label data; use one of {others}")
        # The run's options, else the base model's training plan, else the defaults; read before it is replaced.
        saved = model.config.extra.get(SAVED) or {}
        self.plan = dataclasses.replace(Plan.of(config, saved, AGGREGATIONS, "train"), window=config.max_length)
        self.chosen_aggregate = config.aggregate or saved.get("aggregate")
        self.window_counts: dict[str, int] = {}  # sequences per split, filled as each is cut into windows
        self.class_weights: torch.Tensor | None = None
        self._eval_set: EvalSet | None = None
        self._ensure_head()

    def _check_like_training(self, name: str, ds: TextDataset) -> None:
        if ds.labels is None:
            raise BertkitError(f"the {name} data has no labels; pass its label column")
        if list(ds.label_names) != self.label_names:
            raise BertkitError(f"the {name} data's labels {ds.label_names} differ from the training data's "
                               f"{self.label_names}; load it with label_names=train.label_names")
        if ds.multi_label != self.multi_label:
            raise BertkitError(f"the {name} data is {'' if ds.multi_label else 'not '}multi-label but the training data "
                               f"is {'' if self.multi_label else 'not '}; load both the same way")

    def _ensure_head(self) -> None:
        network = self.model.network
        problem = problem_type(self.multi_label)
        if network.classifier is None:
            seed_everything(self.config.seed)  # the new head's initial weights depend on the seed alone
            network.add_classifier(dict(enumerate(self.label_names)), problem_type=problem)
        elif network.config.label_names != self.label_names:
            raise BertkitError(
                f"the model's classifier predicts {network.config.label_names} but the data's labels are "
                f"{self.label_names}; load the data with label_names=model.labels, or replace the head with "
                f"model.network.add_classifier(...)")
        network.config.problem_type = problem
        if self.multi_label:
            save_threshold(network.config, self.config.threshold)
        # What predict and evaluate use by default, the window length included (a text is read as in training).
        network.config.extra[SAVED] = {**self.plan.saved(), "aggregate": self.chosen_aggregate}

    @property
    def device(self) -> torch.device:
        return self.model.device

    # -- data -------------------------------------------------------------------------------------
    def windows(self, data: TextDataset, split: str | None = None) -> Windows:
        """`data` cut into the sequences the model reads (each window is an example with its document's label)."""
        windows = window_dataset(self.model, data, self.config.max_length, self.plan)
        if split is not None:
            self.window_counts[split] = len(windows.encodings)
        return windows

    def eval_set(self, data: TextDataset, split: str | None = None) -> EvalSet:
        windows = self.windows(data, split)
        return BatchStream(windows.encodings, windows.window_labels, shuffle=False, device=self.device,
                           batch_tokens=self.config.eval_batch_tokens or self.model.default_batch_tokens), windows

    # -- the Objective ----------------------------------------------------------------------------
    def batches(self, generator: torch.Generator) -> BatchStream:
        """The training windows in seeded batches; the evaluation data are read here too, so tokenizing is timed once."""
        cfg = self.config
        train = self.windows(self.train_data, "train")
        stream = BatchStream(train.encodings, train.window_labels, batch_tokens=cfg.batch_tokens,
                             batch_size=cfg.sequences_per_batch, shuffle=True, generator=generator, device=self.device,
                             bucket_size=cfg.bucket_size)
        # Balanced over what the loss sees: windows, so a class of long documents does not outweigh the others.
        if cfg.class_weights == "balanced":
            self.class_weights = balanced_class_weights(stream.labels, len(self.label_names)).to(self.device)
        if self.eval_data is not None:
            self._eval_set = self.eval_set(self.eval_data, "eval")
        return stream

    def module(self, network: BertNetwork) -> nn.Module:
        if network.classifier is None:
            raise BertkitError("the model has no classification head to train")
        return ClassifierPath(network)

    def weight(self, stream: BatchStream, group: Sequence[Sequence[int]], epoch: int = 0) -> float | torch.Tensor:
        # Every rank knows every label of the group, so the global divisor needs no communication.
        labels = [stream.labels[i] for indices in group for i in indices]
        return example_weight(labels_to_tensor(labels, self.device), self.class_weights)

    def loss(self, outputs: torch.Tensor, batch: Batch, real: int | None = None) -> torch.Tensor:
        return classification_loss(outputs[:real], batch.labels[:real], self.class_weights, reduction="sum")

    @property
    def evaluates(self) -> bool:
        return self.eval_data is not None

    def evaluate(self, data: TextDataset | BatchStream | EvalSet | None = None) -> dict[str, Any]:
        """Loss, accuracy, macro-F1, per-class precision/recall/F1 (and the confusion matrix) on labelled data.

        `data` defaults to the evaluation split. The metrics are per document (a chunked one's windows
        aggregated by the run's plan); the loss is the windows' mean (EVAL_LOSS). A BatchStream's
        sequences are each their own document.
        """
        if data is None:
            if self._eval_set is None:
                self._eval_set = self.eval_set(self.eval_data, "eval")
            data = self._eval_set
        elif isinstance(data, TextDataset):
            data = self.eval_set(data)
        elif isinstance(data, BatchStream):
            data = (data, Windows([Document([e], [0], 0) for e in data.encodings], data.labels))
        stream, windows = data
        if stream.labels is None:
            raise BertkitError("evaluation needs labelled data; pass the label column")
        network = self.model.network
        logits, loss = (predict_logits_sharded(network, stream) if distributed.is_distributed()
                        else predict_logits(network, stream))
        return document_report(logits, loss, windows, self.label_names, self.multi_label, self.plan.aggregate,
                               self.config.threshold)

    def test(self) -> dict[str, Any] | None:
        if self.test_data is None:
            return None
        return {"split": "test", **self.evaluate(self.eval_set(self.test_data, "test"))}

    # -- the run's record -------------------------------------------------------------------------
    def fingerprint(self) -> str:
        return self.train_data.fingerprint()

    def describe(self) -> dict[str, Any]:
        splits = (("train", self.train_data), ("eval", self.eval_data), ("test", self.test_data))
        return {
            "labels": self.label_names,
            "multi_label": self.multi_label,
            "threshold": self.config.threshold if self.multi_label else None,
            "data": {name: {**describe_split(ds), "windows": self.window_counts.get(name)} for name, ds in splits
                     if ds is not None},
            **self.notes(),
            "window_tokens": min(self.config.max_length or self.model.max_length, self.model.max_length),
        }

    def notes(self) -> dict[str, Any]:
        return {"long_document": self.plan.saved(), "eval_loss": EVAL_LOSS}

    def write_files(self, folder: Path, metrics: dict[str, Any] | None, test: dict[str, Any] | None) -> None:
        from bertkit.train.plots import plot_confusion_matrix

        shown = test or metrics
        if shown and shown.get("confusion_matrix"):
            plot_confusion_matrix(shown["confusion_matrix"], self.label_names, folder / CONFUSION,
                                  title=f"Confusion matrix ({shown['split']}, n={shown['n']})")
