"""Word-in-context vectors: find a whole word in a sentence as the tokenizer sees it, pool its pieces, compare."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence, Union

import numpy as np
import torch

from bertkit.batching import Batch
from bertkit.errors import BertkitError
from bertkit.tokenizer import Encoding, Tokenizer

if TYPE_CHECKING:
    from bertkit.model import Model

Layer = Union[int, str]
PIECE_POOLINGS = ("mean", "first", "last")
LAYER_NAMES = ("sum4", "concat4")  # the BERT paper's best feature-based choices (Table 7)


@dataclass
class WordVector:
    """A word's contextual vector and how it was found: which occurrence, where, which word pieces."""

    sentence: str
    word: str
    vector: np.ndarray  # float32 [hidden], or [4 * hidden] for "concat4"
    occurrence: int  # index into `occurrences` of the one used (never negative)
    occurrences: list[tuple[int, int]]  # char spans of every whole-word match in the sentence
    tokens: list[str]  # the word pieces of the occurrence used
    token_indices: list[int]  # their positions in the encoded sentence ([CLS] is 0)
    layer: Layer
    pooling: str

    @property
    def span(self) -> tuple[int, int]:
        return self.occurrences[self.occurrence]

    def to_dict(self, vector: bool = False) -> dict:
        out = {"sentence": self.sentence, "word": self.word, "occurrence": self.occurrence,
               "span": list(self.span), "occurrences": [list(s) for s in self.occurrences],
               "tokens": self.tokens, "token_indices": self.token_indices, "layer": self.layer,
               "pooling": self.pooling}
        if vector:
            out["vector"] = self.vector.tolist()
        return out


@dataclass
class WordSimilarity:
    """Cosine similarity of a word's vectors in two sentences."""

    similarity: float
    a: WordVector
    b: WordVector

    def to_dict(self) -> dict:
        return {"similarity": self.similarity, "a": self.a.to_dict(), "b": self.b.to_dict()}


@dataclass
class SimilarityMatrix:
    """Cosine similarities [n, n] between a word's vectors across n sentences; `labels` name the rows."""

    matrix: np.ndarray
    labels: list[str]
    vectors: list[WordVector]

    @classmethod
    def of(cls, vectors: list[WordVector]) -> "SimilarityMatrix":
        """Every pair's cosine, computed in float64 and kept as float32."""
        stacked = np.stack([v.vector for v in vectors]).astype(np.float64)
        unit = stacked / np.maximum(np.linalg.norm(stacked, axis=1, keepdims=True), 1e-12)
        return cls((unit @ unit.T).astype(np.float32), [context_label(v) for v in vectors], vectors)

    def to_dict(self) -> dict:
        return {"labels": self.labels, "matrix": self.matrix.tolist(), "words": [v.to_dict() for v in self.vectors]}


# -- public entry points ----------------------------------------------------------------------
def word_vectors(
    model: "Model",
    sentences: Sequence[str],
    words: Sequence[str],
    occurrences: Sequence[int],
    pooling: str = "mean",
    layer: Layer = -1,
    batch_tokens: int | None = None,
) -> list[WordVector]:
    """One WordVector per (sentence, word, occurrence), all sentences run as one batched pass."""
    if pooling not in PIECE_POOLINGS:
        raise BertkitError(f"unknown piece pooling '{pooling}'; use one of {', '.join(PIECE_POOLINGS)}")
    check_layer(layer, model.config.num_hidden_layers)
    encodings = model.encode(list(sentences))
    found = [locate(model.tokenizer, s, e, w, o, model.max_length)
             for s, e, w, o in zip(sentences, encodings, words, occurrences)]

    def step(batch: Batch) -> list[torch.Tensor]:
        states = layer_states(model, batch, layer)
        starts = batch.cu_seqlens[:-1].tolist()
        out = []
        for b, i in enumerate(batch.index):
            rows = states[starts[b] + found[i][2][0]: starts[b] + found[i][2][-1] + 1]  # a word's pieces are contiguous
            out.append({"mean": rows.mean(dim=0), "first": rows[0], "last": rows[-1]}[pooling].float().cpu())
        return out

    vectors = model.run(encodings, step, batch_tokens)
    return [WordVector(s, w, v.numpy(), occ, spans, [e.tokens[k] for k in idx], idx, layer, pooling)
            for s, w, e, v, (occ, spans, idx) in zip(sentences, words, encodings, vectors, found)]


def word_similarity(
    model: "Model",
    sentence_a: str,
    sentence_b: str,
    word: str,
    word_b: str | None = None,
    occurrence: int = 0,
    occurrence_b: int | None = None,
    pooling: str = "mean",
    layer: Layer = -1,
) -> WordSimilarity:
    a, b = word_vectors(model, [sentence_a, sentence_b], [word, word_b or word],
                        [occurrence, occurrence if occurrence_b is None else occurrence_b], pooling, layer)
    return WordSimilarity(cosine(a.vector, b.vector), a, b)


def similarity_matrix(
    model: "Model",
    sentences: Sequence[str],
    word: str | Sequence[str],
    occurrence: int | Sequence[int] = 0,
    pooling: str = "mean",
    layer: Layer = -1,
) -> SimilarityMatrix:
    """Pairwise cosine similarity of the word's vectors; `word` / `occurrence` may be one per sentence."""
    sentences = list(sentences)
    words = _per_sentence(word, len(sentences), "word")
    occurrences = _per_sentence(occurrence, len(sentences), "occurrence")
    return SimilarityMatrix.of(word_vectors(model, sentences, words, occurrences, pooling, layer))


