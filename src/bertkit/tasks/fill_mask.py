"""Fill-mask: rank the vocabulary, or score given target words, at every [MASK] of every text."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from typing_extensions import TypedDict  # pydantic reads typing's only from Python 3.12

import torch

from bertkit.batching import Batch
from bertkit.display import Results, filled_html
from bertkit.errors import BertkitError, OptionError
from bertkit.options import option
from bertkit.tasks.base import JSON_NUMBER, Head, Item, Prepared, Task, closed
from bertkit.terminal import shown
from bertkit.windows import Document, LongOptions, best_window

if TYPE_CHECKING:
    from bertkit.model import Model

# Per text, a list per [MASK] of ranked candidates {"token", "id", "score", ...}, with `.filled` (see Filled).
FillMaskResult = list[list[dict]]


@dataclass(frozen=True)
class FillMaskOptions(LongOptions):
    top_k: int = option(5, "candidates per mask", ge=1)
    targets: Optional[list[str]] = option(None, "score only these candidate words (multi-piece words allowed)",
                                          split=",", metavar="WORDS")


@dataclass
class _Probe:
    """What one sequence is asked: the positions to read and, for a target's piece, the one id wanted there."""

    positions: list[int]
    wanted: list[int] = field(default_factory=list)


@dataclass
class _Target:
    word: str
    ids: list[int]
    pieces: list[str]


@dataclass
class _Mask:
    """One [MASK] of a text: where it is, and where its scores will be."""

    span: tuple[int, int]  # its characters in the text
    item: int = -1  # the item scoring it as written (vocabulary, or one-piece targets)
    row: int = 0  # its row among that item's positions


@dataclass
class _Layout:
    """Where present finds each answer: per text, its masks, and which items hold their scores."""

    masks: list[list[_Mask]]
    chains: dict[tuple[int, int, int], list[int]]  # (text, mask, target) -> items whose log-probs add up
    targets: list[_Target] | None


# {"token":"","id":30521,"score":...} without the token itself: what one candidate costs an answer, in bytes.
CANDIDATE_BYTES = 32 + JSON_NUMBER


@closed
class Candidate(TypedDict, total=False):
    token: str
    id: Optional[int]
    score: float
    target: str
    pieces: list[str]
    ids: list[int]
    log_prob: float


@closed
class FillMaskRow(TypedDict):
    text: str
    filled: str  # the text with every [MASK] replaced by its best candidate
    masks: list[list[Candidate]]
    truncated: int


