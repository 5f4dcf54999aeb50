"""What to train on and how to read it, declared once: `finetune`'s and `evaluate_model`'s keywords and their CLI flags derive from here."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from typing import Any, Literal, Union

from bertkit.classification import threshold_option
from bertkit.data import LABEL_COLUMNS, TEXT_COLUMNS, formats_help
from bertkit.errors import OptionError
from bertkit.model import Model
from bertkit.options import Options, check, option
from bertkit.train.config import MIN_LENGTH, LongSettings, TrainConfig

# Data: a file or a built-in dataset name (all the command line can pass) or, from Python, a DataFrame,
# a Hugging Face dataset or a TextDataset. `object` lets those through; load_dataset says what it cannot read.
DataSource = Union[str, os.PathLike, object]


class _Checked(Options):
    """Options with rules between fields: `validate` runs the field checks, then those rules."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        check(self)


@dataclass
class _ModelAndData(_Checked):
    # A base of its own so that these two come first in TrainArguments (and in `bertkit train --help`).
    model: str | os.PathLike | Model = option("minilm", "bundled alias, local folder or hub id", short="-m")
    data: DataSource | None = option(None, f"a data file ({formats_help()}) or built-in dataset (see `bertkit datasets`)")


@dataclass
class DataColumns(_Checked):
    """Where a table keeps its texts and labels, and what to do with rows that lack them (train and evaluate)."""

    text_column: str | None = option(None, "column holding the text", default_help="/".join(TEXT_COLUMNS))
    label_column: str | None = option(None, "column holding the label",
                                      default_help="/".join(LABEL_COLUMNS))
    pair_column: str | None = option(None, "column holding a second text, for sentence-pair tasks")
    drop_invalid: bool = option(False, "drop (with a warning) rows with empty text or label")


@dataclass
class TrainArguments(DataColumns, _ModelAndData):
    """The model, the data and how they are split and checked: `bertkit train`'s data flags, `finetune`'s keywords."""

    eval_data: DataSource | None = option(None, "a separate evaluation file", default_help="a stratified split of --data")
    test_data: DataSource | None = option(None, "a held-out test file, scored once with the final model")
    # A whole number is a row count, a fraction a share: int is tried first when parsing a flag.
    test_size: int | float = option(0.1, "evaluation share of --data: a fraction or a row count", gt=0)
    limit: int | None = option(None, "train on a stratified subset of exactly N examples (at least one per class)", ge=1)
    eval_limit: int | None = option(None, "evaluate on a stratified subset of exactly N examples", ge=1)
    multi_label: bool = option(False, "each row may carry several labels (sigmoid + BCE)")
    strict: bool = option(False, "fail, rather than warn, on suspicious splits")

    def validate(self) -> None:
        super().validate()
        if self.data is None:
            raise OptionError("data", f"is missing: pass a data file ({formats_help()}) or a built-in dataset name "
                                      f"(see `bertkit datasets`)")
        if isinstance(self.test_size, float) and not self.test_size < 1:
            raise OptionError("test_size", f"must be a fraction below 1 (e.g. 0.1) or a whole row count (e.g. 500), "
                                           f"not {self.test_size!r}")

    def given_by_name(self) -> bool:
        """Whether model and data are names or paths, which `bertkit train --resume` can load again from the saved run."""
        return all(isinstance(v, (str, os.PathLike)) for v in (self.model, self.data, self.eval_data, self.test_data)
                   if v is not None)

    def to_record(self) -> dict[str, Any]:
        """The arguments as plain JSON values: names and paths as text, in-memory data by their type."""
        def plain(value: Any) -> Any:
            if value is None or isinstance(value, (bool, int, float, str)):
                return value
            if isinstance(value, os.PathLike):
                return os.fspath(value)
            if isinstance(value, Model):
                return str(value.source)
            return type(value).__name__

        return {f.name: plain(getattr(self, f.name)) for f in fields(self)}


@dataclass
class EvaluateOptions(DataColumns, LongSettings):
    """How `evaluate_model` (and `bertkit evaluate`) scores a classifier: which rows, how long, which threshold, and
    how long documents are read (by default as the model was trained)."""

    split: Literal["train", "eval", "test"] | None = option(
        None, "only the rows of this split of the model's training run (from its split.json)")
    limit: int | None = option(None, "a stratified subset of exactly N examples (at least one per class)", ge=1)
    max_length: int | None = option(None, "tokens per sequence (the window length under --long chunk)", ge=MIN_LENGTH,
                                    default_help="the training run's")
    batch_tokens: int | None = option(None, "token budget per batch", ge=1, default_help="the model's")
    threshold: float | None = threshold_option(None, default_help="the model's")


def split_keywords(keywords: dict[str, Any], *classes: type, caller: str) -> list[dict[str, Any]]:
    """Sort keyword arguments into one dict per options class; a name no class declares is a TypeError, as in Python."""
    out: list[dict[str, Any]] = [{} for _ in classes]
    for name, value in keywords.items():
        for i, cls in enumerate(classes):
            if name in {f.name for f in fields(cls)}:
                out[i][name] = value
                break
        else:
            raise TypeError(f"{caller}() got an unexpected keyword argument {name!r}")
    return out


def options_from_keywords(arguments_class: type, model: Any, data: Any, config: TrainConfig | None,
                          keywords: dict[str, Any], *, caller: str, refused: tuple[str, ...] = (),
                          refusal: str = "") -> tuple[Any, TrainConfig]:
    """A recipe's keywords as (its arguments, its TrainConfig): `arguments_class`'s fields build the first, the rest
    are TrainConfig settings that override `config`; a setting in `refused` is one the recipe does not take
    (an OptionError saying `refusal`)."""
    given, settings = split_keywords(keywords, arguments_class, TrainConfig, caller=caller)
    for name in settings:
        if name in refused:
            raise OptionError(name, refusal)
    arguments = arguments_class(model=model, data=data, **given)
    return arguments, dataclasses.replace(config, **settings) if config is not None else TrainConfig(**settings)
