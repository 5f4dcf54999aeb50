"""Request and response bodies (pydantic, unknown fields forbidden): task bodies derive from the task declarations."""
from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, create_model

from bertkit.options import specs
from bertkit.serve.settings import PRECISION_HEADER, Settings
from bertkit.tasks.base import Task

STRICT = ConfigDict(extra="forbid", strict=True)
TRUNCATE = Field(True, description="cut texts longer than the model accepts (and report it); false: reject them with 422")


class Body(BaseModel):
    model_config = STRICT


# -- responses of the server's own endpoints (a task's response is its declared Response) ------------
class ErrorDetail(Body):
    type: str = Field(description="a stable machine-readable kind, e.g. invalid_request, limit_exceeded")
    message: str = Field(description="what went wrong and what to do instead")
    details: Optional[list[dict[str, Any]]] = None


class ErrorResponse(Body):
    error: ErrorDetail


class Status(Body):
    status: str


def _limits_model() -> type[BaseModel]:
    """/v1/model's `limits`: every public setting with its help, as the server resolved it (a default of None is filled in)."""
    fields: dict[str, Any] = {}
    for spec in specs(Settings):
        if spec.name in Settings.NOT_PUBLIC:
            continue
        kinds = [a for a in typing.get_args(spec.annotation) if a is not type(None)] or [spec.annotation]
        if spec.name == "api_key":
            fields[spec.name] = (bool, Field(description="whether requests need a key (the key itself is never shown)"))
        else:
            fields[spec.name] = (kinds[0], Field(description=f"{spec.help} ({spec.flag})"))
    return create_model("Limits", __config__=STRICT, **fields)


Limits = _limits_model()


class EmbeddingInfo(Body):
    dim: int
    max_length: int
    pooling: str
    normalize: bool


class ModelInfo(Body):
    model: str = Field(description="what the server was started with: alias, folder or hub id")
    folder: Optional[str]
    device: str
    precision: str = Field(description="the arithmetic every answer runs at: fp32, bf16 or int8 (--precision); each "
                                       f"answer also carries it in the {PRECISION_HEADER} header")
    parameters: int
    heads: list[str]
    labels: list[str]
    max_length: int
    sentence_transformers: Optional[dict[str, Any]]
    config: dict[str, Any]
    endpoints: dict[str, bool] = Field(description="which task endpoints this model can serve")
    limits: Limits
    embedding: EmbeddingInfo
    long_documents: dict[str, Any] = Field(description="the long-document strategies, the server's cap on windows "
                                                       "per text, each task's aggregations, the model's trained plan")
    search: Optional[dict[str, Any]] = Field(description="the index /v1/search answers from (--index), or null")


# -- requests: one body per task, derived from its declaration ------------------------------------------
def request_model(task: Task, max_texts: int, max_chars: int) -> type[BaseModel]:
    """The request body of `POST /v1/<task>`: its inputs and options, with this server's limits in the schema.

    Types, defaults, allowed values, bounds and help come from the task's Options; texts and every
    string or list inside an option are bounded by --max-chars / --max-texts, so the published
    schema states what the server accepts.
    """
    Text = Annotated[str, StringConstraints(max_length=max_chars)]
    low = task.min_inputs
    fields: dict[str, Any] = {
        task.input_name: (Annotated[list[Text], Field(min_length=low, max_length=max_texts)],
                          Field(description=f"{low} to {max_texts} texts of at most {max_chars} characters")),
    }
    if task.pair_name:
        fields[task.pair_name] = (Optional[Annotated[list[Text], Field(min_length=1, max_length=max_texts)]],
                                  Field(None, description="a second text per text, read as a pair with it"))
    for spec in specs(task.Options):
        if not spec.server:
            continue
        shown = spec.describe_default()
        info = Field(... if spec.required else spec.default,
                     description=spec.help + (f" (default: {shown})" if shown else ""), **spec.bounds)
        fields[spec.name] = (_limited(spec.annotation, max_texts, max_chars), info)
    fields["truncate"] = (bool, TRUNCATE)
    name = "".join(part.capitalize() for part in task.name.split("-")) + "Request"
    config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"examples": [task.example]} if task.example else None)
    return create_model(name, __config__=config, **fields)


def _limited(tp: Any, max_texts: int, max_chars: int) -> Any:
    """`tp` with every string capped at max_chars (and non-empty), every list at max_texts, every float finite."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return Union[tuple(_limited(a, max_texts, max_chars) for a in typing.get_args(tp))]
    if origin in (list, tuple):
        (item,) = typing.get_args(tp)
        return Annotated[list[_limited(item, max_texts, max_chars)], Field(min_length=1, max_length=max_texts)]
    if tp is str:
        return Annotated[str, StringConstraints(min_length=1, max_length=max_chars)]
    if tp is float:
        return Annotated[float, Field(allow_inf_nan=False)]
    return tp
