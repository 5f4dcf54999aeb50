"""Embedding a corpus into an index: streamed like corpus mode, restartable, and re-runs embed only new or changed rows."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from bertkit.errors import BertkitError, OptionError
from bertkit.index.store import MANIFEST, IndexManifest, content_hash
from bertkit.index.vector_index import VectorIndex

if TYPE_CHECKING:
    from bertkit.model import Model

STORAGE_DEFAULT = "f16"


def model_fingerprint(model: "Model") -> str:
    """What identifies a model's vectors wherever its folder lives: its config and the start of its weights."""
    h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode("utf-8"))
    if model.folder is not None:
        weights = sorted(Path(model.folder).glob("*.safetensors")) + sorted(Path(model.folder).glob("*.bin"))
        if weights:
            with open(weights[0], "rb") as f:
                h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


def index_settings(model: "Model", pooling: str | None = None, normalize: bool | None = None) -> dict:
    """The embedding settings an index records: the model (by name and fingerprint), pooling, normalisation, dim."""
    from bertkit.tasks.embed import EmbedOptions, settings

    pooling, normalize = settings(model, EmbedOptions(pooling=pooling, normalize=normalize))
    return {"model": str(model.source), "pooling": pooling, "normalize": bool(normalize),
            "dim": int(model.config.hidden_size), "fingerprint": model_fingerprint(model)}


def check_model(manifest: IndexManifest, model: "Model") -> None:
    """One line unless `model` makes the vectors this index holds (same name, or the same weights under another name)."""
    ours = index_settings(model, manifest.pooling, manifest.normalize)
    if ours["model"] != manifest.model and ours["fingerprint"] != manifest.extra.get("fingerprint"):
        raise BertkitError(f"this index was built with the model {manifest.model!r}, not {model.source!r}; search it "
                           "with that model (--model), or build a new index with this one")
    manifest.check_compatible(manifest.model, ours["pooling"], ours["normalize"], ours["dim"])


def build_index(
    model: "Model",
    source: str | os.PathLike,
    output: str | os.PathLike,
    *,
    text_column: str | None = None,
    id_column: str | None = None,
    metadata_columns: Sequence[str] = (),
    shard_rows: int = 10_000,
    storage: str = STORAGE_DEFAULT,
    pooling: str | None = None,
    normalize: bool | None = True,
    batch_tokens: int | None = None,
    progress: bool = True,
    options: dict | None = None,
) -> dict:
    """Embed every row of `source` (a file or a folder of them) into the index folder `output` (created or added to).

    Rows are read `shard_rows` at a time; each shard's new or changed rows (by id and a hash of text
    and metadata) are embedded and written atomically, so a killed build run again carries on and
    embeds only what is missing. Ids come from `id_column`, else "<file>:<row>" (stable while the
    files are). Rows without text are counted and skipped. `options` are embed's (long documents).
    """
    from tqdm.auto import tqdm

    from bertkit.corpus import input_files
    from bertkit.data import input_format, iter_table, table_columns, text_column as pick_text
    from bertkit.data.columns import pick_column
    from bertkit.tasks import get
    from bertkit.tasks.tables import run_table

    if shard_rows < 1:
        raise OptionError("shard_rows", "must be at least 1")
    files = input_files(source)
    wanted = index_settings(model, pooling, normalize)
    if (Path(output) / MANIFEST).exists():  # carry on, or add to, an index: same model (by name or weights)
        index = VectorIndex.open(output)
        check_model(index.manifest, model)
        wanted.update(pooling=index.manifest.pooling, normalize=index.manifest.normalize)
    else:
        index = VectorIndex.create(output, wanted["dim"], model=wanted["model"], pooling=wanted["pooling"],
                                   normalize=wanted["normalize"], storage=storage,
                                   extra={"fingerprint": wanted["fingerprint"]})
    base = Path(source) if Path(source).is_dir() else Path(source).parent
    counts = {"rows": 0, "embedded": 0, "added": 0, "replaced": 0, "unchanged": 0, "errors": 0}
    bar = tqdm(desc="index", unit="rows", disable=not progress, dynamic_ncols=True)
    embed = get("embed")
    for path in files:
        columns = table_columns(path)
        is_txt = input_format(path)[0] == ".txt"
        text = pick_text(columns, None if is_txt else text_column, where=str(path))
        ident = pick_column(columns, id_column, (), "id", "id_column", where=str(path)) if id_column else None
        meta = [pick_column(columns, c, (), "metadata", "metadata_columns", where=str(path)) for c in metadata_columns]
        wanted_columns = list(dict.fromkeys([text] + ([ident] if ident else []) + meta))
        name = str(path.relative_to(base)) if path.is_relative_to(base) else str(path)
        for frame in iter_table(path, shard_rows, columns=wanted_columns):
            ids = [str(v) for v in frame[ident]] if ident else [f"{name}:{row}" for row in frame.index]
            metadata = [{c: _plain(v) for c, v in zip(meta, values)} for values in frame[meta].itertuples(index=False)] \
                if meta else [None] * len(frame)
            texts = frame[text].tolist()
            hashes = [content_hash(t if isinstance(t, str) else None, m) for t, m in zip(texts, metadata)]
            todo = np.flatnonzero(index.needs_update(ids, hashes))
            counts["rows"] += len(frame)
            counts["unchanged"] += len(frame) - len(todo)
            if len(todo):
                import pandas as pd

                table, _, _ = run_table(embed, model, pd.DataFrame({"text": [texts[i] for i in todo]}), "text", None,
                                        batch_tokens, pooling=wanted["pooling"], normalize=wanted["normalize"],
                                        **(options or {}))
                ok = [k for k, error in enumerate(table["error"]) if error is None]
                counts["errors"] += len(todo) - len(ok)
                if ok:
                    rows = [todo[k] for k in ok]
                    added = index.add([ids[i] for i in rows], np.stack([table["embedding"][k] for k in ok]),
                                      [texts[i] for i in rows], [metadata[i] for i in rows], [hashes[i] for i in rows])
                    counts["embedded"] += len(ok)
                    counts["added"] += added["added"]
                    counts["replaced"] += added["replaced"]
            bar.update(len(frame))
    bar.close()
    index.flush()
    return {**counts, "index": index.info()}


def _plain(value: Any) -> Any:
    """A metadata cell as a JSON value (numpy scalars as numbers, missing as None)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value
