"""The index folder on disk: Parquet parts of rows, a saved graph, and a manifest written last that names them.

    INDEX/manifest.json          what the index is (model, pooling, normalisation, dimension, metric,
                                 storage) and which files make it; replaced atomically, last
    INDEX/part-000000.parquet    rows: id, text, metadata (JSON), content hash, vector (float32,
                                 little-endian, as fixed-size binary: it decodes five times faster
                                 than a list column, and opening an index is mostly decoding)
    INDEX/ann-000007.usearch     the HNSW graph over the rows of the parts it covers (derived data)

A write adds a part and maybe a graph under new names, then replaces the manifest. A write killed
at any point leaves the previous manifest, which names only complete files. Only files that provably
are ours are ever removed: those a replaced manifest named and the new one does not, those a writer
noted in its lock before creating them (bertkit.write_lock), and our own temporary files.

What is read is checked, since a manifest is a file anyone can edit: its schema (types and allowed
values), part and graph names that stay inside the folder, and each part's own record of the
settings its vectors were made with (model, fingerprint, pooling, normalisation, dimension), which
must agree with the manifest's.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from bertkit.errors import BertkitError
from bertkit.index.quantize import STORAGES
from bertkit.output_folders import write_file
from bertkit.pooling import POOLINGS

MANIFEST = "manifest.json"
FORMAT = 1
METRICS = ("cosine", "ip")
PART = re.compile(r"part-(\d{6})\.parquet")
ANN = re.compile(r"ann-(\d{6})\.usearch")
# Which settings make an index's vectors comparable with a query's: the same model, pooled and
# normalised the same way. `check_compatible` compares exactly these.
MODEL_FIELDS = ("model", "pooling", "normalize", "dim")
# What each part records about how its vectors were made (the model fields and the weights' fingerprint),
# under this key of its Parquet metadata; opening compares it with the manifest.
PART_RECORD = b"bertkit"


@dataclass(frozen=True)
class AnnEntry:
    """The saved graph: its file, how many stored rows (from the first) it covers, the int8 scale."""

    file: str
    rows: int
    scale: float = 1.0


@dataclass(frozen=True)
class IndexManifest:
    """What an index folder holds. `parts` are (file name, row count) in the order rows were added."""

    model: str
    pooling: str
    normalize: bool
    dim: int
    metric: str = "cosine"
    storage: str = "f16"
    parts: tuple[tuple[str, int], ...] = ()
    ann: AnnEntry | None = None
    generation: int = 0
    format: int = FORMAT
    extra: dict = field(default_factory=dict)  # free-form facts for the caller (e.g. the input it came from)

    @property
    def stored_rows(self) -> int:
        return sum(rows for _, rows in self.parts)

    @property
    def fingerprint(self) -> str | None:
        """The fingerprint of the weights that made the vectors (bertkit.index.model_check), if recorded."""
        return self.extra.get("fingerprint")

    def vector_settings(self) -> dict:
        """What made the vectors: the model fields and the weights' fingerprint (what each part records too)."""
        return {**{k: getattr(self, k) for k in MODEL_FIELDS}, "fingerprint": self.fingerprint}

    def check_compatible(self, model: str, pooling: str, normalize: bool, dim: int) -> None:
        """Raise a one-line BertkitError unless vectors from these settings can be searched in this index."""
        wanted = {"model": model, "pooling": pooling, "normalize": bool(normalize), "dim": int(dim)}
        differ = [f"{k} {getattr(self, k)!r} (not {wanted[k]!r})" for k in MODEL_FIELDS if getattr(self, k) != wanted[k]]
        if differ:
            raise BertkitError(f"this index was built with {', '.join(differ)}; use the index's settings "
                               "or build a new index")

    def to_json(self) -> str:
        record = asdict(self)
        record["parts"] = [{"file": f, "rows": n} for f, n in self.parts]
        return json.dumps(record, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "IndexManifest":
        """The manifest in `text`; ValueError with a one-line reason when it breaks the schema (MANIFEST_SCHEMA)."""
        try:
            record = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"not JSON ({e.msg} at line {e.lineno})") from None
        check_schema(record)
        record["parts"] = tuple((p["file"], p["rows"]) for p in record["parts"])
        record["ann"] = AnnEntry(**record["ann"]) if record["ann"] is not None else None
        return cls(**record)


