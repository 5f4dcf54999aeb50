"""Word-in-context vectors: find a whole word in a sentence as the tokenizer sees it, pool its pieces, compare."""
from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Optional, Sequence, Union

from typing_extensions import TypedDict  # pydantic reads typing's only from Python 3.12

import numpy as np
import torch

from bertkit.batching import Batch
from bertkit.display import similarity_html
from bertkit.errors import BertkitError, OptionError
from bertkit.options import REQUIRED, option
from bertkit.tasks.base import JSON_NUMBER, Item, Prepared, Task, closed
from bertkit.terminal import shown
from bertkit.tokenizer import Encoding, Tokenizer
from bertkit.windows import LongOptions, best_window

if TYPE_CHECKING:
    from bertkit.model import Model

LayerName = Literal["sum4", "concat4"]  # the BERT paper's best feature-based choices (Table 7)
Layer = Union[int, LayerName]
LAYER_NAMES = typing.get_args(LayerName)


@dataclass(frozen=True)
class SimilarityOptions(LongOptions):
    word: Union[str, list[str]] = option(REQUIRED, "the word (or phrase) to compare: once, or once per sentence",
                                         short="-w", shared=False)
    occurrence: Union[int, list[int]] = option(0, "which occurrence when the word repeats (0 = first, -1 = last): "
                                                  "once, or once per sentence", shared=False)
    pooling: Literal["mean", "first", "last"] = option("mean", "how to pool a word's pieces")
    layer: Layer = option(-1, "layer index (0 = embeddings, -1 = last), sum4 or concat4")
    matrix: bool = option(False, "compare every sentence with every other", shared=False)


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
    # The same pieces' rows of the word-embedding table, averaged: the vector a static (Word2Vec-style)
    # model gives this word in every sentence, to set beside the contextual one.
    static: np.ndarray | None = None

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

    @property
    def static_similarity(self) -> float:
        """The cosine of the two words' static vectors: 1.0 for the same word, whatever the sentences."""
        return cosine(self.a.static, self.b.static)

    def to_dict(self) -> dict:
        return {"similarity": self.similarity, "static_similarity": self.static_similarity,
                "a": self.a.to_dict(), "b": self.b.to_dict()}


@dataclass
class SimilarityMatrix:
    """Cosine similarities [n, n] between a word's vectors across n sentences; `labels` name the rows."""

    matrix: np.ndarray
    labels: list[str]
    vectors: list[WordVector]
    static: np.ndarray | None = None  # the same for the words' static vectors (all 1.0 for one word)

    @classmethod
    def of(cls, vectors: list[WordVector]) -> "SimilarityMatrix":
        static = _cosines([v.static for v in vectors]) if all(v.static is not None for v in vectors) else None
        return cls(_cosines([v.vector for v in vectors]), [context_label(v) for v in vectors], vectors, static)

    def to_dict(self) -> dict:
        return {"labels": self.labels, "matrix": self.matrix.tolist(),
                "static_matrix": None if self.static is None else self.static.tolist(),
                "words": [v.to_dict() for v in self.vectors]}

    def _repr_html_(self) -> str:  # a notebook shows both matrices as shaded tables
        return similarity_html(self)


def _cosines(vectors: list[np.ndarray]) -> np.ndarray:
    """Every pair's cosine, computed in float64 and kept as float32."""
    stacked = np.stack(vectors).astype(np.float64)
    unit = stacked / np.maximum(np.linalg.norm(stacked, axis=1, keepdims=True), 1e-12)
    return (unit @ unit.T).astype(np.float32)


@closed
class WordInContext(TypedDict):
    sentence: str
    word: str
    occurrence: int
    span: list[int]
    occurrences: list[list[int]]
    tokens: list[str]
    token_indices: list[int]
    layer: Union[int, str]
    pooling: str


@closed
class SimilarityPair(TypedDict):
    similarity: float
    static_similarity: float  # the words' rows of the word-embedding table: 1.0 for the same word
    a: WordInContext
    b: WordInContext
    truncated: list[int]


