"""`VectorIndex`: add vectors with ids, texts and metadata to an index folder, and answer top-k queries."""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa

from bertkit.errors import BertkitError
from bertkit.index import store
from bertkit.index.ann import EXACT_BELOW, AnnIndex, exact_search
from bertkit.index.quantize import RESCORE_FACTOR, Quantizer, check_storage, rescore
from bertkit.index.store import AnnEntry, IndexManifest
from bertkit.output_folders import claim_folder, remove_dead_temporaries, write_file
from bertkit.write_lock import WriteLock

# The name the index calls itself in messages about its folder.
WHAT = "a bertkit index"

# The saved graph is rewritten once the rows it does not cover exceed this share of those it does:
# opening then adds at most that share to the graph, and a build of many small adds rewrites the
# file a logarithmic number of times, not once per add.
ANN_SAVE_FRACTION = 0.25


@dataclass(frozen=True)
class Hit:
    """One search result: the row's id, its score (inner product; cosine for a cosine index), text and metadata."""

    id: str
    score: float
    text: str | None
    metadata: dict | None

    def to_dict(self) -> dict:
        return {"id": self.id, "score": self.score, "text": self.text, "metadata": self.metadata}


class VectorIndex:
    """Rows of (id, vector, text, metadata, content hash) in an index folder, searchable exactly or by HNSW.

    Ids are strings and unique: adding an id again with other content replaces its row. One process
    writes at a time: every write takes the folder's lock (bertkit.write_lock), and a second writer is
    refused with one line naming the first; `with index.writing():` holds it across many writes.
    Readers take no lock and see the state of the last completed write.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = WriteLock(folder, what="index")
        self._created: set[str] = set()  # files the write in progress has created
        self._load()

    # -- opening ----------------------------------------------------------------------------
    @classmethod
    def create(cls, folder: str | os.PathLike, dim: int, *, model: str, pooling: str, normalize: bool,
               metric: str = "cosine", storage: str = "f16", exist_ok: bool = False,
               extra: dict | None = None) -> "VectorIndex":
        """A new, empty index in `folder`; with `exist_ok`, the index already there if its settings are these."""
        folder = Path(folder)
        if metric not in store.METRICS:
            raise BertkitError(f"unknown metric '{metric}'; use one of {', '.join(store.METRICS)}")
        if int(dim) < 1:
            raise BertkitError(f"dim must be a positive number of vector dimensions, not {dim}")
        check_storage(storage)
        wanted = IndexManifest(model=str(model), pooling=pooling, normalize=bool(normalize), dim=int(dim),
                               metric=metric, storage=storage, extra=dict(extra or {}))
        store.check_schema(json.loads(wanted.to_json()))  # what open would refuse is never written
        claim_folder(folder, None, WHAT, is_index, param="folder")
        with WriteLock(folder, what="index"):
            if not (folder / store.MANIFEST).exists():
                store.write_manifest(folder, wanted)
                return cls(folder)
        if not exist_ok:
            raise BertkitError(f"{folder} already holds an index; open it, or choose another folder")
        found = store.read_manifest(folder)  # checked before the rows are read
        found.check_compatible(wanted.model, wanted.pooling, wanted.normalize, wanted.dim)
        for name in ("metric", "storage"):
            if getattr(found, name) != getattr(wanted, name):
                raise BertkitError(f"{folder} is an index with {name} {getattr(found, name)!r}, "
                                   f"not {getattr(wanted, name)!r}; use that, or choose another folder")
        return cls(folder)

    @classmethod
    def open(cls, folder: str | os.PathLike) -> "VectorIndex":
        """The index in `folder`, ready to search and to add to."""
        return cls(Path(folder))

    def _load(self) -> None:
        """(Re)read the folder: rows, which of them are live, and the graph brought up to date in memory."""
        for attempt in range(3):
            self.manifest = store.read_manifest(self.folder)
            try:
                table, vectors = store.read_parts(self.folder, self.manifest)
                break
            except BertkitError:
                # A writer that committed while we read removes the files its new manifest no longer names:
                # read its state instead. The same manifest twice means the folder really is damaged.
                if attempt == 2 or store.read_manifest(self.folder) == self.manifest:
                    raise
        self._table = table
        self._buffer = vectors  # may grow past the stored rows; `_vectors` is the used part
        self._stored = len(vectors)
        self._row_of = {id_: row for row, id_ in enumerate(table.column("id").to_pylist())}  # the last row of an id wins
        self._dead = _dead_rows(self._stored, self._row_of)
        self._ann: AnnIndex | None = None
        entry = self.manifest.ann
        if entry is not None:
            quantizer = Quantizer(self.manifest.storage, entry.scale)
            self._ann = AnnIndex.load(store.inside(self.folder, entry.file), self.manifest.dim, quantizer)
        if self._ann is not None:
            # The file covers the first `entry.rows` rows as they were then: drop what has been replaced
            # since, add what came after.
            self._ann.remove(self._dead[self._dead < entry.rows])
            newer = np.arange(entry.rows, self._stored)
            newer = np.setdiff1d(newer, self._dead, assume_unique=True)
            self._ann.add(newer, self._vectors[newer])

    @property
    def _vectors(self) -> np.ndarray:
        return self._buffer[: self._stored]

    def __len__(self) -> int:
        """The number of live rows (one per id)."""
        return len(self._row_of)

    def __contains__(self, id_: str) -> bool:
        return str(id_) in self._row_of

    # -- writing ----------------------------------------------------------------------------
    @contextmanager
    def writing(self) -> Iterator["VectorIndex"]:
        """Hold the index's write lock for a block of writes (each write takes it anyway, for itself).

        Taking it, the index catches up with the folder: it removes what a killed writer left (the files
        that writer noted in its lock and no manifest names, its temporary files) and rereads the rows
        when another process committed since this object read them, so no write builds on a stale state.
        """
        first = not self._lock.held
        self._lock.acquire()
        try:
            if first:
                self._catch_up()
            yield self
        finally:
            self._lock.release()

    def _catch_up(self) -> None:
        on_disk = store.read_manifest(self.folder)
        dead = self._lock.taken_over
        if dead:
            store.remove_unnamed(self.folder, on_disk, {str(n) for n in dead.get("writing", [])})
            self._lock.taken_over = None
        remove_dead_temporaries(self.folder)
        if on_disk != self.manifest:
            self._load()

    def _change(self, change: Callable[[], None]) -> None:
        """Run one write under the lock; if it fails, memory and folder are as they were before it."""
        with self.writing():
            self._created = set()
            try:
                change()
            except BaseException:
                self._load()  # memory back to what the folder holds: the state before this call
                store.remove_unnamed(self.folder, self.manifest, self._created)
                raise
            finally:
                self._created = set()

    def _create(self, name: str) -> Path:
        """The path of a file this write is about to create, noted first in the lock (and for cleanup on failure)."""
        self._lock.note_writing([name])
        self._created.add(name)
        return self.folder / name

    def needs_update(self, ids: Sequence[str], hashes: Sequence[str]) -> np.ndarray:
        """A boolean mask over `ids`: True where the id is new or stored with another content hash.

        Compute hashes with `content_hash(text, metadata)` and embed only the rows marked True.
        """
        ids = [str(i) for i in ids]
        _same_length("hashes", hashes, ids)
        rows = [self._row_of.get(i, -1) for i in ids]
        known = [r for r in rows if r >= 0]
        stored = iter(store.take_rows(self._table.column("hash"), np.array(known, np.int64)))
        return np.array([r < 0 or next(stored) != h for r, h in zip(rows, hashes)], dtype=bool)

    def add(self, ids: Sequence[str], vectors: np.ndarray, texts: Sequence[str | None] | None = None,
            metadata: Sequence[dict | None] | None = None, hashes: Sequence[str] | None = None) -> dict:
        """Add rows; an id already stored is replaced when its hash differs and skipped when it is the same.

        `hashes` default to `content_hash(text, metadata)`, or a hash of the vector for rows given no
        text. Returns counts: {"added", "replaced", "unchanged"}. The write is atomic: if it is
        killed, the index is as it was before the call.
        """
        ids = [str(i) for i in ids]
        vectors = self._check_vectors(vectors, "vectors")
        _same_length("vectors", vectors, ids)
        texts = [None] * len(ids) if texts is None else list(texts)
        metadata = [None] * len(ids) if metadata is None else list(metadata)
        _same_length("texts", texts, ids)
        _same_length("metadata", metadata, ids)
        if len(set(ids)) != len(ids):
            raise BertkitError("ids must be unique within one add(); pass each row once")
        if hashes is None:
            hashes = [store.content_hash(t, m) if t is not None else store.vector_hash(v)
                      for t, m, v in zip(texts, metadata, vectors)]
        hashes = [str(h) for h in hashes]
        _same_length("hashes", hashes, ids)

        with self.writing():  # decided on the rows the folder holds now, not those read when it was opened
            keep = np.flatnonzero(self.needs_update(ids, hashes))
            counts = {"added": 0, "replaced": 0, "unchanged": len(ids) - len(keep)}
            if not len(keep):
                return counts
            ids, texts, metadata, hashes = ([seq[i] for i in keep] for seq in (ids, texts, metadata, hashes))
            vectors = self._prepare(vectors[keep])
            replaced = np.array(sorted(self._row_of[i] for i in ids if i in self._row_of), dtype=np.int64)
            counts["replaced"] = len(replaced)
            counts["added"] = len(ids) - len(replaced)

            def write() -> None:
                new_rows = np.arange(self._stored, self._stored + len(ids))
                table = store.part_table(ids, vectors, texts, metadata, hashes, self.manifest.vector_settings())
                name = store.next_part(self.manifest)
                store.write_part(self.folder, self._create(name).name, table)
                manifest = store.with_changes(self.manifest, parts=self.manifest.parts + ((name, len(ids)),))
                self._append_memory(table, vectors, ids, replaced)
                self._commit(self._update_ann(manifest, new_rows, replaced))

            self._change(write)
        return counts

    def flush(self) -> None:
        """Save the graph if the saved one lags behind the rows, so the next opening has nothing to add.

        `add` saves it only now and then (`ANN_SAVE_FRACTION`); call this once a batch of adds is done.
        """
        def write() -> None:
            saved = self.manifest.ann.rows if self.manifest.ann else 0
            if self._ann is not None and saved < self._stored:
                self._commit(self._save_ann(store.with_changes(self.manifest)))

        self._change(write)

    def build_ann(self, storage: str | None = None) -> None:
        """Build the HNSW graph from the stored vectors now (with another storage if given) and save it."""
        def write() -> None:
            chosen = check_storage(storage or self.manifest.storage)
            self._ann = self._new_ann(chosen)
            self._commit(self._save_ann(store.with_changes(self.manifest, storage=chosen)))

        self._change(write)

    def compact(self) -> None:
        """Rewrite the live rows as one part, dropping replaced versions, and rebuild the graph."""
        def write() -> None:
            live = self._live_rows()
            table = self._table.take(pa.array(live, pa.int64())).combine_chunks()
            vectors = self._vectors[live]
            part = store.with_record(table.append_column("vector", store.vector_column(vectors)),
                                     self.manifest.vector_settings())
            name = store.next_part(self.manifest)
            if len(live):
                store.write_part(self.folder, self._create(name).name, part)
            manifest = store.with_changes(self.manifest, parts=((name, len(live)),) if len(live) else (), ann=None)
            self._table, self._buffer, self._stored = table, vectors, len(live)
            self._row_of = {id_: row for row, id_ in enumerate(table.column("id").to_pylist())}
            self._dead = np.zeros(0, np.int64)
            graph = self._ann is not None or self.manifest.ann is not None or _graph_pays(len(live))
            self._ann = self._new_ann(manifest.storage) if graph else None
            self._commit(self._save_ann(manifest) if graph else manifest)

        self._change(write)

    def _append_memory(self, table: pa.Table, vectors: np.ndarray, ids: list[str], replaced: np.ndarray) -> None:
        needed = self._stored + len(vectors)
        if needed > len(self._buffer):  # grow geometrically, so many small adds copy O(n) in all
            grown = np.empty((max(needed, len(self._buffer) * 3 // 2), self.manifest.dim), np.float32)
            grown[: self._stored] = self._vectors
            self._buffer = grown
        self._buffer[self._stored: needed] = vectors
        self._table = pa.concat_tables([self._table, table.drop_columns(["vector"])])
        for offset, id_ in enumerate(ids):
            self._row_of[id_] = self._stored + offset
        self._dead = np.union1d(self._dead, replaced)
        self._stored = needed

    def _update_ann(self, manifest: IndexManifest, new_rows: np.ndarray, replaced: np.ndarray) -> IndexManifest:
        """Keep the graph in step with the rows; returns the manifest naming the graph file to keep."""
        if self._ann is None:
            if not _graph_pays(len(self)):
                return manifest  # exact search is as fast here, and costs no build
            self._ann = self._new_ann(manifest.storage)
            return self._save_ann(manifest)
        self._ann.remove(replaced)
        self._ann.add(new_rows, self._vectors[new_rows])
        covered = manifest.ann.rows if manifest.ann else 0
        if self._stored - covered > ANN_SAVE_FRACTION * covered:
            return self._save_ann(manifest)
        return manifest

    def _new_ann(self, storage: str) -> AnnIndex:
        live = self._live_rows()
        ann = AnnIndex(self.manifest.dim, Quantizer.fit(storage, self._vectors[live]))
        ann.add(live, self._vectors[live])
        return ann

    def _save_ann(self, manifest: IndexManifest) -> IndexManifest:
        name = store.ann_name(manifest.generation)
        write_file(self._create(name), lambda tmp: self._ann.save(Path(tmp)))
        return replace(manifest, ann=AnnEntry(name, self._stored, self._ann.quantizer.scale))

    def _commit(self, manifest: IndexManifest) -> None:
        """Replace the manifest (the commit point), then remove the files only the replaced one named."""
        store.write_manifest(self.folder, manifest)
        replaced, self.manifest = self.manifest, manifest
        store.remove_unnamed(self.folder, manifest, store.named_files(replaced) | self._created)

    # -- searching --------------------------------------------------------------------------
    def search(self, queries: np.ndarray, top_k: int = 10, *, exact: bool | None = None,
               rescore_factor: int | None = None) -> list[list[Hit]]:
        """The `top_k` best rows for each query [q, dim] (or one query [dim]), best first.

        `exact=None` searches exactly below `EXACT_BELOW` live rows and with the graph above;
        True or False forces one way. The graph's shortlist of `top_k * rescore_factor` rows
        (default by storage: `RESCORE_FACTOR`) is rescored with the float32 vectors, so scores are
        exact whichever way a row was found. Fewer than `top_k` hits come back when the index holds fewer rows.
        """
        rows, scores = self.search_rows(queries, top_k, exact=exact, rescore_factor=rescore_factor)
        found = rows[rows >= 0]
        details = iter(zip(*(store.take_rows(self._table.column(name), found) for name in ("id", "text", "metadata"))))
        hits = []
        for query_rows, query_scores in zip(rows, scores):
            hits.append([])
            for row, score in zip(query_rows, query_scores):
                if row >= 0:
                    id_, text, meta = next(details)
                    hits[-1].append(Hit(id_, float(score), text, None if meta is None else json.loads(meta)))
        return hits

    def search_rows(self, queries: np.ndarray, top_k: int = 10, *, exact: bool | None = None,
                    rescore_factor: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """`search` as arrays: stored row numbers [q, top_k] (-1 where none) and their scores."""
        if int(top_k) < 1:
            raise BertkitError(f"top_k must be at least 1, not {top_k}")
        factor = RESCORE_FACTOR[self.manifest.storage] if rescore_factor is None else int(rescore_factor)
        if factor < 1:
            raise BertkitError(f"rescore_factor must be at least 1, not {rescore_factor}")
        queries = self._prepare(self._check_vectors(queries, "queries"))
        if exact or len(self) == 0 or (exact is None and not _graph_pays(len(self))):
            return exact_search(self._vectors, queries, top_k, self._dead)
        if self._ann is None:  # asked for below the build size, or its file was unreadable
            self._ann = self._new_ann(self.manifest.storage)
        candidates, valid = self._ann.candidates(queries, min(top_k * factor, len(self)))
        if candidates.shape[1] < top_k:  # pad so that every query gets `top_k` slots
            pad = ((0, 0), (0, top_k - candidates.shape[1]))
            candidates, valid = np.pad(candidates, pad), np.pad(valid, pad)
        return rescore(candidates, valid, queries, self._vectors, top_k)

    # -- helpers ----------------------------------------------------------------------------
    def _check_vectors(self, vectors, what: str) -> np.ndarray:
        array = np.asarray(vectors, dtype=np.float32)
        if array.ndim == 1:
            array = array[None, :]
        dim = self.manifest.dim
        if array.ndim != 2 or array.shape[1] != dim:
            shape = "x".join(map(str, np.shape(vectors)))
            raise BertkitError(f"{what} have shape {shape}, but this index holds {dim}-dimensional vectors "
                               f"of {self.manifest.model}; embed with the index's model")
        if not np.isfinite(array).all():
            raise BertkitError(f"{what} contain NaN or infinite values; check the embeddings")
        return array

    def _prepare(self, vectors: np.ndarray) -> np.ndarray:
        """Vectors as stored and compared: unit length for a cosine index, as given for inner product."""
        if self.manifest.metric != "cosine":
            return np.ascontiguousarray(vectors)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        # Rows already of unit length (a normalising model's) are kept bit for bit as the model gave them.
        norms[(np.abs(norms - 1) < 1e-5) | (norms == 0)] = 1
        return np.ascontiguousarray(vectors / norms, dtype=np.float32)

    def _live_rows(self) -> np.ndarray:
        return np.setdiff1d(np.arange(self._stored), self._dead, assume_unique=True)

    def info(self) -> dict:
        """What the index holds and how it searches, for `bertkit index info` and logs."""
        m = self.manifest
        return {
            "folder": str(self.folder), "rows": len(self), "stored_rows": self._stored, "dim": m.dim,
            "model": m.model, "pooling": m.pooling, "normalize": m.normalize, "metric": m.metric,
            "storage": m.storage, "parts": len(m.parts), "generation": m.generation,
            "search": "ann" if _graph_pays(len(self)) else "exact", "exact_below": EXACT_BELOW,
            "ann_rows_saved": m.ann.rows if m.ann else 0, "bytes": store.folder_bytes(self.folder, m),
            "extra": m.extra,
        }


def is_index(folder: Path) -> bool:
    """Whether `folder` holds an index of ours (its manifest)."""
    return (Path(folder) / store.MANIFEST).is_file()


def _graph_pays(live_rows: int) -> bool:
    """Whether an index of this many rows searches with the graph (by default) rather than exactly."""
    return live_rows >= EXACT_BELOW


def _dead_rows(stored: int, row_of: dict[str, int]) -> np.ndarray:
    live = np.zeros(stored, bool)
    live[np.fromiter(row_of.values(), np.int64, len(row_of))] = True
    return np.flatnonzero(~live)


def _same_length(name: str, values, ids: list[str]) -> None:
    if len(values) != len(ids):
        raise BertkitError(f"{name} has {len(values)} entries for {len(ids)} ids; pass one per id")