def _whole(least: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= least


def _one_of(values: tuple) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: isinstance(v, str) and v in values), "one of " + ", ".join(values)


def _entries(pattern: re.Pattern, keys: dict[str, tuple[Callable[[Any], bool], str]]) -> Callable[[Any], bool]:
    def ok(v: Any) -> bool:
        return isinstance(v, dict) and set(v) == set(keys) and isinstance(v.get("file"), str) \
            and pattern.fullmatch(v["file"]) is not None and all(check(v[k]) for k, (check, _) in keys.items())
    return ok


_ANN_KEYS = {"file": (lambda v: True, ""), "rows": (_whole(0), ""),
             "scale": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0,
                       "")}
_PART_KEYS = {"file": (lambda v: True, ""), "rows": (_whole(0), "")}
# Each field of a manifest, what it must hold, and how to say so.
MANIFEST_SCHEMA: dict[str, tuple[Callable[[Any], bool], str]] = {
    "model": (lambda v: isinstance(v, str) and v != "", "a model name"),
    "pooling": _one_of(POOLINGS),
    "normalize": (lambda v: isinstance(v, bool), "true or false"),
    "dim": (_whole(1), "a whole number of dimensions, at least 1"),
    "metric": _one_of(METRICS),
    "storage": _one_of(STORAGES),
    "parts": (lambda v: isinstance(v, list) and all(map(_entries(PART, _PART_KEYS), v)),
              'a list of {"file": "part-NNNNNN.parquet", "rows": N} (files inside the index folder)'),
    "ann": (lambda v: v is None or _entries(ANN, _ANN_KEYS)(v),
            'null or {"file": "ann-NNNNNN.usearch", "rows": N, "scale": X} (a file inside the index folder)'),
    "generation": (_whole(0), "a whole number, at least 0"),
    "format": (lambda v: v == FORMAT, f"{FORMAT}, the format this bertkit reads"),
    "extra": (lambda v: isinstance(v, dict) and isinstance(v.get("fingerprint", ""), str),
              "an object (its fingerprint a string)"),
}


def check_schema(record: Any) -> None:
    """ValueError naming the first field of a manifest record that is missing, unknown or of a wrong type or value."""
    if not isinstance(record, dict):
        raise ValueError(f"it holds {type(record).__name__ if record is not None else 'null'}, not a JSON object")
    unknown = sorted(set(record) - set(MANIFEST_SCHEMA))
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r}")
    for name, (ok, wanted) in MANIFEST_SCHEMA.items():
        if name not in record:
            raise ValueError(f"field {name!r} is missing")
        if not ok(record[name]):
            raise ValueError(f"field {name!r} is {_shown(record[name])}; it must be {wanted}")
    files = [p["file"] for p in record["parts"]]
    if len(set(files)) != len(files):
        raise ValueError("field 'parts' names a file twice")
    if record["ann"] is not None and record["ann"]["rows"] > sum(p["rows"] for p in record["parts"]):
        raise ValueError("field 'ann' covers more rows than the parts hold")


