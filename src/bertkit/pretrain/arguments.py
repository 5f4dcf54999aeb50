"""What `bertkit pretrain` trains on and how it masks, declared once: `pretrain_mlm`'s keywords and the command's flags derive from here."""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Any, Literal

from bertkit.data import TEXT_COLUMNS, formats_help
from bertkit.errors import OptionError
from bertkit.model import Model
from bertkit.options import Options, option
from bertkit.pretrain.masking import DEFAULT_MASK_PROB, MASKING
from bertkit.pretrain.prepare import DEFAULT_EVAL_FRACTION
from bertkit.train.config import LONG_OPTIONS, MIN_LENGTH

Text = str | os.PathLike  # a file or a folder of files: unlabelled text is read from disk, streamed

# TrainConfig's settings that masked-LM training does not take: classification's, and the two it sets itself (the
# window length is --max-length below; the best model is the one with the lowest held-out masked loss).
NOT_FOR_PRETRAINING = (*LONG_OPTIONS, "class_weights", "threshold", "metric", "max_length")
SELECTED_BY = "loss"


@dataclass
class PretrainArguments(Options):
    """The model, the unlabelled text and how it is windowed and masked: `bertkit pretrain`'s own flags."""

    model: str | os.PathLike | Model = option("minilm", "bundled alias, local folder or hub id; one without a masked-LM "
                                                        "head gets a new one", short="-m")
    data: Text | None = option(None, f"unlabelled text: a file ({formats_help()}) or a folder of them; a .txt line is a "
                                     f"document (see --paragraphs), a table's row is one")
    eval_data: Text | None = option(None, "held-out text to evaluate on",
                                    default_help="a seeded --eval-fraction of --data's documents")
    eval_fraction: float = option(DEFAULT_EVAL_FRACTION, "share of --data's documents held out for evaluation when "
                                                         "there is no --eval-data; 0: no evaluation", ge=0, lt=1)
    text_column: str | None = option(None, "a table's column holding the text", default_help="/".join(TEXT_COLUMNS))
    paragraphs: bool = option(False, "a .txt document is a paragraph (lines up to a blank line), not a line")
    mask_prob: float = option(DEFAULT_MASK_PROB, "share of tokens to mask; of those, 8 in 10 become [MASK], 1 in 10 "
                                                 "a random token, 1 in 10 stay as they are", gt=0, lt=1)
    mask: Literal[MASKING] = option(MASKING[0], "mask whole words (all their pieces) or word pieces on their own")
    max_length: int = option(128, "tokens per window, [CLS] and [SEP] included (at most the model's positions)",
                             ge=MIN_LENGTH)
    pack: bool = option(True, "pack documents into full windows, [SEP] between them; --no-pack: one document per "
                              "sequence (a long one cut into windows)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.data is None:
            raise OptionError("data", f"is missing: pass unlabelled text, a file ({formats_help()}) or a folder of them")

    def given_by_name(self) -> bool:
        """Whether the model is a name or a path, which `bertkit pretrain --resume` can load again from the saved run."""
        return isinstance(self.model, (str, os.PathLike))

    def to_record(self) -> dict[str, Any]:
        """The arguments as plain JSON values."""
        def plain(value: Any) -> Any:
            if isinstance(value, os.PathLike):
                return os.fspath(value)
            if isinstance(value, Model):
                return str(value.source)
            return value

        return {f.name: plain(getattr(self, f.name)) for f in fields(self)}