@closed
class SimilarityMatrixResponse(TypedDict):
    labels: list[str]
    matrix: list[list[float]]
    static_matrix: Optional[list[list[float]]]  # the same for static (word-embedding table) vectors
    words: list[WordInContext]
    truncated: list[int]


@dataclass
class Located:
    """Where a word was found in one sentence: the occurrence used, every occurrence's span, its token positions."""

    occurrence: int  # index into `spans` of the one used (never negative)
    spans: list[tuple[int, int]]  # char spans of every whole-word match in the sentence
    tokens: list[int]  # positions of the used occurrence's word pieces in the encoded sentence ([CLS] is 0)


# -- the convenience methods Model gets beside `similarity` -------------------------------------------
def word_embedding(model: "Model", sentence: str, word: str, occurrence: int = 0, pooling: str = "mean",
                   layer: Layer = -1) -> WordVector:
    """The contextual vector of a whole word (pooled over its pieces) and where it was found."""
    return model.similarity([sentence], word, occurrence, pooling, layer, matrix=True).vectors[0]


def word_similarity(model: "Model", sentence_a: str, sentence_b: str, word: str, word_b: Optional[str] = None,
                    occurrence: int = 0, occurrence_b: Optional[int] = None, pooling: str = "mean",
                    layer: Layer = -1) -> WordSimilarity:
    """Cosine similarity of a word's vectors in two sentences (`word_b`: a different word in sentence b)."""
    words = [word, word_b or word]
    occurrences = [occurrence, occurrence if occurrence_b is None else occurrence_b]
    return model.similarity([sentence_a, sentence_b], words, occurrences, pooling, layer)


def similarity_matrix(model: "Model", sentences: Sequence[str], word: Union[str, Sequence[str]],
                      occurrence: Union[int, Sequence[int]] = 0, pooling: str = "mean",
                      layer: Layer = -1) -> SimilarityMatrix:
    """Pairwise cosine similarities of a word's vectors across sentences, with row labels."""
    word = word if isinstance(word, str) else list(word)
    occurrence = occurrence if isinstance(occurrence, int) else list(occurrence)
    return model.similarity(list(sentences), word, occurrence, pooling, layer, matrix=True)


