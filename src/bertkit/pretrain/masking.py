"""Which tokens a masked-LM step hides, and with what: BERT's recipe, deterministic per window, seed and epoch.

How a window is masked (`Masker.mask`):

1. Candidates: every token but the tokenizer's special tokens ([CLS], [SEP], [PAD], [MASK], and
   [UNK], which says nothing about the word it stands for), so specials are never targets.
2. Groups: under `whole-word` (the default) a word's pieces form one group, words as the tokenizer's
   word ids give them (`packing.document_tokens`); under `token` every piece is its own group.
3. How many: the window's budget is `mask_prob` of its candidates, rounded at random (floor of
   p * n + u, u uniform), so it is p * n on average rather than biased by rounding on short windows.
4. Which: the groups are put in a random order and taken while they fit in the budget; the group
   that would cross it is taken with probability (budget left) / (its size), and no group after
   it. So the count is the budget on average, within a word's length of it in any window, and a
   long word is nearly as likely to be chosen as a short one (measured: 14.5% of 4-piece words, 15.3%
   of 1-piece ones). (Google's create_pretraining_data.py skips a word that would cross and tries
   later ones, which favours short words more and undershoots the budget when none fits;
   transformers' DataCollatorForWholeWordMask draws each word with probability p, the same mean
   with a noisier count per window.)
5. With what: each chosen token independently becomes [MASK] with probability 0.8, a random token
   with 0.1, and stays itself with 0.1, per token even inside a whole word, as BERT's code does
   (transformers 5's whole-word collator drops the random replacement; BERT's paper and code keep it).
   A random token is drawn uniformly from the vocabulary minus the special tokens: transformers
   draws from all ids, but a random [SEP] or [CLS] would fake a boundary inside a packed window, and
   a random [MASK] is a mask under another name; 5 ids of 30,522 change nothing else.

Every random number is a hash of (stream, seed, epoch, window number) and the position it is drawn
for (SplitMix64's finaliser, counter-based), never the state of a generator. So a window's mask is
the same whatever batch it lands in, however many processes share the work, and after a resume; each
epoch draws a fresh one; and a whole batch is masked in a few vectorised passes, without a Python
loop per window. Evaluation uses its own stream and a fixed epoch: its masks never change.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from bertkit.errors import OptionError
from bertkit.tokenizer import Tokenizer

MASKING = ("whole-word", "token")  # the first is the default
DEFAULT_MASK_PROB = 0.15
MASK_SHARE, RANDOM_SHARE = 0.8, 0.1  # of the chosen tokens; the rest keep their own id
TRAIN_STREAM, EVAL_STREAM = 0, 1
# What each random number is drawn for: part of its hash, so no two uses share a number.
_BUDGET, _ORDER, _CROSSING, _ACTION, _RANDOM_ID = range(5)


def check_mask_prob(mask_prob: float) -> float:
    """`mask_prob` as a float strictly between 0 and 1."""
    if isinstance(mask_prob, bool) or not isinstance(mask_prob, (int, float, np.floating)) or not 0 < mask_prob < 1:
        raise OptionError("mask_prob", f"must be a fraction between 0 and 1 (BERT's is {DEFAULT_MASK_PROB}), not {mask_prob!r}")
    return float(mask_prob)


def check_masking(masking: str) -> str:
    if masking not in MASKING:
        raise OptionError("masking", f"must be one of {', '.join(MASKING)}, not {masking!r}")
    return masking


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijection of uint64 whose output bits each depend on every input bit."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def window_keys(seed: int, epoch: int, windows: Sequence[int] | np.ndarray, stream: int = TRAIN_STREAM) -> np.ndarray:
    """One uint64 key per window: every random number of that window's mask derives from it and nothing else."""
    key = np.full(len(windows), np.uint64(stream), dtype=np.uint64)
    for part in (int(seed) % 2**64, int(epoch) % 2**64):
        key = _mix(key ^ np.uint64(part))
    return _mix(key ^ np.asarray(windows, dtype=np.int64).astype(np.uint64))


