"""The training configuration, declared once: each setting's type, default, range and help; checks and CLI flags derive from it."""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Mapping

from bertkit.classification import DEFAULT_THRESHOLD, threshold_option
from bertkit.options import Options, check, option, specs
from bertkit.windows import LongOptions

Metric = Literal["macro_f1", "accuracy", "loss", "micro_f1"]
LOWER_IS_BETTER = frozenset({"loss"})  # every other metric is a score: higher is better
DEFAULT_BATCH_SIZE = 32
MIN_LENGTH = 3  # [CLS], one token of text, [SEP]


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def _thawed(frozen: type, name: str) -> type:
    """An option dataclass with `frozen`'s fields, declarations and all, that instances may assign to.

    A dataclass that is not frozen cannot inherit from a frozen one, and the tasks' option classes
    (LongOptions) are frozen while the training ones are not; this copies the fields rather than
    restating them.
    """
    hints = typing.get_type_hints(frozen)
    made = dataclasses.make_dataclass(name, [
        (f.name, hints[f.name], dataclasses.field(default=f.default, metadata=f.metadata, kw_only=f.kw_only))
        for f in dataclasses.fields(frozen)], bases=(Options,))
    made.__module__ = __name__
    made.__doc__ = frozen.__doc__
    return made


# The long-document options (--long, --side, --head, --stride, --aggregate, --max-windows) of training and evaluation.
LongSettings = _thawed(LongOptions, "LongSettings")
LONG_OPTIONS = tuple(s.name for s in specs(LongOptions))


@dataclass
class TrainConfig(LongSettings):
    """How a training run trains; all but RESUMABLE_CHANGES decide what it computes, and so must match on resume."""

    epochs: int = option(3, "passes over the training data", ge=1)
    max_steps: int | None = option(None, "stop after N optimizer steps (overrides --epochs)", ge=1)
    lr: float = option(5e-5, "peak learning rate", gt=0)
    # None is the default size, unless a token budget is given: then the budget alone shapes the batches.
    batch_size: int | None = option(None, "sequences per batch", ge=1,
                                    default_help=f"{DEFAULT_BATCH_SIZE} unless --batch-tokens")
    batch_tokens: int | None = option(None, "token budget per batch (batch size x longest sequence)", ge=1)
    max_length: int | None = option(256, "tokens per sequence: a longer text is cut (--long truncate, head+tail; "
                                         "the count is reported) or read in windows this long (--long chunk)",
                                    ge=MIN_LENGTH)
    # Random batches, as transformers' Trainer draws them: length-sorted ones (e.g. 64) step ~10% faster on a CPU but
    # make each batch's examples alike, which cost 0.4-0.9 accuracy points a seed (benchmarks/NOTES.md, fine-tuning).
    bucket_size: int = option(0, "batches' worth of examples grouped by length before shuffling (faster steps, less "
                                 "varied batches); 0 = random batches", ge=0)
    warmup_ratio: float = option(0.1, "share of steps with linear warm-up", ge=0, lt=1)
    weight_decay: float = option(0.01, "AdamW weight decay, not on biases/LayerNorm", ge=0)
    grad_accum: int = option(1, "batches per optimizer step", ge=1)
    max_grad_norm: float | None = option(1.0, "gradient clipping norm; 0 disables", ge=0)
    # Seeds reach torch.manual_seed, which takes an unsigned 64-bit number; negative ones are refused up front.
    seed: int = option(42, "one seed for split, order, dropout and head", ge=0, le=2**64 - 1)
    class_weights: Literal["balanced"] | None = option(None, "weigh classes inversely to their frequency")
    threshold: float = threshold_option(DEFAULT_THRESHOLD)
    metric: Metric = option("macro_f1", "selects the best checkpoint and drives early stopping")
    patience: int | None = option(None, "stop after N evaluations without improvement", ge=1)
    eval_every: int | None = option(None, "also evaluate every N steps (always at each epoch's end)", ge=1)
    save_every: int | None = option(None, "also checkpoint every N steps (always at each epoch's end)", ge=1)
    # Each read-out is a host sync on a GPU, so not every step.
    log_every: int = option(10, "steps between loss read-outs", ge=1)
    keep_checkpoints: bool = option(False, "keep DIR/checkpoints after success")
    eval_batch_tokens: int | None = option(None, "token budget per evaluation batch", ge=1,
                                           default_help="the model's", cli=False)
    restore_best: bool = option(True, "end with the best evaluated weights rather than the last ones", cli=False)

    # Settings that may change between a run and its resumption: they change how it is watched or stored,
    # not its numbers. Every other field is compared on resume (resume_conflicts), so a new one is by default.
    RESUMABLE_CHANGES: ClassVar[tuple[str, ...]] = ("log_every", "save_every", "eval_batch_tokens", "keep_checkpoints")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field (construction and dataclasses.replace already do; call it after assigning one)."""
        check(self)

    @property
    def sequences_per_batch(self) -> int | None:
        """The batch size in sequences, or None when a token budget alone shapes the batches."""
        if self.batch_size is None and self.batch_tokens is None:
            return DEFAULT_BATCH_SIZE
        return self.batch_size

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def defaults(*classes: type) -> dict[str, Any]:
    """Every option's default, for the given option dataclasses."""
    return {s.name: s.default for cls in classes for s in specs(cls)}


def resume_conflicts(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The names in `current` whose values differ from the `saved` run's and may not change on resume.

    Only TrainConfig.RESUMABLE_CHANGES may differ. `saved` should hold every name (fill it from
    `defaults(...)` for a run saved before a setting existed): a missing one counts as changed.
    """
    return [k for k, v in current.items() if k not in TrainConfig.RESUMABLE_CHANGES and saved.get(k) != v]
