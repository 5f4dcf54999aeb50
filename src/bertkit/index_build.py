"""Building an index from a corpus: a pipeline above the tasks (it embeds) and the index (it stores), beside corpus mode.

Rows are read `shard_rows` at a time; each shard's new or changed rows (by id and a hash of text and
metadata) are embedded and written atomically, so a killed build run again carries on and embeds only
what is missing. Before anything is written, the output must be new, empty or an index of ours, and
apart from the input; and the ids are read once, whole, so a duplicate is found whatever the shard
size (an error naming the id and its rows) and a missing id is an invalid row (an error, or dropped
and counted with `drop_invalid`), never an empty id. The index's lock is held from the first write to
the last: a second writer is refused with one line naming this one.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from bertkit.data import SHARD_ROWS, input_files, input_format, iter_table, table_columns, text_column as pick_text
from bertkit.data.columns import pick_column
from bertkit.errors import BertkitError, OptionError
from bertkit.index.model_check import check_model, model_fingerprint
from bertkit.index.quantize import STORAGE_DEFAULT
from bertkit.index.store import MANIFEST, content_hash
from bertkit.index.vector_index import WHAT, VectorIndex, is_index
from bertkit.output_folders import claim_folder

if TYPE_CHECKING:
    from bertkit.model import Model

ID_COLUMNS = ("id",)  # a column of one of these names holds the ids when none is named (as `text` holds the texts)


def index_settings(model: "Model", pooling: str | None = None, normalize: bool | None = None) -> dict:
    """The embedding settings an index records: the model (by name and fingerprint), pooling, normalisation, dim."""
    from bertkit.tasks.embed import EmbedOptions, settings

    pooling, normalize = settings(model, EmbedOptions(pooling=pooling, normalize=normalize))
    return {"model": str(model.source), "pooling": pooling, "normalize": bool(normalize),
            "dim": int(model.config.hidden_size), "fingerprint": model_fingerprint(model)}


@dataclass
class _File:
    """One input file and the columns read from it."""

    path: Path
    name: str  # as FILE in FILE:ROW ids and in messages: relative to the input folder
    text: str
    ident: str | None
    meta: list[str]
    dropped: set[int] = field(default_factory=set)  # rows left out for a missing id (drop_invalid)

    @property
    def columns(self) -> list[str]:
        return list(dict.fromkeys([self.text] + ([self.ident] if self.ident else []) + self.meta))


def build_index(
    model: "Model",
    source: str | os.PathLike,
    output: str | os.PathLike,
    *,
    text_column: str | None = None,
    id_column: str | None = None,
    metadata_columns: Sequence[str] = (),
    shard_rows: int = SHARD_ROWS,
    storage: str = STORAGE_DEFAULT,
    pooling: str | None = None,
    normalize: bool | None = True,
    batch_tokens: int | None = None,
    drop_invalid: bool = False,
    progress: bool = True,
    options: dict | None = None,
) -> dict:
    """Embed every row of `source` (a file or a folder of them) into the index folder `output` (created or added to).

    Ids come from `id_column`, else from a column named `id` when every file has one, else are
    "<file>:<row>" (stable while the files are); the report's `id_column` says which. Rows without
    text are counted (`errors`) and skipped. `options` are embed's (long documents).
    """
    from bertkit.terminal import progress_bar

    if shard_rows < 1:
        raise OptionError("shard_rows", "must be at least 1")
    files = input_files(source)
    base = Path(source) if Path(source).is_dir() else Path(source).parent
    inputs = _plan(files, base, text_column, id_column, metadata_columns)
    claim_folder(output, source, WHAT, is_index)
    dropped = _check_ids(inputs, shard_rows, drop_invalid)
    wanted = index_settings(model, pooling, normalize)
    if (Path(output) / MANIFEST).exists():  # carry on, or add to, an index: same weights (by fingerprint)
        index = VectorIndex.open(output)
        check_model(index.manifest, model)
        wanted.update(pooling=index.manifest.pooling, normalize=index.manifest.normalize)
    else:
        index = VectorIndex.create(output, wanted["dim"], model=wanted["model"], pooling=wanted["pooling"],
                                   normalize=wanted["normalize"], storage=storage,
                                   extra={"fingerprint": wanted["fingerprint"]})
    counts = {"rows": 0, "embedded": 0, "added": 0, "replaced": 0, "unchanged": 0, "errors": 0,
              "dropped": dropped, "id_column": inputs[0].ident}
    bar = progress_bar(desc="index", unit="rows", disable=not progress, dynamic_ncols=True)
    with index.writing():
        for source_file in inputs:
            for frame in iter_table(source_file.path, shard_rows, columns=source_file.columns):
                _add_rows(index, model, source_file, frame, wanted, counts, batch_tokens, options)
                bar.update(len(frame))
        bar.close()
        index.flush()
    return {**counts, "index": index.info()}


def _plan(files: list[Path], base: Path, text_column: str | None, id_column: str | None,
          metadata_columns: Sequence[str]) -> list[_File]:
    """Which column of each file holds the texts, the ids and the metadata; the same id rule for every file."""
    planned = []
    for path in files:
        columns = table_columns(path)
        where = str(path)
        text = pick_text(columns, None if input_format(path)[0] == ".txt" else text_column, where=where)
        ident = pick_column(columns, id_column, ID_COLUMNS, "id", "id_column", where=where, required=False)
        meta = [pick_column(columns, c, (), "metadata", "metadata_columns", where=where) for c in metadata_columns]
        name = str(path.relative_to(base)) if path.is_relative_to(base) else str(path)
        planned.append(_File(path, name, text, ident, meta))
    with_ids = [f for f in planned if f.ident]
    if with_ids and len(with_ids) < len(planned):
        without = next(f for f in planned if not f.ident)
        raise OptionError("id_column", f"is needed: {with_ids[0].name} has an id column ({with_ids[0].ident!r}) but "
                                       f"{without.name} has none, so their rows cannot be named alike; give every "
                                       "file an id column, or index them separately")
    return planned


def _check_ids(inputs: list[_File], shard_rows: int, drop_invalid: bool) -> int:
    """Read every id once, before anything is written: a duplicate is an error naming the id and both rows, a
    missing id an invalid row (an error, or dropped with drop_invalid). Returns the number of rows dropped."""
    if not inputs[0].ident:
        return 0  # FILE:ROW ids are unique and never missing
    seen: dict[str, tuple[str, int]] = {}
    missing: list[tuple[str, int]] = []
    for source_file in inputs:
        for frame in iter_table(source_file.path, shard_rows, columns=[source_file.ident]):
            for row, value in zip(frame.index, frame[source_file.ident]):
                if _missing(value):
                    missing.append((source_file.name, int(row)))
                    source_file.dropped.add(int(row))
                    continue
                key = str(value)
                first = seen.setdefault(key, (source_file.name, int(row)))
                if first != (source_file.name, int(row)):
                    raise BertkitError(f"id {key!r} is in the input twice: rows {first[0]}:{first[1]} and "
                                       f"{source_file.name}:{row} (counting from 0, header not counted); ids must be "
                                       "unique: fix them, or name rows FILE:ROW by using a file without an id column")
    if missing and not drop_invalid:
        shown = ", ".join(f"{name}:{row}" for name, row in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise BertkitError(f"{len(missing)} row(s) have no id in column {inputs[0].ident!r}: {shown} (counting from 0, "
                           "header not counted); fill them in, or pass drop_invalid=True (--drop-invalid) to leave "
                           "those rows out")
    return len(missing)


def _missing(value: Any) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    if isinstance(value, str):
        return not value.strip()
    try:
        import pandas as pd

        return pd.isna(value) is True
    except (TypeError, ValueError):
        return False


def _add_rows(index: VectorIndex, model: "Model", source_file: _File, frame, wanted: dict, counts: dict,
              batch_tokens: int | None, options: dict | None) -> None:
    """Embed one shard's new or changed rows and add them to the index."""
    import pandas as pd

    from bertkit.tasks import get
    from bertkit.tasks.tables import run_table

    if source_file.dropped:
        frame = frame[[row not in source_file.dropped for row in frame.index]]
    meta = source_file.meta
    ids = [str(v) for v in frame[source_file.ident]] if source_file.ident else \
        [f"{source_file.name}:{row}" for row in frame.index]
    metadata = [{c: _plain(v) for c, v in zip(meta, values)} for values in frame[meta].itertuples(index=False)] \
        if meta else [None] * len(frame)
    texts = frame[source_file.text].tolist()
    hashes = [content_hash(t if isinstance(t, str) else None, m) for t, m in zip(texts, metadata)]
    todo = np.flatnonzero(index.needs_update(ids, hashes))
    counts["rows"] += len(frame)
    counts["unchanged"] += len(frame) - len(todo)
    if not len(todo):
        return
    table, _, _ = run_table(get("embed"), model, pd.DataFrame({"text": [texts[i] for i in todo]}), "text", None,
                            batch_tokens, pooling=wanted["pooling"], normalize=wanted["normalize"], **(options or {}))
    ok = [k for k, error in enumerate(table["error"]) if error is None]
    counts["errors"] += len(todo) - len(ok)
    if ok:
        rows = [todo[k] for k in ok]
        added = index.add([ids[i] for i in rows], np.stack([table["embedding"][k] for k in ok]),
                          [texts[i] for i in rows], [metadata[i] for i in rows], [hashes[i] for i in rows])
        counts["embedded"] += len(ok)
        counts["added"] += added["added"]
        counts["replaced"] += added["replaced"]


def _plain(value: Any) -> Any:
    """A metadata cell as a JSON value (numpy scalars as numbers, missing as None)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value