def _uniform(keys: np.ndarray, at: np.ndarray, purpose: int) -> np.ndarray:
    """A uniform number in [0, 1) for each (key, position), different for each purpose."""
    return (_bits(keys, at, purpose) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _bits(keys: np.ndarray, at: np.ndarray, purpose: int) -> np.ndarray:
    return _mix(keys ^ _mix((np.asarray(at, dtype=np.int64).astype(np.uint64) << np.uint64(3)) | np.uint64(purpose)))


@dataclass
class MaskedTokens:
    """Windows after masking, end to end: the ids the model reads, and which positions it must restore to which ids."""

    input_ids: np.ndarray  # int64 [T]
    positions: np.ndarray  # int64 [M], ascending: where the chosen tokens sit among the T
    targets: np.ndarray  # int64 [M]: their original ids


class Masker:
    """Masks windows by the module docstring's recipe."""

    def __init__(self, vocab_size: int, mask_id: int, special_ids: Sequence[int], mask_prob: float = DEFAULT_MASK_PROB,
                 masking: str = MASKING[0]):
        self.mask_prob = check_mask_prob(mask_prob)
        self.masking = check_masking(masking)
        self.mask_id = int(mask_id)
        self.special_ids = np.asarray(sorted(set(special_ids)), dtype=np.int64)
        self.random_ids = np.setdiff1d(np.arange(vocab_size, dtype=np.int64), self.special_ids)
        self._is_special = np.zeros(max(vocab_size, int(self.special_ids.max(initial=0)) + 1), dtype=bool)
        self._is_special[self.special_ids] = True  # a lookup table: np.isin would sort on every call

    @classmethod
    def for_tokenizer(cls, tokenizer: Tokenizer, mask_prob: float = DEFAULT_MASK_PROB,
                      masking: str = MASKING[0]) -> "Masker":
        specials = [tokenizer.cls_id, tokenizer.sep_id, tokenizer.pad_id, tokenizer.mask_id, tokenizer.unk_id]
        return cls(tokenizer.vocab_size, tokenizer.mask_id, specials, mask_prob, masking)

    def mask(self, tokens: np.ndarray, word_starts: np.ndarray, lengths: Sequence[int], keys: np.ndarray) -> MaskedTokens:
        """Mask windows laid end to end (`lengths` tokens each, `keys` from `window_keys`), each as if it were alone."""
        ids = np.asarray(tokens, dtype=np.int64)
        lengths = np.asarray(lengths, dtype=np.int64)
        starts = np.zeros(len(lengths), dtype=np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        window = np.repeat(np.arange(len(lengths)), lengths)
        position = np.arange(len(ids)) - starts[window]
        token_key = keys[window]

        # 1-2. Candidates and their groups (a piece after a special token, or a window's first, begins a group).
        candidate = ~self._is_special[ids]
        if self.masking == "token":
            begins = candidate
        else:
            after_other = np.ones(len(ids), dtype=bool)
            after_other[1:] = ~candidate[:-1]
            after_other[starts] = True
            begins = candidate & (np.asarray(word_starts, dtype=bool) | after_other)
        first = np.flatnonzero(begins)  # each group's first token
        group = np.cumsum(begins) - 1
        sizes = np.bincount(group[candidate], minlength=len(first))
        owner = window[first]

        # 3. Each window's budget.
        n = np.bincount(window[candidate], minlength=len(lengths))
        budget = np.floor(self.mask_prob * n + _uniform(keys, np.zeros(len(keys)), _BUDGET)).astype(np.int64)

        # 4. Groups in a random order within each window, taken while they fit; the crossing one by chance.
        order = np.lexsort((_bits(keys[owner], position[first], _ORDER), owner))
        ranked_sizes, ranked_owner = sizes[order], owner[order]
        running = np.cumsum(ranked_sizes)
        before_window = np.concatenate([[0], running])[np.searchsorted(ranked_owner, np.arange(len(lengths)))]
        through = running - before_window[ranked_owner]  # tokens taken up to and including each group
        limit = budget[ranked_owner]
        crossing = (through > limit) & (through - ranked_sizes < limit)
        chance = _uniform(keys[ranked_owner], position[first[order]], _CROSSING)
        take = (through <= limit) | (crossing & (chance * ranked_sizes < limit - (through - ranked_sizes)))
        chosen = np.zeros(len(first) + 1, dtype=bool)  # the last slot: tokens before any group (none are candidates)
        chosen[order[take]] = True
        positions = np.flatnonzero(candidate & chosen[group])

        # 5. [MASK], a random token, or unchanged.
        how = _uniform(token_key[positions], position[positions], _ACTION)
        inputs = ids.copy()
        inputs[positions[how < MASK_SHARE]] = self.mask_id
        randomised = positions[(how >= MASK_SHARE) & (how < MASK_SHARE + RANDOM_SHARE)]
        pick = _bits(token_key[randomised], position[randomised], _RANDOM_ID) % np.uint64(len(self.random_ids))
        inputs[randomised] = self.random_ids[pick.astype(np.int64)]
        return MaskedTokens(inputs, positions, ids[positions])