class FillMask(Task):
    """For every text, for every [MASK] in it, the ranked candidates `{token, id, score}`, and the text `filled` with the best.

    Without `targets`, the `top_k` most probable vocabulary entries (score = softmax probability).
    With `targets`, every target word is scored and ranked (`top_k` is not applied). A target that
    is one word piece scores its softmax probability. A target of n > 1 pieces replaces that [MASK]
    by n masks and scores the chain-rule joint probability, left to right:
    P(p1 | n masks) · P(p2 | p1, n-1 masks) · … — a true probability over n-piece fillings, equal to
    the softmax probability when n = 1. Such rows also carry `pieces`, `ids` and `log_prob`.
    """

    name = "fill-mask"
    method = "fill_mask"
    summary = "Predict the word behind every [MASK]"
    Options = FillMaskOptions
    head = Head("mlm_head", "masked-LM head",
                "pass a BertForMaskedLM checkpoint (e.g. --model bert-base-uncased), "
                "or use `bertkit embed` / `bertkit similarity` with this model")
    example = {"texts": ["Paris is the [MASK] of France."], "top_k": 5}
    Response = list[FillMaskRow]

    # -- prepare ----------------------------------------------------------------------------------
    def prepare(self, model: "Model", prepared: Prepared, options: FillMaskOptions) -> None:
        targets = parse_targets(model, options.targets) if options.targets is not None else None
        base = targets is None or any(len(t.ids) == 1 for t in targets)
        layout = _Layout([], {}, targets)
        items: list[Item] = []
        for i, (text, document) in enumerate(zip(prepared.texts, prepared.documents)):
            found = _masks_by_window(model, document)
            _check_masks(model, i, text, document, sum(len(m) for m in found.values()))
            masks: list[tuple[int, int, _Mask]] = []  # (window, position in it, mask), in text order
            for w, positions in sorted(found.items()):
                window = document.windows[w]
                if base:
                    for row, pos in enumerate(positions):
                        masks.append((w, pos, _Mask(window.offsets[pos], len(items), row)))
                    items.append(Item(window.ids, window.type_ids, i, _Probe(positions)))
                else:
                    masks += [(w, pos, _Mask(window.offsets[pos])) for pos in positions]
            masks.sort(key=lambda m: m[2].span)
            for j, (w, pos, _) in enumerate(masks):
                for t, target in enumerate(targets or []):
                    if len(target.ids) > 1:
                        n = len(target.ids)  # n sequences, each the window with one mask grown to n
                        prepared.budget.spend(n * (len(document.windows[w].ids) + n - 1))
                        layout.chains[(i, j, t)] = list(range(len(items), len(items) + n))
                        items += _chain_items(model, document.windows[w], i, pos, target)
            layout.masks.append([m for _, _, m in masks])
        prepared.items, prepared.state = items, layout

    # -- step -------------------------------------------------------------------------------------
    def step(self, model: "Model", batch: Batch, items: list[Item], options: FillMaskOptions) -> list:
        states = model.network(batch)
        starts = batch.cu_seqlens[:-1].tolist()
        rows = torch.tensor([starts[b] + p for b, item in enumerate(items) for p in item.info.positions],
                            device=states.device)
        counts = [len(item.info.positions) for item in items]
        if options.targets is None:
            k = min(options.top_k, model.config.vocab_size)
            found = [probs.topk(k, dim=-1) for probs in _vocabulary(model, states, rows, "softmax")]
            values, ids = torch.cat([f.values for f in found]).cpu(), torch.cat([f.indices for f in found]).cpu()
            return list(zip(values.split(counts), ids.split(counts)))
        single = torch.tensor([t.ids[0] for t in parse_targets(model, options.targets) if len(t.ids) == 1],
                              dtype=torch.long)
        wanted = torch.tensor([w for item in items for w in (item.info.wanted or [0] * len(item.info.positions))])
        # Per row: the one piece a target's sequence asks for, and every one-piece target's log-prob.
        picked, singles = [], []
        for logp, span in zip(_vocabulary(model, states, rows, "log_softmax"), _spans(len(rows))):
            picked.append(logp.gather(1, wanted[span, None].to(logp.device))[:, 0])
            singles.append(logp[:, single.to(logp.device)])
        picked, singles = torch.cat(picked).cpu(), torch.cat(singles).cpu()
        return [p if item.info.wanted else s for item, p, s in zip(items, picked.split(counts), singles.split(counts))]

    # -- present ----------------------------------------------------------------------------------
    def present(self, model: "Model", prepared: Prepared, results: list, options: FillMaskOptions) -> list[FillMaskResult]:
        layout: _Layout = prepared.state
        answers = []
        for i, (text, masks) in enumerate(zip(prepared.texts, layout.masks)):
            if layout.targets is None:
                per_mask = []
                for mask in masks:
                    values, ids = results[mask.item]
                    per_mask.append([{"token": model.tokenizer.id_to_token(t), "id": t, "score": s}
                                     for s, t in zip(values[mask.row].tolist(), ids[mask.row].tolist())])
            else:
                per_mask = [sorted((_target_row(model, target, _log_prob(layout, results, i, j, t))
                                    for t, target in enumerate(layout.targets)), key=lambda r: -r["score"])
                            for j in range(len(masks))]
            answers.append(Filled(per_mask, fill(text, [mask.span for mask in masks], per_mask)))
        return Results(answers)

    def payload(self, answer: list[FillMaskResult], prepared: Prepared, options: Any) -> list[dict]:
        return [{"text": t, "filled": r.filled, "masks": list(r), "truncated": n}
                for t, r, n in zip(prepared.texts, answer, prepared.truncated)]

    def answer_size(self, model: "Model", prepared: Prepared, options: FillMaskOptions) -> int:
        # Masks x candidates: a text of 500 [MASK]s with top_k 1000 would answer half a million candidates.
        layout: _Layout = prepared.state
        if layout.targets is None:
            per_mask = min(options.top_k, model.config.vocab_size) * (CANDIDATE_BYTES + 20)  # tokens are short
        else:
            per_mask = sum(2 * CANDIDATE_BYTES + 2 * len(t.word) + sum(len(p) + 12 for p in t.pieces) for t in layout.targets)
        masks = sum(len(m) for m in layout.masks)
        return sum(2 * len(t) + 100 for t in prepared.texts) + masks * per_mask  # the text and `filled`, then the masks

    def human(self, payload: list[dict], prepared: Prepared) -> str:
        lines = []
        for row in payload:
            lines.append(shown(row["text"]))
            for j, cands in enumerate(row["masks"]):
                ranked = "  ".join(f"{shown(c['token'])} {c['score']:.4g}" for c in cands)
                lines.append(f"  mask {j + 1}: {ranked}")
            lines.append(f"  filled: {shown(row['filled'])}")
        return "\n".join(lines)


def _masks_by_window(model: "Model", document: Document) -> dict[int, list[int]]:
    """Each [MASK]'s position, in the window where it has the most context on both sides, grouped by window."""
    mask_id = model.tokenizer.mask_id
    if len(document.windows) == 1:
        positions = [k for k, t in enumerate(document.windows[0].ids) if t == mask_id]
        return {0: positions} if positions else {}
    content = [t for t, special in zip(document.full.ids, document.full.special_tokens_mask) if not special]
    found: dict[int, list[int]] = {}
    for j, t in enumerate(content):
        if t == mask_id:
            w = best_window(document, j, j)
            found.setdefault(w, []).append(1 + j - document.starts[w])  # +1: the window's [CLS]
    return found


# Rows projected onto the vocabulary at once: 256 x 30,522 float32 is 31 MB, whatever the batch asks for.
VOCABULARY_ROWS = 256