# -- finding the word -------------------------------------------------------------------------
def locate(tokenizer: Tokenizer, sentence: str, encoding: Encoding, word: str, occurrence: int,
           limit: int) -> tuple[int, list[tuple[int, int]], list[int]]:
    """(occurrence index used, char spans of all occurrences, token positions of the one used)."""
    if not isinstance(word, str):
        raise BertkitError(f"the word must be a string, not {type(word).__name__}")
    target = [norm for norm, _, _ in _words(tokenizer, word, tokenizer.encode(word, add_special_tokens=False))]
    if not target:
        raise BertkitError(f"{word!r} holds no word to look for; give a word such as 'bank'")
    words = _words(tokenizer, sentence, encoding)
    n = len(target)
    matches = [(words[i][1][0], words[i + n - 1][1][1], [k for w in words[i:i + n] for k in w[2]])
               for i in range(len(words) - n + 1) if [w[0] for w in words[i:i + n]] == target]
    if not matches:
        raise BertkitError(_missing_message(word, " ".join(target), sentence, words, encoding, limit))
    if isinstance(occurrence, bool) or not isinstance(occurrence, int) or not -len(matches) <= occurrence < len(matches):
        spans = ", ".join(f"{a}-{b}" for a, b, _ in matches)
        raise BertkitError(f"{word!r} occurs {len(matches)} time(s) in {_short(sentence)!r} (chars {spans}); "
                           f"occurrence must be 0..{len(matches) - 1} (or negative, counting from the end)")
    used = occurrence % len(matches)
    return used, [(a, b) for a, b, _ in matches], matches[used][2]


def _words(tokenizer: Tokenizer, text: str, encoding: Encoding) -> list[tuple[str, tuple[int, int], list[int]]]:
    """The text's words as the pre-tokenizer splits them: (normalised form, char span, token positions)."""
    words: list[tuple[str, tuple[int, int], list[int]]] = []
    last = None
    for k, (wid, special) in enumerate(zip(encoding.word_ids, encoding.special_tokens_mask)):
        seq = encoding.sequence_ids[k] if encoding.sequence_ids else 0
        if wid is None or special or seq != 0:
            last = None
            continue
        start, end = encoding.offsets[k]
        if wid == last:
            norm, (s, _), idx = words[-1]
            words[-1] = (norm, (s, end), idx + [k])
        else:
            words.append(("", (start, end), [k]))
        last = wid
    # Normalising the word's own characters matches what the model saw (case, accents, as configured).
    return [(tokenizer.normalize(text[s:e]).strip(), (s, e), idx) for _, (s, e), idx in words]


def _missing_message(word, norm, sentence, words, encoding, limit) -> str:
    msg = f"{word!r} does not occur as a whole word in {_short(sentence)!r}"
    inside = [sentence[s:e] for w, (s, e), _ in words if norm in w and w != norm]
    if inside:
        msg += f" (only inside {inside[0]!r}; whole words are matched)"
    elif encoding.n_truncated:
        msg += f" within its first {limit} tokens (the rest was truncated)"
    return msg + "; check the spelling or pick another sentence"


# -- layers ---------------------------------------------------------------------------------
def check_layer(layer: Layer, n_layers: int) -> None:
    if layer in LAYER_NAMES:
        if n_layers < 4:
            raise BertkitError(f"layer '{layer}' needs 4 layers but this model has {n_layers}; pass a layer index")
        return
    if isinstance(layer, bool) or not isinstance(layer, int) or not -(n_layers + 1) <= layer <= n_layers:
        raise BertkitError(f"layer {layer!r} does not exist; use 0..{n_layers} (0 = embeddings), "
                           f"-1..-{n_layers + 1}, 'sum4' or 'concat4'")


def parse_layer(text: str) -> Layer:
    """A layer from the command line: an integer, 'sum4' or 'concat4'."""
    try:
        return int(text)
    except ValueError:
        return text


def layer_states(model: "Model", batch: Batch, layer: Layer) -> torch.Tensor:
    """Per-token states [T, d] of the chosen layer; 'sum4' / 'concat4' combine layers -4..-1."""
    n_layers = model.config.num_hidden_layers
    if layer in (-1, n_layers):
        return model.network(batch)
    states = model.network(batch, all_layers=True)
    if layer == "sum4":
        return torch.stack(states[-4:]).sum(dim=0)
    if layer == "concat4":
        return torch.cat(states[-4:], dim=-1)
    return states[layer]


# -- small helpers --------------------------------------------------------------------------------
def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def context_label(v: WordVector, limit: int = 38) -> str:
    """The sentence around the word, the word in brackets, cut at whole words: '…by the [bank] to enjoy…'."""
    start, end = v.span
    width = max(6, (limit - (end - start) - 4) // 2)  # heatmap tick labels stay readable under ~40 characters
    left, right = v.sentence[:start], v.sentence[end:]
    if len(left) > width:
        cut = left[-width:]
        left = "…" + (cut.split(" ", 1)[1] if " " in cut[:-1] else cut)
    if len(right) > width:
        cut = right[:width]
        right = (cut.rsplit(" ", 1)[0] if " " in cut[1:] else cut) + "…"
    return f"{left}[{v.sentence[start:end]}]{right}"


def _per_sentence(value, n: int, what: str) -> list:
    if isinstance(value, (str, int)):
        return [value] * n
    value = list(value)
    if len(value) != n:
        raise BertkitError(f"got {len(value)} {what}s for {n} sentences; give one {what}, or one per sentence")
    return value


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
