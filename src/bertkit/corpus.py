"""Batch inference over corpora larger than memory: streamed, sharded across processes, restartable.

The input (a Parquet/CSV/JSONL/txt file, or a folder of them) is cut into fixed-size shards in a
deterministic order. Process `rank` of `world_size` (torchrun sets both) takes every
`world_size`-th shard, runs the model on it, and writes `part-FFFF-CCCCCC.parquet` atomically.
Every output row carries the input's file and row number.

Each part records the shard it came from and a hash of the shard's texts. A re-run skips a part
whose shard reads the same, re-does one whose input changed (and says how many), and removes parts
of shards that no longer exist, so a killed job resumes where it stopped and an edited input is
never reported as done. The output folder must be new, empty or an output of ours, apart from the
input; each rank holds a lock on it while it writes, so two runs cannot write the same parts at once.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bertkit.data import SHARD_ROWS, input_files, input_format, read_chunks
from bertkit.errors import BertkitError
from bertkit.index.model_check import model_fingerprint
from bertkit.output_folders import claim_folder, remove_dead_temporaries, write_file
from bertkit.write_lock import LOCK_FILE, WriteLock

if TYPE_CHECKING:
    from bertkit.model import Model

RUN_FILE = "_bertkit_run.json"
PART = re.compile(r"part-\d{4}-\d{6}\.parquet")
PART_RECORD = b"bertkit"  # the key of a part's own record (its shard and the hash of its texts) in its metadata


@dataclass(frozen=True)
class Shard:
    file_index: int
    chunk: int
    path: Path
    first_row: int  # row number, inside its file, of the shard's first row

    @property
    def name(self) -> str:
        return f"part-{self.file_index:04d}-{self.chunk:06d}.parquet"


def run_corpus(
    model: "Model",
    task: str,
    source: str | os.PathLike,
    output_dir: str | os.PathLike,
    text_column: str | None = None,
    shard_rows: int = SHARD_ROWS,
    rank: int | None = None,
    world_size: int | None = None,
    progress: bool = True,
    options: dict | None = None,
) -> dict:
    """Run a table task (`embed`, `predict`, ...) over a corpus; returns counts of shards done and skipped.

    `options` are the task's options (plus `batch_tokens`); they are part of the run's identity,
    so a re-run must repeat them.
    """
    from bertkit.tasks import get, tasks

    options = dict(options or {})
    try:
        declared = get(task)
    except KeyError:
        declared = None
    if declared is None or not declared.table:
        names = ", ".join(t.name for t in tasks() if t.table)
        raise BertkitError(f"unknown corpus task '{task}'; use one of {names}")
    rank = int(os.environ.get("RANK", 0)) if rank is None else rank
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
    files = input_files(source)
    out = claim_folder(output_dir, source, "a bertkit corpus output", lambda folder: (folder / RUN_FILE).is_file())
    # One lock per rank: the ranks of one job write disjoint parts side by side; a second job's rank is refused.
    with WriteLock(out, f"{LOCK_FILE}-rank-{rank}", what="corpus output"):
        remove_dead_temporaries(out)
        _check_same_run(out, {"task": declared.name, "model": model.source, "fingerprint": model_fingerprint(model),
                              "source": str(source), "files": [str(f) for f in files], "text_column": text_column,
                              "shard_rows": shard_rows,
                              "options": {k: v for k, v in options.items() if k != "batch_tokens"}})
        done = skipped = redone = rows = 0
        names = set()
        bar = _progress(progress and rank == 0, f"{declared.name} (rank {rank}/{world_size})")
        for shard, texts in _shards(files, text_column, shard_rows, rank, world_size):
            names.add(shard.name)
            if texts is None:  # another rank's
                continue
            target = out / shard.name
            record = {"source": str(shard.path), "first_row": shard.first_row, "rows": len(texts),
                      "hash": texts_hash(texts)}
            previous = part_record(target)
            if previous == record:
                skipped += 1
                continue
            if target.exists():  # a part whose input changed since it was written
                redone += 1
            table = _run_task(model, declared, shard, texts, options)
            table = table.replace_schema_metadata({PART_RECORD: json.dumps(record, sort_keys=True).encode()})
            write_file(target, lambda tmp: pq.write_table(table, tmp))
            done += 1
            rows += len(texts)
            bar.update(len(texts))
        bar.close()
        gone = _remove_stale_parts(out, names) if rank == 0 else []
    return {"rank": rank, "world_size": world_size, "shards_written": done, "shards_skipped": skipped,
            "shards_redone": redone, "shards_removed": len(gone), "rows": rows, "output": str(out)}


def _shards(files, column, shard_rows, rank, world_size) -> Iterator[tuple[Shard, pd.Series | None]]:
    """Every shard in order, with its texts when it is this rank's (None when another rank's)."""
    n = 0
    for file_index, path in enumerate(files):
        first_row = 0
        # A .txt file has one column, whatever --text-column says for the tables beside it.
        own = None if input_format(path)[0] == ".txt" else column
        for chunk, texts in enumerate(read_chunks(path, own, shard_rows)):
            mine = n % world_size == rank
            yield Shard(file_index, chunk, path, first_row), texts.reset_index(drop=True) if mine else None
            n += 1
            first_row += len(texts)


def texts_hash(texts: pd.Series) -> str:
    """A fingerprint of a shard's texts, as read (missing and non-string cells included)."""
    blob = json.dumps([t if isinstance(t, str) else [repr(t)] for t in texts], ensure_ascii=False)  # "None" != None
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def part_record(path: Path) -> dict | None:
    """What a part of ours records about its shard, or None (no such file, or not one of our parts)."""
    try:
        raw = (pq.read_schema(path).metadata or {}).get(PART_RECORD)
        record = json.loads(raw) if raw else None
    except (OSError, ValueError, pa.ArrowException):
        return None
    return record if isinstance(record, dict) else None