def _spans(n: int) -> list[slice]:
    return [slice(a, min(a + VOCABULARY_ROWS, n)) for a in range(0, n, VOCABULARY_ROWS)]


def _vocabulary(model: "Model", states: torch.Tensor, rows: torch.Tensor, how: str):
    """The asked rows' probabilities (softmax) or log-probabilities over the vocabulary, a block of rows at a time:
    the projection is MLM's costliest matmul and its output the largest tensor, so only these rows get it."""
    for span in _spans(len(rows)):
        logits = model.network.mlm_head(states[rows[span]]).float()
        yield getattr(logits, how)(dim=-1)


def _check_masks(model: "Model", i: int, text: str, document: Document, n_masks: int) -> None:
    token, limit = model.tokenizer.mask_token, model.max_length
    where = f"{FillMask.input_name}[{i}]"
    if not n_masks and document.unseen and token in text:
        raise BertkitError(f"{where} is longer than {limit} tokens and its {token} was cut off; shorten it, "
                           "or pass long='chunk' (--long chunk) to read all of it")
    if not n_masks:
        raise BertkitError(f"{where} has no {token} token ({_short(text)!r}); put {token} where a word should be predicted")
    if document.unseen and n_masks < text.count(token):
        raise BertkitError(f"{where} is longer than {limit} tokens and some of its {token} tokens were cut off; "
                           "shorten it, or pass long='chunk' (--long chunk) to read all of it")


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


# -- targets ---------------------------------------------------------------------------------------
def parse_targets(model: "Model", targets: list[str]) -> list[_Target]:
    """Each target word as its word pieces; spellings that tokenize alike ("Paris", "paris") count once."""
    tok = model.tokenizer
    parsed: list[_Target] = []
    seen: set[tuple[int, ...]] = set()
    for word in targets:
        direct = tok.token_to_id(word)  # an exact vocabulary entry (e.g. "##s") is taken as is, as transformers does
        ids = [direct] if direct is not None else tok.encode(word, add_special_tokens=False).ids
        if not ids:
            raise OptionError("targets", f"entry {word!r} holds no word piece; give a non-empty word")
        if tuple(ids) not in seen:
            seen.add(tuple(ids))
            parsed.append(_Target(word, ids, [tok.id_to_token(i) for i in ids]))
    if not parsed:
        raise OptionError("targets", "is empty; give at least one candidate word or leave targets out")
    return parsed


def _chain_items(model: "Model", enc, owner: int, pos: int, target: _Target) -> list[Item]:
    """Item k has the first k pieces filled in and the rest masked, and asks for piece k."""
    n = len(target.ids)
    if len(enc.ids) + n - 1 > model.max_length:
        raise BertkitError(f"no room to expand a [MASK] into the {n} pieces of {target.word!r} within "
                           f"{model.max_length} tokens; shorten the text")
    mask_id = model.tokenizer.mask_id
    type_ids = enc.type_ids[:pos] + [enc.type_ids[pos]] * n + enc.type_ids[pos + 1:]
    return [Item(enc.ids[:pos] + target.ids[:k] + [mask_id] * (n - k) + enc.ids[pos + 1:], type_ids, owner,
                 _Probe([pos + k], [target.ids[k]])) for k in range(n)]


def _log_prob(layout: _Layout, results: list, i: int, j: int, t: int) -> float:
    target = layout.targets[t]
    if len(target.ids) == 1:
        column = [u for u in layout.targets if len(u.ids) == 1].index(target)
        mask = layout.masks[i][j]
        return float(results[mask.item][mask.row, column])
    return float(sum(results[k][0] for k in layout.chains[(i, j, t)]))


def _target_row(model: "Model", target: _Target, log_prob: float) -> dict:
    one = len(target.ids) == 1
    token = target.pieces[0] if one else model.tokenizer.decode(target.ids)
    return {"token": token, "id": target.ids[0] if one else None, "score": math.exp(log_prob),
            "target": target.word, "pieces": target.pieces, "ids": target.ids, "log_prob": log_prob}


# -- presenting --------------------------------------------------------------------------------
class Filled(list):
    """One text's answer: a ranked list of candidates per [MASK] (indexed as before), and `filled`, the text with
    every [MASK] replaced by its best candidate: one string per text, so the answer grows with masks x candidates,
    never with masks x candidates x the text's length."""

    def __init__(self, per_mask: list[list[dict]], filled: str) -> None:
        super().__init__(per_mask)
        self.filled = filled

    def _repr_html_(self) -> str:  # a notebook shows the filled text and a ranked table per mask
        return filled_html(self, self.filled)


def fill(text: str, spans: list[tuple[int, int]], per_mask: list[list[dict]]) -> str:
    """`text` with each [MASK] (its character span) replaced by the first of its candidates."""
    pieces, done = [], 0
    for (start, end), rows in sorted(zip(spans, per_mask), key=lambda pair: pair[0]):
        if not rows:
            continue
        word, before = rows[0]["token"], text[done:start]
        if word.startswith("##"):  # a continuation piece glues onto the word before it
            word, before = word[2:], before.rstrip(" ")
        pieces += [before, word]
        done = end
    return "".join(pieces) + text[done:]