class Similarity(Task):
    """Cosine similarity of a word's contextual vectors: in two sentences, or across many as a matrix."""

    name = "similarity"
    method = "similarity"
    summary = "Cosine similarity of a word's contextual vectors across sentences"
    Options = SimilarityOptions
    input_name = "sentences"
    min_inputs = 2
    example = {"sentences": ["I sat by the river bank.", "I paid at the bank."], "word": "bank"}
    Response = Union[SimilarityPair, SimilarityMatrixResponse]
    plot_needs = {"matrix": True}
    methods = {"word_embedding": word_embedding, "word_similarity": word_similarity,
               "similarity_matrix": similarity_matrix}

    def prepare(self, model: "Model", prepared: Prepared, options: SimilarityOptions) -> None:
        n = len(prepared.texts)
        if not options.matrix and n != 2:
            raise OptionError("matrix", f"is needed to compare {n} sentences; give exactly two, or turn {{name}} on")
        words = per_sentence(options.word, n, "word")
        occurrences = per_sentence(options.occurrence, n, "occurrence")
        check_layer(options.layer, model.config.num_hidden_layers)
        found, windows = [], []
        for sentence, document, word, occurrence in zip(prepared.texts, prepared.documents, words, occurrences):
            if len(document.windows) == 1:
                found.append(locate(model.tokenizer, sentence, document.windows[0], word, occurrence, model.max_length))
                windows.append(document.windows[0])
                continue
            # Chunked: find the word in the whole text, then read it where it has the most context on both sides.
            at = locate(model.tokenizer, sentence, document.full, word, occurrence, model.max_length)
            w = best_window(document, at.tokens[0] - 1, at.tokens[-1] - 1)  # -1: the [CLS] before the content
            shift = document.starts[w]  # content token j is at 1 + j in the full encoding and 1 + j - start in the window
            found.append(Located(at.occurrence, at.spans, [k - shift for k in at.tokens]))
            windows.append(document.windows[w])
        prepared.items = [Item(e.ids, e.type_ids, i, at.tokens) for i, (e, at) in enumerate(zip(windows, found))]
        prepared.state = (words, found, windows)

    def step(self, model: "Model", batch: Batch, items: list[Item], options: SimilarityOptions) -> list[torch.Tensor]:
        states = layer_states(model, batch, options.layer)
        starts = batch.cu_seqlens[:-1].tolist()
        out = []
        for start, item in zip(starts, items):
            rows = states[start + item.info[0]: start + item.info[-1] + 1]  # a word's pieces are contiguous
            out.append({"mean": rows.mean(dim=0), "first": rows[0], "last": rows[-1]}[options.pooling].float().cpu())
        return out

    def present(self, model: "Model", prepared: Prepared, results: list, options: SimilarityOptions):
        words, found, windows = prepared.state
        table = model.network.encoder.embeddings.word.weight
        vectors = [WordVector(s, w, v.numpy(), at.occurrence, at.spans, [e.tokens[k] for k in at.tokens], at.tokens,
                              options.layer, options.pooling,
                              table[[e.ids[k] for k in at.tokens]].detach().float().mean(dim=0).cpu().numpy())
                   for s, w, e, v, at in zip(prepared.texts, words, windows, results, found)]
        if options.matrix:
            return SimilarityMatrix.of(vectors)
        return WordSimilarity(cosine(vectors[0].vector, vectors[1].vector), vectors[0], vectors[1])

    def payload(self, answer, prepared: Prepared, options: Any) -> dict:
        return answer.to_dict() | {"truncated": prepared.truncated}

    def answer_size(self, model: "Model", prepared: Prepared, options: SimilarityOptions) -> int:
        # A matrix is n x n cosines, twice (contextual and static): it grows with the square of the sentences sent.
        n = len(prepared.texts)
        cells = 2 * n * n * JSON_NUMBER if options.matrix else 2 * JSON_NUMBER
        # Each sentence comes back with its label, its word's pieces and every occurrence (at most one per token).
        tokens = [len(d.full.ids if d.full is not None else d.windows[0].ids) for d in prepared.documents]
        return cells + sum(len(t) + 300 + 10 * k for t, k in zip(prepared.texts, tokens))

    def human(self, payload: dict, prepared: Prepared) -> str:
        return _human_matrix(payload) if "matrix" in payload else _human_pair(payload)

    def plot(self, answer: "SimilarityMatrix", path: str, options: SimilarityOptions) -> None:
        from bertkit.train.plots import plot_similarity_matrix

        words = options.word if isinstance(options.word, str) else "/".join(dict.fromkeys(options.word))
        plot_similarity_matrix(answer.matrix, answer.labels, path,
                               title=f"'{words}' in context: cosine similarity (layer {options.layer}, "
                                     f"{options.pooling} of pieces)")


def per_sentence(value, n: int, what: str) -> list:
    """An option given once, or once per sentence, as one value per sentence."""
    if isinstance(value, (str, int)):
        return [value] * n
    value = list(value)
    if len(value) != n:
        raise OptionError(what, f"has {len(value)} values for {n} sentences; give one, or one per sentence")
    return value


# -- printing -----------------------------------------------------------------------------------------
def _marked(w: dict) -> str:
    start, end = w["span"]
    return f"{shown(w['sentence'][:start])}[{shown(w['sentence'][start:end])}]{shown(w['sentence'][end:])}"


def _human_pair(d: dict) -> str:
    a, b = d["a"], d["b"]
    words = f"'{shown(a['word'])}'" + (f" and '{shown(b['word'])}'" if b["word"] != a["word"] else "")
    lines = [f"{d['similarity']:.4f}  cosine similarity of {words} (layer {a['layer']}, {a['pooling']} of word pieces); "
             f"static word vectors: {d['static_similarity']:.4f}"]
    for tag, w in (("a", a), ("b", b)):
        lines.append(f"  {tag}: {_marked(w)}")
        start, end = w["span"]
        lines.append(f"     pieces {' '.join(map(shown, w['tokens']))}  chars {start}-{end}  "
                     f"occurrence {w['occurrence']} (0-based) of {len(w['occurrences'])}")
    return "\n".join(lines)