def _remove_stale_parts(out: Path, current: set[str]) -> list[str]:
    """Remove our parts (by name and record) of shards the input no longer has (a file that shrank)."""
    stale = [p for p in out.iterdir() if PART.fullmatch(p.name) and p.name not in current and part_record(p)]
    for path in stale:
        path.unlink(missing_ok=True)
    return [p.name for p in stale]


def _run_task(model: "Model", task, shard: Shard, texts: pd.Series, options: dict) -> pa.Table:
    from bertkit.tasks.tables import run_table

    options = dict(options)
    batch_tokens = options.pop("batch_tokens", None)
    frame = pd.DataFrame({"text": texts.tolist()})
    table, _, _ = run_table(task, model, frame, "text", None, batch_tokens, **options)
    columns = {name: arrow_column(table[name].tolist()) for name in table.columns if name != "text"}
    return pa.table({
        "source": pa.array([str(shard.path)] * len(table)),
        "row_id": pa.array(np.arange(len(table)) + shard.first_row, type=pa.int64()),
        **columns,
    })


def arrow_column(values: list) -> pa.Array:
    """One result column with a stable type whatever a shard holds (vectors as fixed-size float32 lists)."""
    present = [v for v in values if v is not None and not (isinstance(v, float) and np.isnan(v))]
    if present and isinstance(present[0], np.ndarray):
        return pa.array([None if v is None else v.astype(np.float32) for v in values],
                        type=pa.list_(pa.float32(), len(present[0])))
    if not present or isinstance(present[0], str):
        return pa.array([v if isinstance(v, str) else None for v in values], type=pa.string())
    if isinstance(present[0], (bool, np.bool_)):
        return pa.array(values, type=pa.bool_())
    if isinstance(present[0], (int, np.integer)):
        return pa.array(values, type=pa.int32())
    if isinstance(present[0], (float, np.floating)):
        return pa.array([None if v is None or np.isnan(v) else float(v) for v in values], type=pa.float32())
    return pa.array(values)


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
    write_file(record, lambda tmp: Path(tmp).write_text(json.dumps(settings, indent=2)))


def rank_device(requested: str | None) -> str | None:
    """Under torchrun with CUDA, each process takes the GPU of its LOCAL_RANK unless a device was given."""
    if requested is None and "LOCAL_RANK" in os.environ:
        import torch

        if torch.cuda.is_available():
            return f"cuda:{int(os.environ['LOCAL_RANK']) % torch.cuda.device_count()}"
    return requested


def _progress(enabled: bool, description: str):
    from bertkit.terminal import progress_bar

    return progress_bar(desc=description, unit="rows", disable=not enabled, dynamic_ncols=True)


def read_results(output_dir: str | os.PathLike) -> pd.DataFrame:
    """All parts of a finished run as one frame, in input order (file, then row)."""
    parts = sorted(p for p in Path(output_dir).glob("part-*.parquet") if PART.fullmatch(p.name))
    if not parts:
        raise BertkitError(f"{output_dir} holds no part-*.parquet files")
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
