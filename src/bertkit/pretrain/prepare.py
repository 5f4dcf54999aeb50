"""A text source to training data for masked-LM: documents read, split, tokenized once, counted and packed.

One pass over the source: each document is read (sources), sent to the held-out side or the
training side (a seeded draw per document, so a document's windows never straddle the two, or a
separate `eval_data` source), tokenized once and packed into windows (packing); the unigram
baseline counts the training windows' pieces. Only token ids are kept in memory, never the text.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from bertkit.errors import BertkitError, OptionError
from bertkit.pretrain.baseline import UnigramBaseline
from bertkit.pretrain.masking import Masker
from bertkit.pretrain.packing import TokenWindows, WindowPacker, check_max_length, tokenize_documents
from bertkit.pretrain.sources import DocumentCounts, read_documents
from bertkit.tokenizer import Tokenizer

DEFAULT_EVAL_FRACTION = 0.05
SPLIT_STREAM = 2  # the split's generator is apart from the masking streams (masking.TRAIN_STREAM, EVAL_STREAM)


@dataclass
class PretrainData:
    """Training windows, held-out windows (None without evaluation), the baseline, and what was read."""

    train: TokenWindows
    eval: TokenWindows | None
    baseline: UnigramBaseline
    report: dict = field(default_factory=dict)

    def describe(self) -> list[str]:
        """What was read, skipped and packed, a line each, for the user."""
        lines = []
        for key, what in (("data", "read"), ("eval_data", "read for evaluation")):
            if (side := self.report.get(key)) is not None:
                skipped = side["no_tokens_skipped"]
                lines.append(f"{what}: {side['summary']}" + (f"; {skipped:,} without tokens skipped" if skipped else ""))
        for key, what in (("train", "training"), ("eval", "held out")):
            if (side := self.report.get(key)) is not None:
                lines.append(f"{what}: {side['documents']:,} documents in {side['windows']:,} windows "
                             f"({side['tokens']:,} tokens, at most {self.report['max_length']} a window)")
        return lines


def check_eval_fraction(eval_fraction: float) -> float:
    if isinstance(eval_fraction, bool) or not isinstance(eval_fraction, (int, float)) or not 0 <= eval_fraction < 1:
        raise OptionError("eval_fraction", f"must be a fraction from 0 (no evaluation) up to but not including 1, "
                                           f"not {eval_fraction!r}")
    return float(eval_fraction)


def prepare_data(tokenizer: Tokenizer, data: str | os.PathLike, *, max_length: int, limit: int,
                 eval_data: str | os.PathLike | None = None, eval_fraction: float = DEFAULT_EVAL_FRACTION,
                 seed: int = 0, pack: bool = True, text_column: str | None = None, paragraphs: bool = False,
                 progress: bool = True) -> PretrainData:
    """Read `data` (and `eval_data`) into windows of at most `max_length` tokens, which must fit the model's `limit`.

    Without `eval_data`, each document is held out with probability `eval_fraction` (seeded by `seed`);
    0 means no evaluation. `text_column` and `paragraphs` say what a document is (sources).
    """
    max_length = check_max_length(max_length, limit)
    eval_fraction = check_eval_fraction(eval_fraction)
    specials = Masker.for_tokenizer(tokenizer).special_ids.tolist()
    baseline = UnigramBaseline(tokenizer.vocab_size, specials)
    train = WindowPacker(max_length, tokenizer.cls_id, tokenizer.sep_id, pack)
    held_out = WindowPacker(max_length, tokenizer.cls_id, tokenizer.sep_id, pack)
    split = eval_data is None and eval_fraction > 0
    rng = np.random.default_rng([SPLIT_STREAM, int(seed) % 2**64])
    read = DocumentCounts()
    texts = read_documents(data, text_column=text_column, paragraphs=paragraphs, counts=read)
    no_tokens = 0
    for doc in _progress(tokenize_documents(tokenizer, texts), progress, f"tokenizing {data}"):
        to_eval = split and rng.random() < eval_fraction
        if not len(doc):
            no_tokens += 1
        elif to_eval:
            held_out.add(doc)
        else:
            train.add(doc)
    report = {"data": _side(read, no_tokens), "max_length": max_length, "pack": pack, "paragraphs": paragraphs}
    if not train.documents:
        raise BertkitError(f"{data} holds no document with tokens to train on ({read.summary()}"
                           f"{f', {no_tokens:,} without tokens' if no_tokens else ''}); pass documents with text")
    windows = {"train": train.finish()}
    baseline.update(windows["train"].tokens)  # the training documents' pieces; it skips [CLS] and [SEP]
    if eval_data is not None:
        eval_read = DocumentCounts()
        eval_texts = read_documents(eval_data, text_column=text_column, paragraphs=paragraphs, counts=eval_read)
        eval_no_tokens = 0
        for doc in _progress(tokenize_documents(tokenizer, eval_texts), progress, f"tokenizing {eval_data}"):
            if len(doc):
                held_out.add(doc)
            else:
                eval_no_tokens += 1
        report["eval_data"] = _side(eval_read, eval_no_tokens)
        if not held_out.documents:
            raise BertkitError(f"{eval_data} holds no document with tokens to evaluate on; pass documents with text")
    elif split and not held_out.documents:
        raise OptionError("eval_fraction", f"{eval_fraction} of {train.documents:,} documents held out none; raise it, "
                                           f"pass eval_data, or set it to 0 to train without evaluation")
    windows["eval"] = held_out.finish() if held_out.documents else None
    for side, w in windows.items():
        report[side] = None if w is None else {"documents": w.documents, "windows": len(w), "tokens": w.num_tokens}
    return PretrainData(windows["train"], windows["eval"], baseline, report)


def _side(read: DocumentCounts, no_tokens: int) -> dict:
    return {"files": read.files, "documents": read.documents, "characters": read.characters,
            "blank_skipped": read.blank, "no_tokens_skipped": no_tokens, "summary": read.summary()}


def _progress(items: Iterable, enabled: bool, description: str) -> Iterable:
    from bertkit.terminal import progress_bar

    return progress_bar(items, desc=description, unit="docs", disable=not enabled, dynamic_ncols=True)
