"""Batch inference over corpora larger than memory: streamed, sharded across processes, restartable.

The input (a Parquet/CSV/JSONL/txt file, or a folder of them) is cut into fixed-size shards in a
deterministic order. Process `rank` of `world_size` (torchrun sets both) takes every
`world_size`-th shard, runs the model on it, and writes `part-FFFF-CCCCCC.parquet` atomically.
A re-run skips parts that exist, so a killed job resumes where it stopped, without duplicates.
Every output row carries the input's file and row number.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bertkit.checkpoint import atomic_write
from bertkit.errors import BertkitError

if TYPE_CHECKING:
    from bertkit.model import Model

STREAMABLE = (".parquet", ".csv", ".tsv", ".jsonl", ".txt")
RUN_FILE = "_bertkit_run.json"
TASKS = ("embed", "predict")


@dataclass(frozen=True)
class Shard:
    file_index: int
    chunk: int
    path: Path
    first_row: int  # row number, inside its file, of the shard's first row

    @property
    def name(self) -> str:
        return f"part-{self.file_index:04d}-{self.chunk:06d}.parquet"


def input_files(source: str | os.PathLike) -> list[Path]:
    """The files of a corpus, in a fixed order: one file, or every streamable file under a folder."""
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in STREAMABLE and not p.name.startswith((".", "_")))
        if not files:
            raise BertkitError(f"{path} holds no {', '.join(STREAMABLE)} files")
        return files
    if not path.exists():
        raise BertkitError(f"{path} does not exist")
    if path.suffix not in STREAMABLE:
        raise BertkitError(f"{path}: corpus inference streams {', '.join(STREAMABLE)} files; convert it or pass a folder")
    return [path]


def read_chunks(path: Path, column: str, rows: int) -> Iterator[pd.Series]:
    """The text column of `path`, `rows` at a time, never the whole file in memory."""
    if path.suffix == ".parquet":
        file = pq.ParquetFile(path)
        if column not in file.schema_arrow.names:
            raise BertkitError(f"column '{column}' not in {path}; available: {', '.join(file.schema_arrow.names)} — pass --text-column")
        for batch in file.iter_batches(batch_size=rows, columns=[column]):
            yield batch.column(0).to_pandas()
    elif path.suffix == ".txt":
        with open(path, encoding="utf-8") as f:
            lines: list[str] = []
            for line in f:
                lines.append(line.rstrip("\n"))
                if len(lines) == rows:
                    yield pd.Series(lines, dtype=object)
                    lines = []
            if lines:
                yield pd.Series(lines, dtype=object)
    else:
        reader = (pd.read_json(path, lines=True, chunksize=rows, dtype=False) if path.suffix == ".jsonl" else
                  pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",", chunksize=rows, dtype=str, keep_default_na=False))
        with reader:
            for frame in reader:
                if column not in frame.columns:
                    raise BertkitError(f"column '{column}' not in {path}; available: {', '.join(map(str, frame.columns))} — pass --text-column")
                yield frame[column]


def _column_for(path: Path, column: str | None) -> str:
    return "text" if path.suffix == ".txt" else (column or "text")


def run_corpus(
    model: "Model",
    task: str,
    source: str | os.PathLike,
    output_dir: str | os.PathLike,
    text_column: str | None = None,
    shard_rows: int = 10_000,
    rank: int | None = None,
    world_size: int | None = None,
    progress: bool = True,
    options: dict | None = None,
) -> dict:
    """Run `task` ("embed" or "predict") over a corpus; returns counts of shards done and skipped.

    `options` go to `model.embed` (pooling, normalize, max_length, batch_tokens) or `model.predict`
    (threshold, batch_tokens); they are part of the run's identity, so a re-run must repeat them.
    """
    options = dict(options or {})
    if task not in TASKS:
        raise BertkitError(f"unknown corpus task '{task}'; use one of {', '.join(TASKS)}")
    rank = int(os.environ.get("RANK", 0)) if rank is None else rank
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
    files = input_files(source)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_same_run(out, {"task": task, "model": model.source, "source": str(source),
                          "files": [str(f) for f in files], "text_column": text_column, "shard_rows": shard_rows,
                          "options": {k: v for k, v in options.items() if k != "batch_tokens"}})
    done = skipped = rows = 0
    shards = _my_shards(files, text_column, shard_rows, rank, world_size)
    bar = _progress(progress and rank == 0, f"{task} (rank {rank}/{world_size})")
    for shard, texts in shards:
        target = out / shard.name
        if target.exists():
            skipped += 1
            continue
        table = _run_task(model, task, shard, texts, options)
        atomic_write(target, lambda tmp: pq.write_table(table, tmp))
        done += 1
        rows += len(texts)
        bar.update(len(texts))
    bar.close()
    return {"rank": rank, "world_size": world_size, "shards_written": done, "shards_skipped": skipped,
            "rows": rows, "output": str(out)}


def _my_shards(files, column, shard_rows, rank, world_size) -> Iterator[tuple[Shard, pd.Series]]:
    n = 0
    for file_index, path in enumerate(files):
        first_row = 0
        for chunk, texts in enumerate(read_chunks(path, _column_for(path, column), shard_rows)):
            if n % world_size == rank:
                yield Shard(file_index, chunk, path, first_row), texts.reset_index(drop=True)
            n += 1
            first_row += len(texts)


def _run_task(model: "Model", task: str, shard: Shard, texts: pd.Series, options: dict) -> pa.Table:
    values = texts.tolist()
    ok = [i for i, t in enumerate(values) if isinstance(t, str)]
    errors = [None if isinstance(t, str) else "missing or non-string text" for t in values]
    columns: dict[str, pa.Array] = {}
    if task == "embed":
        vectors = model.embed([values[i] for i in ok], **options) if ok else np.zeros((0, model.config.hidden_size), np.float32)
        full: list = [None] * len(values)
        for i, v in zip(ok, vectors):
            full[i] = v
        columns["embedding"] = pa.array(full, type=pa.list_(pa.float32(), model.config.hidden_size))
    else:
        results = model.predict(values, **options)
        columns["label"] = pa.array([r["label"] for r in results], type=pa.string())
        for name in model.labels:
            columns[f"score_{name}"] = pa.array([None if r["scores"] is None else r["scores"][name] for r in results], type=pa.float32())
        columns["truncated"] = pa.array([r.get("truncated", 0) for r in results], type=pa.int32())
        errors = [r.get("error") for r in results]
    return pa.table({
        "source": pa.array([str(shard.path)] * len(values)),
        "row_id": pa.array(np.arange(len(values)) + shard.first_row, type=pa.int64()),
        **columns,
        "error": pa.array(errors, type=pa.string()),
    })


def _check_same_run(out: Path, settings: dict) -> None:
    """Refuse to mix parts of two different runs in one folder; remember this run's settings."""
    record = out / RUN_FILE
    if record.exists():
        try:
            previous = json.loads(record.read_text())
        except json.JSONDecodeError:
            previous = None
        if previous is not None and previous != settings:
            changed = sorted(k for k in settings if previous.get(k) != settings[k])
            raise BertkitError(f"{out} holds results of a different run (changed: {', '.join(changed)}); pass a new --output folder")
        return
    # Ranks starting together may each write it: same content, atomic rename, so no harm.
    atomic_write(record, lambda tmp: Path(tmp).write_text(json.dumps(settings, indent=2)))


def rank_device(requested: str | None) -> str | None:
    """Under torchrun with CUDA, each process takes the GPU of its LOCAL_RANK unless a device was given."""
    if requested is None and "LOCAL_RANK" in os.environ:
        import torch

        if torch.cuda.is_available():
            return f"cuda:{int(os.environ['LOCAL_RANK']) % torch.cuda.device_count()}"
    return requested


def _progress(enabled: bool, description: str):
    from tqdm.auto import tqdm

    return tqdm(desc=description, unit="rows", disable=not enabled, dynamic_ncols=True)


def read_results(output_dir: str | os.PathLike) -> pd.DataFrame:
    """All parts of a finished run as one frame, in input order (file, then row)."""
    parts = sorted(Path(output_dir).glob("part-*.parquet"))
    if not parts:
        raise BertkitError(f"{output_dir} holds no part-*.parquet files")
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
