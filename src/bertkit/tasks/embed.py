"""Sentence embeddings: pool each text's token states (on the packed batch) into one vector."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from typing_extensions import TypedDict  # pydantic reads typing's only from Python 3.12

import numpy as np
import torch
import torch.nn.functional as F

from bertkit.batching import Batch
from bertkit.options import option
from bertkit.paths import output_file
from bertkit.pooling import Pooling, pool
from bertkit.tasks.base import JSON_NUMBER, Item, Prepared, Task, closed
from bertkit.terminal import shown
from bertkit.windows import LongOptions, weights

if TYPE_CHECKING:
    import pandas as pd

    from bertkit.model import Model

EMBEDDING_FORMATS = (".npy", ".parquet", ".json")


@dataclass(frozen=True)
class EmbedOptions(LongOptions):
    pooling: Optional[Pooling] = option(None, "how a text's token vectors become one vector",
                                        default_help="the model's sentence-transformers setting, else mean")
    normalize: Optional[bool] = option(None, "L2-normalise the vectors",
                                       default_help="the model's sentence-transformers setting")
    max_length: Optional[int] = option(None, "truncate to this many tokens", ge=1, shared=False,
                                       default_help="the model's sentence-transformers limit, else the model's")


@closed
class EmbedResponse(TypedDict):
    dim: int
    embeddings: list[list[float]]
    truncated: list[int]  # per text, tokens no window held (0: all of it was read)
    windows: list[int]  # per text, the sequences read (more than 1 only under long="chunk")
    strategy: str


class Embed(Task):
    """One float32 vector per text, [n, hidden], in input order.

    `pooling` and `normalize` default to the checkpoint's sentence-transformers config when it has
    one (MiniLM: mean, L2-normalised, 256 tokens), else mean pooling without normalisation. Mean
    pooling averages every real token, [CLS] and [SEP] included, as sentence-transformers does.
    """

    name = "embed"
    method = "embed"
    summary = "Sentence embeddings (mean pooling by default)"
    Options = EmbedOptions
    table = True
    example = {"texts": ["A sentence to embed.", "Another one."]}
    Response = EmbedResponse
    output_formats = EMBEDDING_FORMATS
    aggregations = ("mean", "max", "first")

    def max_length(self, model: "Model", options: EmbedOptions) -> int:
        return embed_max_length(model, options.max_length)

    def step(self, model: "Model", batch: Batch, items: list[Item], options: EmbedOptions) -> list[torch.Tensor]:
        pooling, _ = settings(model, options)
        return list(pool(model.network(batch).float(), batch, pooling).cpu())  # normalised per text, in present

    def present(self, model: "Model", prepared: Prepared, results: list, options: EmbedOptions) -> np.ndarray:
        vectors = self._per_text(model, prepared, results, options)
        rows = [v for v in vectors if v is not None]
        if not rows:
            return np.zeros((0, model.config.hidden_size), dtype=np.float32)
        return torch.stack(rows).numpy()

    def _per_text(self, model: "Model", prepared: Prepared, results: list,
                  options: EmbedOptions) -> list[torch.Tensor | None]:
        """One vector per input (None for a flagged row): its windows aggregated, then normalised if asked."""
        how = prepared.plan.aggregate
        _, normalize = settings(model, options)
        out: list[torch.Tensor | None] = []
        for document, windows in zip(prepared.documents, prepared.per_input(results)):
            if document is None:
                out.append(None)
                continue
            if len(windows) == 1:
                vector = windows[0]
            elif how == "mean":
                w = torch.tensor(weights(document), dtype=torch.float32)[:, None]
                vector = (torch.stack(windows) * w).sum(dim=0) / w.sum()
            elif how == "max":
                vector = torch.stack(windows).amax(dim=0)
            else:
                vector = windows[0]
            out.append(F.normalize(vector, dim=-1) if normalize else vector)
        return out

    def payload(self, answer: np.ndarray, prepared: Prepared, options: Any) -> dict:
        return embeddings_payload(answer) | {"truncated": prepared.truncated, "windows": prepared.windows,
                                             "strategy": prepared.strategy}

    def answer_size(self, model: "Model", prepared: Prepared, options: Any) -> int:
        # One vector of hidden-size numbers per text, however short: a word can ask for 384 numbers or more.
        return len(prepared.texts) * (model.config.hidden_size * JSON_NUMBER + 16) + 64

    def human(self, payload: dict, prepared: Prepared) -> str:
        vectors = np.asarray(payload["embeddings"], dtype=np.float32).reshape(-1, payload["dim"])
        lines = [f"{len(vectors)} embeddings of dimension {payload['dim']} (use --json or --output FILE for all values)"]
        for v, text, cut in zip(vectors, prepared.texts, payload["truncated"]):
            preview = ", ".join(f"{x:+.4f}" for x in v[:4])
            note = f"  ({cut} tokens cut)" if cut else ""
            lines.append(f"[{preview}, …]  norm {float((v ** 2).sum()) ** 0.5:.3f}  {shown(text[:60])}{note}")
        return "\n".join(lines)

    def columns(self, model: "Model", prepared: Prepared, results: list, options: Any) -> dict[str, list]:
        vectors = [None if v is None else v.numpy() for v in self._per_text(model, prepared, results, options)]
        return {"embedding": vectors, "truncated": prepared.truncated, "windows": prepared.windows}

    def write_output(self, path: str | Path, table: "pd.DataFrame", text_column: str) -> Path:
        dim = next((len(v) for v in table["embedding"] if v is not None), 0)
        vectors = np.stack([v if v is not None else np.full(dim, np.nan, np.float32) for v in table["embedding"]]) \
            if len(table) else np.zeros((0, dim), np.float32)
        return write_embeddings(path, vectors, table[text_column].tolist())


def settings(model: "Model", options: EmbedOptions) -> tuple[str, bool]:
    """(pooling, normalize) as asked, else the checkpoint's sentence-transformers settings, else mean and raw."""
    config = model.sentence_config
    pooling = options.pooling or config.get("pooling", "mean")
    normalize = bool(config.get("normalize", False)) if options.normalize is None else options.normalize
    return pooling, normalize


def embed_max_length(model: "Model", requested: int | None = None) -> int:
    """Tokens kept per text: the request's limit, else the sentence-transformers config's, never past the model's."""
    return min(requested or model.sentence_config.get("max_seq_length") or model.max_length, model.max_length)


def write_embeddings(path: str | Path, vectors: np.ndarray, texts: Sequence[str]) -> Path:
    """Save as .npy (the array), .parquet (text + embedding columns) or .json ({dim, embeddings, texts})."""
    path, suffix = output_file(path, EMBEDDING_FORMATS, "embeddings")
    if suffix == ".npy":
        np.save(path, vectors)
    elif suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        dim = vectors.shape[1]
        column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim)
        pq.write_table(pa.table({"text": list(texts), "embedding": column}), path)
    else:
        import json

        payload = {**embeddings_payload(vectors), "texts": [t if isinstance(t, str) else None for t in texts]}
        path.write_text(json.dumps(payload, ensure_ascii=False))
    return path


def embeddings_payload(vectors: np.ndarray) -> dict:
    # NaN marks a flagged row in a file; JSON has no NaN, so such a row is null.
    rows = [None if np.isnan(v).any() else v.tolist() for v in vectors]
    return {"dim": int(vectors.shape[1]), "embeddings": rows}
