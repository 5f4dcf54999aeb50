"""Long documents: how a text longer than the model's window becomes the sequences the model reads.

Three strategies, one option on every text task (`long`):

* `truncate` (the default): keep the first tokens (`side="right"` cuts the end) or the last ones
  (`side="left"`), as a tokenizer's truncation does;
* `head+tail`: keep the first `head` tokens and fill the rest of the window from the end — the split
  Sun et al. (2019, "How to Fine-Tune BERT for Text Classification?") found best on IMDb was 128 + 382;
* `chunk`: read the whole text in overlapping windows of the model's length. `stride` is the
  *overlap*, the tokens a window shares with the one before it (not the step between windows, as
  some libraries use the word). Windows are cut at word boundaries where possible and each is
  framed with [CLS] ... [SEP]; the task then aggregates the windows' results per document.

A text that fits the window gives exactly the same sequence under every strategy.

How much of a text is read is bounded before it is tokenized (`read_text`), so memory does not
grow with a text's length: from each end a strategy keeps, only the characters that give the
tokens it keeps (at most CHARS_PER_TOKEN characters a kept token), cut at a space. truncate reads
its end, head+tail both ends, chunk with `max_windows` the characters its windows can hold (a text
needing more windows is refused before the rest is tokenized); chunk without `max_windows` reads all.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Literal, Optional

from bertkit.errors import OptionError
from bertkit.options import Options, option
from bertkit.tokenizer import Encoding

Strategy = Literal["truncate", "head+tail", "chunk"]
Aggregation = Literal["mean", "max", "first", "vote"]


# What a strategy option means when neither the caller nor the model's training run says otherwise.
DEFAULTS = {"long": "truncate", "side": "right", "head": 128}
SAVED = "long_document"  # the key under which a trained model's config.json keeps its training strategy


def _default(name: str) -> str:
    return f"the model's training setting, else {DEFAULTS[name]}"


@dataclass(frozen=True)
class LongOptions(Options):
    """The long-document options every text task has (keyword-only, after the task's own)."""

    long: Optional[Strategy] = option(None, "what to do with a text longer than the model's window: cut it "
                                            "(truncate), keep its start and end (head+tail), or read all of it in "
                                            "overlapping windows (chunk)", shared=False, kw_only=True,
                                      default_help=_default("long"))
    side: Optional[Literal["right", "left"]] = option(None, "truncate: cut the end of the text (right) or its start "
                                                            "(left)", shared=False, kw_only=True,
                                                      default_help=_default("side"))
    head: Optional[int] = option(None, "head+tail: tokens kept from the start; the rest of the window is the "
                                       "text's end", ge=0, shared=False, kw_only=True, default_help=_default("head"))
    stride: Optional[int] = option(None, "chunk: the overlap, in tokens, between a window and the one before it "
                                         "(not the step between windows)", ge=0, shared=False, kw_only=True,
                                   default_help="the model's training setting, else a quarter of the window")
    aggregate: Optional[Aggregation] = option(None, "chunk: how the windows' results become one answer per text: "
                                                    "mean (token-weighted), max, first, or vote (classification)",
                                              shared=False, kw_only=True,
                                              default_help="the model's training setting, else the task's first: "
                                                           "mean (rerank: max)")
    max_windows: Optional[int] = option(None, "chunk: refuse a text that needs more windows than this",
                                        ge=1, shared=False, kw_only=True, default_help="no limit")


@dataclass(frozen=True)
class Plan:
    """The long-document settings in force for one call: the caller's, else the model's training run's, else defaults."""

    long: str = DEFAULTS["long"]
    side: str = DEFAULTS["side"]
    head: int = DEFAULTS["head"]
    stride: int | None = None
    aggregate: str = "mean"  # Plan.of puts the task's own default here
    max_windows: int | None = None
    window: int | None = None  # tokens per sequence a model was trained on: its tasks' default limit

    @classmethod
    def of(cls, options: object, saved: dict | None, aggregations: tuple[str, ...], task: str) -> "Plan":
        """Resolve `options` (any object; tasks without long options get the defaults) against a model's saved plan.

        An aggregation the task does not have is an error when the caller asked for it, and falls
        back to the task's default (its first) when it came from the model (a classifier trained
        with vote, used for embed).
        """
        saved = saved or {}
        given = {name: getattr(options, name, None) for name in ("long", "side", "head", "stride", "aggregate",
                                                                  "max_windows")}
        if given["aggregate"] is not None and given["aggregate"] not in aggregations:
            shown = ", ".join(aggregations) if aggregations else "none (it reads each item from the window with the most context)"
            raise OptionError("aggregate", f"cannot be {given['aggregate']!r} for {task}; it takes {shown}")
        values = {k: v if v is not None else saved.get(k) for k, v in given.items()}
        values["window"] = saved.get("window")
        if values["aggregate"] not in aggregations:
            values["aggregate"] = aggregations[0] if aggregations else None
        return cls(**{k: v for k, v in values.items() if v is not None})

    def saved(self) -> dict:
        """What a training run records in the model's config (and `Plan.of` reads back as the model's default)."""
        return {"long": self.long, "side": self.side, "head": self.head, "stride": self.stride,
                "aggregate": self.aggregate, "window": self.window}


@dataclass
class Document:
    """One input after tokenizing: the windows the model reads and how much of the text they leave out."""

    windows: list[Encoding]  # each framed with [CLS] ... [SEP], within the model's limit
    starts: list[int]  # where each window's first content token sits among the document's content tokens
    unseen: int  # content tokens no window holds (always 0 for chunk); at least this many when `unread`
    full: Encoding | None = None  # the tokenization windows were cut from (of what was read: see `unread`)
    unread: int = 0  # characters never tokenized: the text was longer than its strategy reads (read_text)

    @property
    def tokens(self) -> int:
        """Content tokens the windows hold, counting overlaps once per window (the weight of a document)."""
        return sum(content_length(w) for w in self.windows)


def content_length(encoding: Encoding) -> int:
    return sum(1 for special in encoding.special_tokens_mask if not special)


# -- how much of a text is read -------------------------------------------------------------------------
# The most characters read per token a strategy keeps. Text averages 1 (Chinese) to 5 (English) characters a
# token and a word longer than WordPiece's 100 characters is one [UNK]; only long runs of spaces or of
# unsplittable characters come near this, and of those only the first CHARS_PER_TOKEN x tokens are read.
CHARS_PER_TOKEN = 100
FIRST_READ = 8  # characters per kept token read first; doubled until the tokens are there, up to CHARS_PER_TOKEN
# A cut that finds no space near it may split a word, changing that word's pieces: it then reads this many tokens
# more, the most pieces one word makes (WordPiece splits words of up to 100 characters), so the kept ones are exact.
WORD_PIECES = 100
# What is left out between the ends read is still counted (not kept), PIECE_CHARS at a time, when it is at most
# COUNT_CHARS long: the tokens a text lost stay exact up to a long book's length (~200,000 tokens), at a memory
# cost of one piece; past that, counting would take longer than the rest of the work, so a count says "at least".
COUNT_CHARS = 1_000_000
PIECE_CHARS = 1 << 16
# Where a text may be cut without changing its tokens: the characters BERT's normaliser and pre-tokeniser treat as
# spaces (not the control characters it deletes, such as form feeds, which join the words around them).
SPACES = " \t\n\r\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"


@dataclass(frozen=True)
class Reading:
    """What of a text is tokenized: its start up to `gap_at` and its end after the `gap` characters left out there."""

    text: str  # text[:gap_at] + text[gap_at + gap:]: what the tokenizer sees
    gap_at: int
    gap: int = 0
    gap_tokens: int | None = None  # the tokens of the gap, counted piece by piece when it is short enough
    short: bool = False  # characters were left out, yet an end gave fewer tokens than asked (long runs of spaces)

    @property
    def unread(self) -> int:
        """Characters never tokenized, not even counted: their tokens are unknown."""
        return self.gap if self.gap_tokens is None else 0


def tokens_read(plan: Plan, limit: int) -> tuple[int, int] | None:
    """The tokens a text's start and end must give under `plan` with `limit`-token windows; None: all of it is read."""
    if plan.long == "chunk":
        return None if plan.max_windows is None else (plan.max_windows * limit, 0)
    if plan.long == "head+tail":
        head = min(plan.head, limit)
        return head, limit - head
    return (0, limit) if plan.side == "left" else (limit, 0)


def read_text(count: Callable[[str], int], text: str, first: int, last: int, count_rest: bool = True) -> Reading:
    """The part of `text` that gives its first `first` and last `last` tokens (`count` says how many a string
    gives), cut at spaces, so the tokens kept are those the whole text would give; the whole text when it is short.

    With `count_rest`, the tokens of the part left out are counted too, a piece at a time, when it is at
    most COUNT_CHARS long and cut at spaces: then truncation counts stay exact.
    """
    n = len(text)
    if n <= (first + last) * FIRST_READ:
        return Reading(text, n)
    head, short_head, head_spaced = _reach(count, text, first, forward=True) if first else (0, False, True)
    tail, short_tail, tail_spaced = _reach(count, text, last, forward=False) if last else (n, False, True)
    if tail <= head:
        return Reading(text, n)
    counted = _count_between(count, text, head, tail) if count_rest and head_spaced and tail_spaced else None
    return Reading(text[:head] + text[tail:], head, tail - head, counted, short_head or short_tail)


def read_inputs(count: Callable[[str], int], windowed: list[str], whole: list[str] | None, plan: Plan,
                limit: int) -> tuple[list[Reading], list[Reading] | None]:
    """What of each input is tokenized under `plan`: the texts it windows, and the texts of pairs it keeps whole
    (which need no more than a window's tokens; under right truncation the tokenizer cuts both)."""
    reach = tokens_read(plan, limit)
    # Under chunk a text cut short is refused (it needs more than max_windows windows): nothing to count.
    readings = [read_text(count, t, *reach, count_rest=plan.long != "chunk") if reach else Reading(t, len(t))
                for t in windowed]
    others = None if whole is None else [read_text(count, t, limit, 0) for t in whole]
    right = plan.long == "truncate" and plan.side == "right"
    for r in (others or []) if not right else []:
        if r.gap and r.short:
            raise OptionError("long", f"leaves no room for the text: the other text of a pair is longer than the "
                                      f"{len(r.text):,} characters a window of {limit} tokens reads; shorten it")
    for r in readings if plan.long == "chunk" else []:
        if r.gap and r.short:
            raise OptionError("max_windows", f"is {plan.max_windows}, but a text is longer than the "
                                             f"{len(r.text):,} characters {plan.max_windows} windows of {limit} tokens "
                                             "read; shorten it, raise {name}, or use another long strategy")
    return readings, others


def _reach(count: Callable[[str], int], text: str, tokens: int, forward: bool) -> tuple[int, bool, bool]:
    """(where to cut, whether it fell short, whether the cut is at a space) for the fewest characters from one end
    that give `tokens` tokens; the whole text when the characters needed reach past it."""
    n = len(text)
    per = FIRST_READ
    while True:
        span = tokens * per
        if span >= n:
            return (n if forward else 0), False, True
        cut = _space_before(text, span) if forward else _space_after(text, n - span)
        found = count(text[:cut] if forward else text[cut:])
        spaced = text[cut] in SPACES
        if found >= tokens + (0 if spaced else WORD_PIECES) or per >= CHARS_PER_TOKEN:
            return cut, found < tokens, spaced
        per = min(2 * per, CHARS_PER_TOKEN)


def _count_between(count: Callable[[str], int], text: str, start: int, end: int) -> int | None:
    """The tokens of text[start:end] (cut at spaces at both ends), counted PIECE_CHARS at a time; None when it is
    longer than COUNT_CHARS or a piece finds no space to end at (its count would not be exact)."""
    if end - start > COUNT_CHARS:
        return None
    total = 0
    while start < end:
        stop = end if end - start <= PIECE_CHARS else _space_before(text, start + PIECE_CHARS, start + PIECE_CHARS // 2)
        if stop < end and text[stop] not in SPACES:
            return None
        total += count(text[start:stop])
        start = stop
    return total


def _space_before(text: str, i: int, lo: int | None = None) -> int:
    """The last space at or before i (searching back to `lo`, default half the way), else i: text[:cut] ends a word."""
    found = max(text.rfind(c, i // 2 if lo is None else lo, i + 1) for c in SPACES)
    return found if found > 0 else i


def _space_after(text: str, i: int) -> int:
    """The first space at or after i (searching on half the way), else i: text[cut:] starts at a space if it can."""
    hits = [j for j in (text.find(c, i, i + (len(text) - i) // 2 + 1) for c in SPACES) if j >= 0]
    return min(hits) if hits else i


def shift_offsets(encoding: Encoding, reading: Reading, segment: int = 0) -> Encoding:
    """`encoding` of `reading.text` with the offsets of `segment`'s tokens after the gap moved back to the whole text's."""
    if not reading.gap:
        return encoding
    segments = _segments(encoding)
    offsets = [(a + reading.gap, b + reading.gap) if seg == segment and a >= reading.gap_at and b > a else (a, b)
               for (a, b), seg in zip(encoding.offsets, segments)]
    return replace(encoding, offsets=offsets)


# -- planning windows over a token sequence -------------------------------------------------------------
def chunk_ranges(word_ids: list, budget: int, stride: int) -> list[tuple[int, int]]:
    """Ranges [a, b) over n content tokens: each at most `budget` long, every token covered, consecutive
    ranges sharing at least `stride` tokens, cut between words where a word boundary lies in the last
    half of the window (so a word is not split unless it is longer than half a window)."""
    n = len(word_ids)
    if budget < 1:
        raise OptionError("long", "chunk needs room for at least one text token per window")
    if stride >= budget:
        raise OptionError("stride", f"must be less than the window's {budget} text tokens (it is the overlap)")
    ranges: list[tuple[int, int]] = []
    start = 0
    while True:
        end = min(start + budget, n)
        if end < n:
            cut = end
            while cut > start + budget // 2 and _same_word(word_ids, cut):
                cut -= 1
            if not _same_word(word_ids, cut):
                end = cut
        ranges.append((start, end))
        if end >= n:
            return ranges
        nxt = max(end - stride, start + 1)
        while nxt > start + 1 and _same_word(word_ids, nxt):  # start on a word's first piece (a little more overlap)
            nxt -= 1
        start = nxt


def _same_word(word_ids: list, i: int) -> bool:
    """Whether token i continues the word of token i - 1 (so cutting before i would split a word)."""
    return 0 < i < len(word_ids) and word_ids[i] is not None and word_ids[i] == word_ids[i - 1]


def head_tail_ranges(n: int, budget: int, head: int) -> list[tuple[int, int]]:
    """The kept content ranges: the first `head` tokens and the last `budget - head`."""
    if n <= budget:
        return [(0, n)]
    head = min(head, budget)
    tail = budget - head
    return ([(0, head)] if head else []) + ([(n - tail, n)] if tail else [])


# -- framing ranges as encodings ------------------------------------------------------------------------
def frame(full: Encoding, ranges: list[tuple[int, int]], cls_id: int, sep_id: int, cls: str, sep: str,
          segment: int = 0) -> Encoding:
    """One sequence [CLS] a [SEP] (b [SEP]) whose `segment` keeps only content[ranges...]; the other segment stays whole.

    `full` is an encoding with special tokens; content coordinates count the windowed segment's
    non-special tokens from 0.
    """
    parts = [[k for k, (special, seg) in enumerate(zip(full.special_tokens_mask, _segments(full)))
              if not special and seg == s] for s in (0, 1)]
    parts[segment] = [parts[segment][i] for a, b in ranges for i in range(a, b)]
    paired = bool(full.sequence_ids) and any(s == 1 for s in full.sequence_ids)
    ids, tokens, offsets, word_ids, type_ids, sequence_ids = [cls_id], [cls], [(0, 0)], [None], [0], [None]
    for s, picked in enumerate(parts[:2 if paired else 1]):
        ids += [full.ids[k] for k in picked] + [sep_id]
        tokens += [full.tokens[k] for k in picked] + [sep]
        offsets += [full.offsets[k] for k in picked] + [(0, 0)]
        word_ids += [full.word_ids[k] for k in picked] + [None]
        type_ids += [s] * (len(picked) + 1)
        sequence_ids += [s] * len(picked) + [None]
    special = [0 if s is not None else 1 for s in sequence_ids]
    return Encoding(ids=ids, tokens=tokens, offsets=offsets, word_ids=word_ids, type_ids=type_ids,
                    special_tokens_mask=special, sequence_ids=sequence_ids, n_truncated=0)


def _segments(encoding: Encoding) -> list:
    return encoding.sequence_ids if encoding.sequence_ids else [0] * len(encoding.ids)


def split_document(full: Encoding, limit: int, options: Plan, cls_id: int, sep_id: int, cls: str,
                   sep: str, segment: int = 0, spend: Callable[[int], None] | None = None,
                   read: Reading | None = None) -> Document:
    """The windows of one tokenized text (or pair, windowing `segment` and keeping the other whole).

    `spend(tokens)` is told what the windows will cost before they are built, so a caller with a
    budget can stop a request whose windows would not fit before they take memory. `read`: what of
    the windowed text `full` holds, when read_text left part of it out (`full` then holds its ends).
    """
    read = read or Reading("", 0)
    segments = _segments(full)
    content = [k for k, (special, seg) in enumerate(zip(full.special_tokens_mask, segments))
               if not special and seg == segment]
    pair = sum(1 for special, seg in zip(full.special_tokens_mask, segments) if not special and seg == 1 - segment)
    framing = 2 + (pair + 1 if pair else 0)
    n, budget = len(content), limit - framing
    if n <= budget:  # it fits: the one sequence every strategy gives
        if spend is not None:
            spend(len(full.ids))
        return Document([full], [0], 0, full, read.unread)
    if budget < 1:
        raise OptionError("long", f"leaves no room for the text: the other text of the pair takes {pair} of the "
                                  f"{limit} tokens")
    if options.long in ("truncate", "head+tail"):  # truncate here cuts the start (the end is the tokenizer's own cut)
        ranges = head_tail_ranges(n, budget, options.head if options.long == "head+tail" else 0)
        if spend is not None:
            spend(limit)
        window = frame(full, ranges, cls_id, sep_id, cls, sep, segment)
        window.n_truncated = n - budget + (read.gap_tokens or 0)
        return Document([window], [ranges[0][0] if options.long == "truncate" else 0], window.n_truncated, full,
                        read.unread)
    stride = options.stride if options.stride is not None else budget // 4
    word_ids = [full.word_ids[k] for k in content]
    ranges = chunk_ranges(word_ids, budget, stride)
    if options.max_windows is not None and len(ranges) > options.max_windows:
        needs = f"at least {len(ranges)}" if read.gap else str(len(ranges))  # only its start was read
        raise OptionError("max_windows", f"is {options.max_windows}, but a text needs {needs} windows of "
                                         f"{limit} tokens; shorten it, raise {{name}}, or use another long strategy")
    if spend is not None:
        spend(sum(b - a + framing for a, b in ranges))
    windows = [frame(full, [r], cls_id, sep_id, cls, sep, segment) for r in ranges]
    return Document(windows, [a for a, _ in ranges], 0, full, read.unread)


def best_window(document: Document, first: int, last: int) -> int:
    """The window holding content tokens first..last with the most context on both sides (BERT authors' advice)."""
    best, score = -1, -1
    for w, (window, start) in enumerate(zip(document.windows, document.starts)):
        end = start + content_length(window)
        if start <= first and last < end:
            context = min(first - start, end - 1 - last)
            if context > score:
                best, score = w, context
    return best


def weights(document: Document) -> list[int]:
    """Each window's weight in a token-weighted mean: the text tokens it holds."""
    return [content_length(w) for w in document.windows]
