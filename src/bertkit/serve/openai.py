"""OpenAI-compatible POST /v1/embeddings over the embed task, so OpenAI SDKs and RAG frameworks can use bertkit as is."""
# No `from __future__ import annotations`: FastAPI reads the request model from the signature at definition time.
import base64
from typing import Any, Literal, Optional, Union

import numpy as np
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, create_model

from bertkit.errors import OptionError
from bertkit.options import specs
from bertkit.serve.schemas import _limited
from bertkit.windows import LongOptions

PATH = "/v1/embeddings"


def request_model(max_texts: int, max_chars: int) -> type[BaseModel]:
    """OpenAI's embeddings request, plus bertkit's long-document options (send them as `extra_body`)."""
    Text = _limited(str, max_texts, max_chars)
    fields: dict[str, Any] = {
        "input": (Union[Text, _limited(list[str], max_texts, max_chars)],
                  Field(description="a text, or a list of texts (token arrays are not taken: send text)")),
        "model": (str, Field(description="any name: the server answers with the model it was started with")),
        "encoding_format": (Literal["float", "base64"], Field("float", description="float lists, or base64 of "
                                                                                    "little-endian float32")),
        "dimensions": (Optional[int], Field(None, ge=1, description="must be the model's own dimension when given")),
        "user": (Optional[str], Field(None, description="accepted and ignored")),
    }
    for spec in specs(LongOptions):  # an over-long input is refused (422) unless a long strategy is asked for
        fields[spec.name] = (_limited(spec.annotation, max_texts, max_chars), Field(spec.default, description=spec.help))
    # Strict, as OpenAI's schema is: "dimensions": "384" is a string, not a number.
    config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [{"input": ["A sentence to embed."],
                                                                           "model": "bertkit"}]})
    return create_model("EmbeddingsRequest", __config__=config, **fields)


class EmbeddingRow(BaseModel):
    object: Literal["embedding"]
    index: int
    embedding: Union[list[float], str]


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"]
    data: list[EmbeddingRow]
    model: str
    usage: Usage


def add_routes(app: FastAPI, service: Any, errors: dict) -> None:
    """POST /v1/embeddings, answered by the embed task (its batching, limits and long-document rules)."""
    from bertkit.tasks import get

    embed = get("embed")
    Request = request_model(service.settings.max_texts, service.settings.max_chars)
    dim = service.model.config.hidden_size

    async def embeddings(body: Request) -> Any:  # type: ignore[valid-type]
        if body.dimensions is not None and body.dimensions != dim:
            raise OptionError("dimensions", f"must be {dim} (or left out): this model gives {dim}-dimensional vectors "
                                            "and was not trained to be shortened")
        texts = [body.input] if isinstance(body.input, str) else list(body.input)
        given = {spec.name: getattr(body, spec.name) for spec in specs(LongOptions)}
        # OpenAI refuses an over-long input; so do we, unless the request asks for a long-document strategy.
        vectors, prepared, _ = await service.run(embed, given, texts, truncate=given["long"] is not None, field="input",
                                                 remedy="send \"long\": \"truncate\" (extra_body) to have it cut")
        rows = [{"object": "embedding", "index": i,
                 "embedding": _encoded(v) if body.encoding_format == "base64" else v.tolist()}
                for i, v in enumerate(vectors)]
        tokens = sum(d.tokens + 2 * len(d.windows) for d in prepared.documents if d is not None)
        return JSONResponse({"object": "list", "data": rows, "model": body.model,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    app.post(PATH, response_model=EmbeddingsResponse, responses=errors, tags=["openai"],
             summary="Embeddings, as OpenAI's API answers them",
             description="The embed task behind OpenAI's request and response shapes: `input` is a text or a list "
                         "of texts; `encoding_format` float or base64; `usage` counts the tokens read.")(embeddings)


def _encoded(vector: np.ndarray) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
