"""Sentence embeddings: pool each text's token states (on the packed batch) into one vector."""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from bertkit.batching import Batch
from bertkit.errors import BertkitError
from bertkit.inputs import warn_truncated
from bertkit.paths import output_file

if TYPE_CHECKING:
    from bertkit.model import Model

POOLINGS = ("mean", "cls", "max", "mean_sqrt_len")
EMBEDDING_FORMATS = (".npy", ".parquet", ".json")


def embed(
    model: "Model",
    texts: Sequence[str] | str,
    pooling: str | None = None,
    normalize: bool | None = None,
    batch_tokens: int | None = None,
    max_length: int | None = None,
) -> np.ndarray:
    """One float32 vector per text, [n, hidden], in input order.

    `pooling` and `normalize` default to the checkpoint's sentence-transformers config when it has
    one (MiniLM: mean, L2-normalised, 256 tokens), else mean pooling without normalisation.
    Mean pooling averages every real token, [CLS] and [SEP] included, as sentence-transformers does.
    """
    config = model.sentence_config
    pooling = pooling or config.get("pooling", "mean")
    if pooling not in POOLINGS:
        raise BertkitError(f"unknown pooling '{pooling}'; use one of {', '.join(POOLINGS)}")
    normalize = bool(config.get("normalize", False)) if normalize is None else bool(normalize)
    limit = embed_max_length(model, max_length)
    texts = [texts] if isinstance(texts, str) else texts
    encodings = model.encode(texts, max_length=limit)
    warn_truncated(encodings, limit)
    if not encodings:
        return np.zeros((0, model.config.hidden_size), dtype=np.float32)

    def step(batch: Batch) -> torch.Tensor:
        vectors = pool(model.network(batch).float(), batch, pooling)
        return (F.normalize(vectors, dim=-1) if normalize else vectors).cpu()

    return torch.stack(model.run(encodings, step, batch_tokens)).numpy()


def pool(states: torch.Tensor, batch: Batch, how: str) -> torch.Tensor:
    """Reduce packed token states [T, d] to one vector per sequence [B, d] with segment sums (no padded copy)."""
    if how == "cls":
        return states[batch.first_token_index]
    seq = batch.sequence_of_token
    if how == "max":
        out = states.new_full((batch.num_sequences, states.shape[1]), -math.inf)
        return out.scatter_reduce_(0, seq[:, None].expand_as(states), states, reduce="amax")
    sums = states.new_zeros(batch.num_sequences, states.shape[1]).index_add_(0, seq, states)
    lengths = batch.lengths.to(states.dtype)[:, None]
    return sums / (lengths.sqrt() if how == "mean_sqrt_len" else lengths)


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

        path.write_text(json.dumps({**embeddings_payload(vectors), "texts": list(texts)}, ensure_ascii=False))
    return path


def embeddings_payload(vectors: np.ndarray) -> dict:
    return {"dim": int(vectors.shape[1]), "embeddings": vectors.tolist()}
