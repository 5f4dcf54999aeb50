"""Fill-mask: rank the vocabulary, or score given target words, at every [MASK] of every text."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

import torch

from bertkit.batching import Batch
from bertkit.errors import BertkitError
from bertkit.inputs import warn_truncated

if TYPE_CHECKING:
    from bertkit.model import Model

# Per text, a list per [MASK] of ranked candidates: {"token", "id", "score", "sequence", ...}.
FillMaskResult = list[list[dict]]


@dataclass
class _Probe:
    """One sequence to run and the positions whose predictions we want (duck-types Encoding for Model.run)."""

    ids: list[int]
    type_ids: list[int]
    positions: list[int]
    wanted: list[int] = field(default_factory=list)  # target scoring: the one id whose log-prob we want per position

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class _Target:
    word: str
    ids: list[int]
    pieces: list[str]


def fill_mask(
    model: "Model",
    texts: Sequence[str] | str,
    top_k: int = 5,
    targets: Sequence[str] | None = None,
    batch_tokens: int | None = None,
) -> list[FillMaskResult]:
    """For every text, for every [MASK] in it, the ranked candidates `{token, id, score, sequence}`.

    Without `targets`, the `top_k` most probable vocabulary entries (score = softmax probability).
    With `targets`, every target word is scored and ranked (`top_k` is not applied). A target that
    is one word piece scores its softmax probability. A target of n > 1 pieces replaces that [MASK]
    by n masks and scores the chain-rule joint probability, left to right:
    P(p1 | n masks) · P(p2 | p1, n-1 masks) · … — a true probability over n-piece fillings, equal to
    the softmax probability when n = 1. Such rows also carry `pieces`, `ids` and `log_prob`.
    """
    head = _mlm_head(model)
    texts = [texts] if isinstance(texts, str) else list(texts)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise BertkitError(f"top_k must be a positive whole number, got {top_k!r}")
    encodings = model.encode(texts)
    mask_id, mask_token = model.tokenizer.mask_id, model.tokenizer.mask_token
    masks = [[j for j, t in enumerate(e.ids) if t == mask_id] for e in encodings]
    _check_masks(texts, encodings, masks, mask_token, model.max_length)
    warn_truncated(encodings, model.max_length)
    if targets is None:
        ranked = _rank_vocabulary(model, head, encodings, masks, min(top_k, model.config.vocab_size), batch_tokens)
    else:
        ranked = _score_targets(model, head, encodings, masks, _parse_targets(model, targets), batch_tokens)
    return [_with_sequences(text, [enc.offsets[p] for p in m], per_mask)
            for text, enc, m, per_mask in zip(texts, encodings, masks, ranked)]


def _mlm_head(model: "Model") -> torch.nn.Module:
    if model.network.mlm_head is None:
        name = model.source or str(model.folder)
        raise BertkitError(
            f"{name} has no masked-LM head, so it cannot fill masks; pass a BertForMaskedLM checkpoint "
            "(e.g. --model bert-base-uncased), or use `bertkit embed` / `bertkit similarity` with this model"
        )
    return model.network.mlm_head


def _check_masks(texts, encodings, masks, mask_token: str, limit: int) -> None:
    for i, (text, enc, m) in enumerate(zip(texts, encodings, masks)):
        if not m and enc.n_truncated and mask_token in text:
            raise BertkitError(f"text #{i} is longer than {limit} tokens and its {mask_token} was cut off; shorten it")
        if not m:
            raise BertkitError(f"text #{i} has no {mask_token} token ({_short(text)!r}); "
                               f"put {mask_token} where a word should be predicted")
        if enc.n_truncated and len(m) < text.count(mask_token):
            raise BertkitError(f"text #{i} is longer than {limit} tokens and some of its {mask_token} tokens "
                               "were cut off; shorten it")


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


# -- ranking the whole vocabulary -----------------------------------------------------------------
def _rank_vocabulary(model, head, encodings, masks, k: int, batch_tokens) -> list[list[list[dict]]]:
    def step(batch: Batch) -> list[tuple[torch.Tensor, torch.Tensor]]:
        states = model.network(batch)
        where = batch.input_ids == model.tokenizer.mask_id
        # The vocabulary projection is the costliest matmul of MLM; only masked rows need it.
        probs = head(states[where]).float().softmax(dim=-1)
        values, ids = probs.topk(k, dim=-1)
        counts = [len(masks[i]) for i in batch.index]
        return list(zip(values.cpu().split(counts), ids.cpu().split(counts)))

    out = []
    for values, ids in model.run(encodings, step, batch_tokens):
        out.append([[{"token": model.tokenizer.id_to_token(t), "id": t, "score": s}
                     for s, t in zip(vs, ts)] for vs, ts in zip(values.tolist(), ids.tolist())])
    return out


# -- scoring given targets --------------------------------------------------------------------------
def _parse_targets(model: "Model", targets: Sequence[str] | str) -> list[_Target]:
    if isinstance(targets, str):
        targets = [targets]
    tok = model.tokenizer
    parsed: list[_Target] = []
    seen: set[tuple[int, ...]] = set()
    for word in targets:
        if not isinstance(word, str):
            raise BertkitError(f"target {word!r} is a {type(word).__name__}, not a string")
        direct = tok.token_to_id(word)  # an exact vocabulary entry (e.g. "##s") is taken as is, as transformers does
        ids = [direct] if direct is not None else tok.encode(word, add_special_tokens=False).ids
        if not ids:
            raise BertkitError(f"target {word!r} holds no word piece; give a non-empty word")
        if tuple(ids) not in seen:  # "Paris" and "paris" are the same candidate for an uncased model
            seen.add(tuple(ids))
            parsed.append(_Target(word, ids, [tok.id_to_token(i) for i in ids]))
    if not parsed:
        raise BertkitError("targets is empty; give at least one candidate word or leave targets out")
    return parsed


def _score_targets(model, head, encodings, masks, targets: list[_Target], batch_tokens) -> list[list[list[dict]]]:
    single = [t for t in targets if len(t.ids) == 1]
    single_ids = torch.tensor([t.ids[0] for t in single], dtype=torch.long)
    # Single-piece targets are read off one pass over the texts as given; skip it when there are none.
    probes: list[_Probe] = [_Probe(e.ids, e.type_ids, m) for e, m in zip(encodings, masks)] if single else []
    # (text, mask number, target) -> indices of the probes whose log-probs add up to its score
    chains: dict[tuple[int, int, int], list[int]] = {}
    for i, (enc, m) in enumerate(zip(encodings, masks)):
        for j, pos in enumerate(m):
            for t, target in enumerate(targets):
                if len(target.ids) > 1:
                    chains[(i, j, t)] = [len(probes) + k for k in range(len(target.ids))]
                    probes += _chain_probes(enc, pos, target, model)

    def step(batch: Batch) -> list[torch.Tensor]:
        states = model.network(batch)
        starts = batch.cu_seqlens[:-1].tolist()
        rows = [starts[b] + p for b, i in enumerate(batch.index) for p in probes[i].positions]
        logp = head(states[torch.tensor(rows, device=states.device)]).float().log_softmax(dim=-1).cpu()
        out, r = [], 0
        for i in batch.index:
            n = len(probes[i].positions)
            chunk = logp[r: r + n]
            r += n
            wanted = probes[i].wanted
            out.append(chunk[torch.arange(n), torch.tensor(wanted)] if wanted else chunk[:, single_ids])
        return out

    logps = model.run(probes, step, batch_tokens)
    results = []
    for i, m in enumerate(masks):
        per_mask = []
        for j in range(len(m)):
            rows = []
            for t, target in enumerate(targets):
                if len(target.ids) == 1:
                    lp = float(logps[i][j, single.index(target)])
                else:
                    lp = float(sum(logps[p][0] for p in chains[(i, j, t)]))
                rows.append(_target_row(model, target, lp))
            per_mask.append(sorted(rows, key=lambda r: -r["score"]))
        results.append(per_mask)
    return results


def _chain_probes(enc, pos: int, target: _Target, model: "Model") -> list[_Probe]:
    """Probe k has the first k pieces filled in and the rest masked, and asks for piece k."""
    n = len(target.ids)
    if len(enc.ids) + n - 1 > model.max_length:
        raise BertkitError(f"no room to expand a [MASK] into the {n} pieces of {target.word!r} within "
                           f"{model.max_length} tokens; shorten the text")
    mask_id = model.tokenizer.mask_id
    type_ids = enc.type_ids[:pos] + [enc.type_ids[pos]] * n + enc.type_ids[pos + 1:]
    probes = []
    for k in range(n):
        filled = target.ids[:k] + [mask_id] * (n - k)
        probes.append(_Probe(enc.ids[:pos] + filled + enc.ids[pos + 1:], type_ids, [pos + k], [target.ids[k]]))
    return probes


def _target_row(model: "Model", target: _Target, log_prob: float) -> dict:
    one = len(target.ids) == 1
    token = target.pieces[0] if one else model.tokenizer.decode(target.ids)
    return {"token": token, "id": target.ids[0] if one else None, "score": math.exp(log_prob),
            "target": target.word, "pieces": target.pieces, "ids": target.ids, "log_prob": log_prob}


# -- presenting --------------------------------------------------------------------------------
def _with_sequences(text: str, spans: list[tuple[int, int]], per_mask: list[list[dict]]) -> list[list[dict]]:
    """Add `sequence`: the text with this one [MASK] replaced by the candidate (other masks stay)."""
    for (start, end), rows in zip(spans, per_mask):
        for row in rows:
            word = row["token"]
            before = text[:start]
            if word.startswith("##"):  # a continuation piece glues onto the word before it
                word, before = word[2:], before.rstrip(" ")
            row["sequence"] = before + word + text[end:]
    return per_mask
