"""Documents to the windows masked-LM training reads: tokenized once, framed [CLS] ... [SEP], stored flat.

Two layouts (`pack`):

* packed (the default): whole documents are laid end to end in windows of at most `max_length`
  tokens, a [SEP] between two documents sharing a window. A document is cut only when it is longer
  than a window: it then starts a window of its own, fills as many whole windows as it needs, and
  its last piece shares a window with the documents after it. (transformers' run_mlm.py cuts the
  concatenated stream every `max_length` tokens, wherever that falls; keeping short documents whole
  costs nothing here, because batches are unpadded: a window a few tokens short is just a shorter
  sequence, never padding.)
* one document per sequence (`pack=False`): each document its own windows, a long one cut into
  windows of `max_length`.

Either way every token of every document is in exactly one window, once, in document order, and no
window holds two [SEP] in a row. A window whose first token continues a word cut at the previous
window's end starts a new word there (the masking groups pieces by word within a window).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np

from bertkit.errors import OptionError
from bertkit.tokenizer import Encoding, Tokenizer

FRAMING = 2  # [CLS] and the closing [SEP]
TOKEN_DTYPE = np.int32
ENCODE_BATCH = 256  # texts handed to the tokenizer at once (it encodes a batch in parallel)


def check_max_length(max_length: int, limit: int) -> int:
    """`max_length` when it is a whole number of tokens that a window can hold and the model can read."""
    if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)):
        raise OptionError("max_length", f"must be a whole number of tokens, not {max_length!r}")
    if max_length < FRAMING + 1:
        raise OptionError("max_length", f"is {max_length}, too short for [CLS], one token and [SEP]; use at least {FRAMING + 1}")
    if max_length > limit:
        raise OptionError("max_length", f"is {max_length}, longer than the {limit} positions this model reads; "
                                        f"use at most {limit}")
    return int(max_length)


@dataclass
class DocumentTokens:
    """One document's word pieces, without [CLS]/[SEP]: their ids and which of them begin a word."""

    ids: np.ndarray  # int32 [n]
    word_starts: np.ndarray  # bool [n]

    def __len__(self) -> int:
        return len(self.ids)


def document_tokens(encoding: Encoding) -> DocumentTokens:
    """The pieces of an encoding made without special tokens; a piece begins a word when its word id changes."""
    ids = np.asarray(encoding.ids, dtype=TOKEN_DTYPE)
    words = np.asarray([-1 if w is None else w for w in encoding.word_ids], dtype=np.int64)
    starts = np.ones(len(ids), dtype=bool)
    starts[1:] = words[1:] != words[:-1]
    return DocumentTokens(ids, starts)


def tokenize_documents(tokenizer: Tokenizer, texts: Iterable[str], batch: int = ENCODE_BATCH) -> Iterator[DocumentTokens]:
    """Each text's pieces (no [CLS]/[SEP], never truncated), in order; the tokenizer runs on `batch` texts at a time."""
    pending: list[str] = []
    for text in texts:
        pending.append(text)
        if len(pending) == batch:
            yield from (document_tokens(e) for e in tokenizer.encode_batch(pending, add_special_tokens=False))
            pending = []
    if pending:
        yield from (document_tokens(e) for e in tokenizer.encode_batch(pending, add_special_tokens=False))


@dataclass
class TokenWindows:
    """The sequences the model reads, end to end: window i is tokens[offsets[i]:offsets[i + 1]], framing included."""

    tokens: np.ndarray  # int32 [N]
    word_starts: np.ndarray  # bool [N]: the token begins a word ([CLS], [SEP] never do)
    offsets: np.ndarray  # int64 [W + 1]
    documents: int  # how many documents the windows hold

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> list[int]:
        return np.diff(self.offsets).tolist()

    @property
    def num_tokens(self) -> int:
        return len(self.tokens)

    def window(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Window i's token ids and word starts (views, not copies)."""
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.tokens[a:b], self.word_starts[a:b]


class WindowPacker:
    """Builds TokenWindows from documents fed one at a time (`add`), by the module docstring's rules."""

    def __init__(self, max_length: int, cls_id: int, sep_id: int, pack: bool = True):
        self.body = max_length - FRAMING
        if self.body < 1:
            raise ValueError(f"max_length {max_length} leaves no room between [CLS] and [SEP]")
        self.cls_id, self.sep_id, self.pack = cls_id, sep_id, pack
        self._windows: list[tuple[np.ndarray, np.ndarray]] = []
        self._open: list[DocumentTokens] = []  # documents (or a long one's last piece) in the window being filled
        self._open_length = 0  # their tokens plus the [SEP]s between them
        self.documents = 0

    def add(self, doc: DocumentTokens) -> None:
        if len(doc) == 0:
            raise ValueError("an empty document has no tokens to pack; skip it before packing")
        self.documents += 1
        if len(doc) > self.body or not self.pack:
            self._close()
            whole, rest = divmod(len(doc), self.body)
            for k in range(whole):
                self._emit([_piece(doc, k * self.body, (k + 1) * self.body)])
            if rest:
                self._open, self._open_length = [_piece(doc, whole * self.body, len(doc))], rest
            if not self.pack:
                self._close()
            return
        needed = len(doc) + (1 if self._open else 0)
        if self._open_length + needed > self.body:
            self._close()
            needed = len(doc)
        self._open.append(doc)
        self._open_length += needed

    def finish(self) -> TokenWindows:
        """Close the last window and return all of them; the packer is spent."""
        self._close()
        lengths = [len(ids) for ids, _ in self._windows]
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        tokens = np.concatenate([ids for ids, _ in self._windows]) if self._windows else np.zeros(0, TOKEN_DTYPE)
        starts = np.concatenate([s for _, s in self._windows]) if self._windows else np.zeros(0, bool)
        self._windows = []
        return TokenWindows(tokens, starts, offsets, self.documents)

    def _close(self) -> None:
        if self._open:
            self._emit(self._open)
        self._open, self._open_length = [], 0

    def _emit(self, parts: Sequence[DocumentTokens]) -> None:
        cls, sep = np.array([self.cls_id], TOKEN_DTYPE), np.array([self.sep_id], TOKEN_DTYPE)
        no_word = np.zeros(1, bool)
        ids, starts = [cls], [no_word]
        for k, part in enumerate(parts):
            if k:
                ids.append(sep)
                starts.append(no_word)
            ids.append(part.ids)
            starts.append(part.word_starts)
        ids.append(sep)
        starts.append(no_word)
        window_starts = np.concatenate(starts)
        window_starts[1] = True  # a word cut at the previous window's end starts afresh here
        self._windows.append((np.concatenate(ids), window_starts))


def _piece(doc: DocumentTokens, start: int, stop: int) -> DocumentTokens:
    return DocumentTokens(doc.ids[start:stop], doc.word_starts[start:stop])


def pack_documents(documents: Iterable[DocumentTokens], max_length: int, cls_id: int, sep_id: int,
                   pack: bool = True) -> TokenWindows:
    """Every (non-empty) document in windows of at most `max_length` tokens; see the module docstring."""
    packer = WindowPacker(max_length, cls_id, sep_id, pack)
    for doc in documents:
        packer.add(doc)
    return packer.finish()
