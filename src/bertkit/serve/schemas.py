"""Request and response bodies (pydantic, unknown fields forbidden); request limits come from the server's Settings."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

STRICT = ConfigDict(extra="forbid", strict=True)
TRUNCATE = Field(True, description="cut texts longer than the model accepts (and report it); false: reject them with 422")


class Body(BaseModel):
    model_config = STRICT


# -- responses (the same JSON the CLI prints with --json, plus truncation reports) ----------------
class ErrorDetail(Body):
    type: str = Field(description="a stable machine-readable kind, e.g. invalid_request, limit_exceeded")
    message: str = Field(description="what went wrong and what to do instead")
    details: Optional[list[dict[str, Any]]] = None


class ErrorResponse(Body):
    error: ErrorDetail


class TokenizeRow(Body):
    text: str
    tokens: list[str]
    ids: list[int]
    offsets: list[list[int]]
    word_ids: list[Optional[int]]
    type_ids: list[int]
    special_tokens_mask: list[int]
    n_truncated: int


class Candidate(Body):
    token: str
    id: Optional[int]
    score: float
    sequence: str
    target: Optional[str] = Field(None, description="only when targets were given")
    pieces: Optional[list[str]] = Field(None, description="only when targets were given")
    ids: Optional[list[int]] = Field(None, description="only when targets were given")
    log_prob: Optional[float] = Field(None, description="only when targets were given")


class FillMaskRow(Body):
    text: str
    masks: list[list[Candidate]] = Field(description="per [MASK] in the text, the ranked candidates")
    truncated: int = Field(description="tokens cut from the end of this text (0: none)")


class EmbedResponse(Body):
    dim: int
    embeddings: list[list[float]]
    truncated: list[int] = Field(description="per text, tokens cut from its end (0: none)")


class PredictRow(Body):
    text: Optional[str]
    label: Optional[str]
    labels: Optional[list[str]] = Field(None, description="multi-label models only: every label over the threshold")
    scores: Optional[dict[str, float]]
    truncated: int
    error: Optional[str]


class WordInContext(Body):
    sentence: str
    word: str
    occurrence: int
    span: list[int]
    occurrences: list[list[int]]
    tokens: list[str]
    token_indices: list[int]
    layer: Union[int, str]
    pooling: str


class SimilarityPair(Body):
    similarity: float
    a: WordInContext
    b: WordInContext
    truncated: list[int]


class SimilarityMatrix(Body):
    labels: list[str]
    matrix: list[list[float]]
    words: list[WordInContext]
    truncated: list[int]


class Status(Body):
    status: str


class Limits(Body):
    max_batch_tokens: int
    max_wait_ms: float
    batching: bool
    max_texts: int
    max_chars: int
    max_body_bytes: int
    max_queue: int
    api_key: bool = Field(description="whether requests need a key (the key itself is never shown)")


class EmbeddingInfo(Body):
    dim: int
    max_length: int
    pooling: str
    normalize: bool


class ModelInfo(Body):
    model: str = Field(description="what the server was started with: alias, folder or hub id")
    folder: Optional[str]
    device: str
    parameters: int
    heads: list[str]
    labels: list[str]
    max_length: int
    sentence_transformers: Optional[dict[str, Any]]
    config: dict[str, Any]
    endpoints: dict[str, bool] = Field(description="which task endpoints this model can serve")
    limits: Limits
    embedding: EmbeddingInfo


# -- requests ----------------------------------------------------------------------------------
@dataclass
class RequestModels:
    tokenize: type[BaseModel]
    fill_mask: type[BaseModel]
    embed: type[BaseModel]
    predict: type[BaseModel]
    similarity: type[BaseModel]


def _example(body: dict) -> ConfigDict:
    # Shown in /docs as a ready-to-send body.
    return ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [body]})


def request_models(max_texts: int, max_chars: int) -> RequestModels:
    """Request bodies whose list and string limits are this server's, so the published schema states them."""
    Text = Annotated[str, StringConstraints(max_length=max_chars)]
    Texts = Annotated[list[Text], Field(min_length=1, max_length=max_texts,
                                        description=f"1 to {max_texts} texts of at most {max_chars} characters")]
    Word = Annotated[str, StringConstraints(min_length=1, max_length=100)]

    class TokenizeRequest(Body):
        model_config = _example({"texts": ["Hello, BERT!"]})

        texts: Texts
        pair: Optional[Text] = Field(None, description="a second text, tokenized as a pair with every text")
        max_length: Optional[int] = Field(None, ge=1, description="truncate to this many tokens (reported)")
        truncate: bool = Field(True, description="false: reject texts longer than max_length instead of cutting them")

    class FillMaskRequest(Body):
        model_config = _example({"texts": ["Paris is the [MASK] of France."], "top_k": 5})

        texts: Texts = Field(description="texts with one or more [MASK] tokens")
        top_k: int = Field(5, ge=1, le=1000, description="candidates per mask")
        targets: Optional[Annotated[list[Word], Field(min_length=1, max_length=100)]] = Field(
            None, description="score only these candidate words (multi-piece words allowed)")
        truncate: bool = TRUNCATE

    class EmbedRequest(Body):
        model_config = _example({"texts": ["A sentence to embed.", "Another one."]})

        texts: Texts
        pooling: Optional[Literal["mean", "cls", "max", "mean_sqrt_len"]] = Field(
            None, description="default: the model's sentence-transformers setting, else mean")
        normalize: Optional[bool] = Field(None, description="L2-normalise (default: the model's setting)")
        max_length: Optional[int] = Field(None, ge=1, description="truncate to this many tokens (default: the model's)")
        truncate: bool = TRUNCATE

    class PredictRequest(Body):
        model_config = _example({"texts": ["What a wonderful film!"]})

        texts: Texts
        pairs: Optional[Annotated[list[Text], Field(min_length=1, max_length=max_texts)]] = Field(
            None, description="a second text per text, classified as a pair with it")
        threshold: float = Field(0.5, ge=0.0, le=1.0, description="multi-label: scores >= this are predicted")
        truncate: bool = TRUNCATE

    class SimilarityRequest(Body):
        model_config = _example({"sentences": ["I sat by the river bank.", "I paid at the bank."], "word": "bank"})

        sentences: Annotated[list[Text], Field(min_length=2, max_length=max_texts)] = Field(
            description="exactly two sentences, or two or more with matrix: true")
        word: Union[Word, Annotated[list[Word], Field(min_length=2, max_length=max_texts)]] = Field(
            description="the word (or phrase) to compare: once, or once per sentence")
        occurrence: Union[int, Annotated[list[int], Field(min_length=2, max_length=max_texts)]] = Field(
            0, description="which occurrence when the word repeats (0 first, -1 last): once, or once per sentence")
        pooling: Literal["mean", "first", "last"] = Field("mean", description="how to pool a word's pieces")
        layer: Union[int, Literal["sum4", "concat4"]] = Field(-1, description="layer index (0 = embeddings), sum4 or concat4")
        matrix: bool = Field(False, description="compare every sentence with every other")
        truncate: bool = TRUNCATE

    return RequestModels(TokenizeRequest, FillMaskRequest, EmbedRequest, PredictRequest, SimilarityRequest)