def _shown(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


assert set(MANIFEST_SCHEMA) == {f.name for f in fields(IndexManifest)}  # the schema covers every field


def read_manifest(folder: Path) -> IndexManifest:
    path = folder / MANIFEST
    if not path.is_file():
        what = "does not exist" if not folder.exists() else f"holds no index ({MANIFEST} missing)"
        raise BertkitError(f"{folder} {what}; build an index there first")
    try:
        return IndexManifest.from_json(path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as e:
        raise BertkitError(f"{path} is not a valid index manifest ({e}); restore it or rebuild the index") from None


def write_manifest(folder: Path, manifest: IndexManifest) -> None:
    """The commit point of every write: before it the old index stands, after it the new one."""
    write_file(folder / MANIFEST, lambda tmp: Path(tmp).write_text(manifest.to_json()))


def inside(folder: Path, name: str) -> Path:
    """`folder / name` for a file the manifest names, refused when a link takes it outside the folder."""
    path = folder / name
    if path.is_symlink() and not path.resolve().is_relative_to(folder.resolve()):
        raise BertkitError(f"{path} is a link to a file outside the index folder; an index reads only its own "
                           f"files: replace the link with the file or rebuild the index")
    return path


def part_name(number: int) -> str:
    return f"part-{number:06d}.parquet"


def ann_name(generation: int) -> str:
    return f"ann-{generation:06d}.usearch"


def next_part(manifest: IndexManifest) -> str:
    numbers = [int(PART.fullmatch(f).group(1)) for f, _ in manifest.parts]
    return part_name(max(numbers, default=-1) + 1)


def named_files(manifest: IndexManifest) -> set[str]:
    """The files a manifest names (and so proves are the index's)."""
    return {f for f, _ in manifest.parts} | ({manifest.ann.file} if manifest.ann else set())


def remove_unnamed(folder: Path, manifest: IndexManifest, ours: set[str]) -> None:
    """Delete the files of `ours` (known to be this index's) that `manifest` does not name."""
    for name in sorted(ours - named_files(manifest) - {MANIFEST}):
        if PART.fullmatch(name) or ANN.fullmatch(name):
            (folder / name).unlink(missing_ok=True)


def content_hash(text: str | None, metadata: dict | None = None) -> str:
    """A stable fingerprint of a row's content, to tell changed rows from unchanged ones before embedding."""
    blob = json.dumps([text, metadata], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def vector_hash(vector: np.ndarray) -> str:
    """The fingerprint of a row given without text: its vector's bytes."""
    return hashlib.sha256(np.ascontiguousarray(vector, np.float32).tobytes()).hexdigest()[:32]


def part_table(ids: list[str], vectors: np.ndarray, texts: list[str | None], metadata: list[dict | None],
               hashes: list[str], settings: dict) -> pa.Table:
    """One part's rows, with `settings` (`IndexManifest.vector_settings`) recorded in its metadata."""
    return with_record(pa.table({
        "id": pa.array(ids, pa.string()),
        "text": pa.array(texts, pa.string()),
        "metadata": pa.array([None if m is None else json.dumps(m, ensure_ascii=False, default=str) for m in metadata],
                             pa.string()),
        "hash": pa.array(hashes, pa.string()),
        "vector": vector_column(vectors),
    }), settings)


def with_record(table: pa.Table, settings: dict) -> pa.Table:
    return table.replace_schema_metadata({PART_RECORD: json.dumps(settings, sort_keys=True).encode()})


def vector_column(vectors: np.ndarray) -> pa.Array:
    """Vectors [n, dim] as one fixed-size binary value each: dim little-endian float32s."""
    data = np.ascontiguousarray(vectors, dtype="<f4")
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(data.shape[1] * 4), len(data), [None, pa.py_buffer(data)])


def column_vectors(column: pa.ChunkedArray | pa.Array, dim: int) -> np.ndarray:
    """The [n, dim] float32 vectors of a `vector_column` (a view of its buffer where it can be)."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    flat = np.frombuffer(array.buffers()[1], dtype="<f4")
    return flat[array.offset * dim: (array.offset + len(array)) * dim].reshape(len(array), dim)


def write_part(folder: Path, name: str, table: pa.Table) -> None:
    # Random-looking floats neither compress nor dictionary-encode; trying only costs time.
    write_file(folder / name, lambda tmp: pq.write_table(table, tmp, compression={
        "id": "snappy", "text": "snappy", "metadata": "snappy", "hash": "snappy", "vector": "none"},
        use_dictionary=["metadata"]))


def read_parts(folder: Path, manifest: IndexManifest) -> tuple[pa.Table, np.ndarray]:
    """Every stored row, in order: the table of id, text, metadata and hash, and the vectors [n, dim]."""
    tables, vectors = [], np.empty((manifest.stored_rows, manifest.dim), np.float32)
    row = 0
    for name, rows in manifest.parts:
        path = inside(folder, name)
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowInvalid) as e:
            raise BertkitError(f"{path} is missing or damaged ({e}); rebuild the index") from None
        check_part(path, table, manifest, rows)
        vectors[row: row + rows] = column_vectors(table.column("vector"), manifest.dim)
        tables.append(table.drop_columns(["vector"]))
        row += rows
    # Arrow's allocator keeps the decoded vector columns' memory for reuse; give it back to the
    # system, or opening costs about three times the vectors' size in resident memory.
    pa.default_memory_pool().release_unused()
    schema = pa.schema([("id", pa.string()), ("text", pa.string()), ("metadata", pa.string()), ("hash", pa.string())])
    return (pa.concat_tables(tables) if tables else schema.empty_table()), vectors


def check_part(path: Path, table: pa.Table, manifest: IndexManifest, rows: int) -> None:
    """One line unless a part holds what the manifest says: its row count, columns, vector width and settings."""
    if table.num_rows != rows:
        raise BertkitError(f"{path} holds {table.num_rows} rows, the manifest says {rows}; rebuild the index")
    missing = [c for c in ("id", "text", "metadata", "hash", "vector") if c not in table.column_names]
    if missing:
        raise BertkitError(f"{path} has no column {missing[0]!r}, so it is not an index part; rebuild the index")
    width = getattr(table.schema.field("vector").type, "byte_width", None)
    if width != 4 * manifest.dim:
        held = f"{width // 4}-dimensional vectors" if width else "no vectors bertkit wrote"
        raise BertkitError(f"{path} holds {held}, but {MANIFEST} says dim {manifest.dim}; restore the manifest "
                           "or rebuild the index")
    raw = (table.schema.metadata or {}).get(PART_RECORD)
    if raw is None:
        return  # a part written before parts recorded their settings
    try:
        record = json.loads(raw)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        raise BertkitError(f"{path} has a damaged settings record; rebuild the index")
    wanted = manifest.vector_settings()
    differ = [k for k in wanted if record.get(k) != wanted[k]]
    if differ:
        k = differ[0]
        raise BertkitError(f"{path} was made with {k} {record.get(k)!r}, but {MANIFEST} says {wanted[k]!r}, so its "
                           "vectors would be compared with queries made another way; restore the manifest or rebuild "
                           "the index")


def take_rows(column: pa.ChunkedArray, rows: np.ndarray) -> list:
    """The values of `column` at row numbers `rows`, in that order, as Python objects.

    Each value is read from the chunk holding it: pyarrow's take on a many-chunk column joins the
    chunks first, which cost 9 ms per search at a million rows (against 1.7 ms for the search).
    """
    rows = np.asarray(rows, np.int64)
    chunks = column.chunks
    bounds = np.cumsum([0] + [len(chunk) for chunk in chunks])
    chunk_of = np.searchsorted(bounds, rows, side="right") - 1
    return [chunks[c][int(r - bounds[c])].as_py() for c, r in zip(chunk_of, rows)]


def with_changes(manifest: IndexManifest, **changes) -> IndexManifest:
    """The next generation of `manifest`."""
    return replace(manifest, generation=manifest.generation + 1, **changes)


def folder_bytes(folder: Path, manifest: IndexManifest) -> int:
    """The bytes of the index's own files (the manifest and the files it names)."""
    return sum((folder / name).stat().st_size for name in named_files(manifest) | {MANIFEST}
               if (folder / name).is_file())