def _human_matrix(d: dict) -> str:
    n = len(d["labels"])
    lines = ["      " + " ".join(f"{j:>6}" for j in range(n))]
    for i, row in enumerate(d["matrix"]):
        lines.append(f"{i:>5} " + " ".join(f"{x:6.3f}" for x in row) + f"   {shown(d['labels'][i])}")
    static = d.get("static_matrix")
    if static is not None:
        low = min(min(row) for row in static)
        lines.append("static word vectors (the word-embedding table, as Word2Vec would give): "
                     + ("1.000 for every pair" if low > 0.9995 else f"lowest pair {low:.3f}"))
    if d.get("plot"):
        lines.append(f"heatmap written to {d['plot']}")
    return "\n".join(lines)


# -- finding the word -------------------------------------------------------------------------
class _Word(NamedTuple):
    """One word of a sentence as the pre-tokenizer splits it."""

    norm: str  # as the model sees it (case, accents)
    span: tuple[int, int]  # characters in the sentence
    tokens: list[int]  # positions of its word pieces in the encoding


def locate(tokenizer: Tokenizer, sentence: str, encoding: Encoding, word: str, occurrence: int, limit: int) -> Located:
    """Find a whole word (or phrase) in an encoded sentence, as the tokenizer normalises both."""
    if not isinstance(word, str):
        raise BertkitError(f"the word must be a string, not {type(word).__name__}")
    target = [w.norm for w in _words(tokenizer, word, tokenizer.encode(word, add_special_tokens=False))]
    if not target:
        raise BertkitError(f"{word!r} holds no word to look for; give a word such as 'bank'")
    words = _words(tokenizer, sentence, encoding)
    n = len(target)
    matches = [words[i:i + n] for i in range(len(words) - n + 1) if [w.norm for w in words[i:i + n]] == target]
    if not matches:
        raise BertkitError(_missing_message(word, " ".join(target), sentence, words, encoding, limit))
    spans = [(m[0].span[0], m[-1].span[1]) for m in matches]
    if isinstance(occurrence, bool) or not isinstance(occurrence, int) or not -len(matches) <= occurrence < len(matches):
        shown = ", ".join(f"{a}-{b}" for a, b in spans)
        raise BertkitError(f"{word!r} occurs {len(matches)} time(s) in {_short(sentence)!r} (chars {shown}); "
                           f"occurrence must be 0..{len(matches) - 1} (or negative, counting from the end)")
    used = occurrence % len(matches)
    return Located(used, spans, [k for w in matches[used] for k in w.tokens])


def _words(tokenizer: Tokenizer, text: str, encoding: Encoding) -> list[_Word]:
    """The text's words as the pre-tokenizer splits them, first segment only, special tokens skipped."""
    spans: list[tuple[int, int]] = []
    tokens: list[list[int]] = []
    last = None
    for k, (wid, special) in enumerate(zip(encoding.word_ids, encoding.special_tokens_mask)):
        segment = encoding.sequence_ids[k] if encoding.sequence_ids else 0
        if wid is None or special or segment != 0:
            last = None
            continue
        start, end = encoding.offsets[k]
        if wid == last:
            spans[-1] = (spans[-1][0], end)
            tokens[-1].append(k)
        else:
            spans.append((start, end))
            tokens.append([k])
        last = wid
    # Normalising the word's own characters matches what the model saw (case, accents, as configured).
    return [_Word(tokenizer.normalize(text[a:b]).strip(), (a, b), idx) for (a, b), idx in zip(spans, tokens)]


def _missing_message(word, norm, sentence, words, encoding, limit) -> str:
    msg = f"{word!r} does not occur as a whole word in {_short(sentence)!r}"
    inside = [sentence[w.span[0]:w.span[1]] for w in words if norm in w.norm and w.norm != norm]
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


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
