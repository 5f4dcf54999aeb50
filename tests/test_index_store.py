"""Vector index: Parquet round trip, appends and replacements, crash safety, HNSW and quantised recall, one-line errors."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from bertkit.errors import BertkitError
from bertkit.index import IndexManifest, VectorIndex, content_hash, store
from bertkit.index import vector_index as vector_index_module
from bertkit.output_folders import temp_prefix

DIM = 32
SETTINGS = {"model": "minilm", "pooling": "mean", "normalize": True}


def clustered(n: int, dim: int = DIM, seed: int = 0, centres: int = 30, spread: float = 1.0) -> np.ndarray:
    """Unit vectors around a fixed set of random centres (queries use another seed, same centres)."""
    rng = np.random.default_rng(seed)
    middle = np.random.default_rng(1234).standard_normal((centres, dim)).astype(np.float32)
    x = middle[rng.integers(0, centres, n)] + spread * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def ids(n: int, start: int = 0) -> list[str]:
    return [f"doc-{i}" for i in range(start, start + n)]


def new_index(tmp_path, dim: int = DIM, **kwargs) -> VectorIndex:
    return VectorIndex.create(tmp_path / "index", dim, **{**SETTINGS, **kwargs})


def hit_ids(hits) -> list[list[str]]:
    return [[h.id for h in query] for query in hits]


@pytest.fixture
def small_exact_limit(monkeypatch):
    """Build the graph from 200 live rows on, so graph behaviour shows on small indexes."""
    monkeypatch.setattr(vector_index_module, "EXACT_BELOW", 200)


def test_round_trip_keeps_ids_texts_metadata_and_scores(tmp_path):
    vectors = clustered(50)
    index = new_index(tmp_path)
    counts = index.add(ids(50), vectors, texts=[f"text {i}" for i in range(50)],
                       metadata=[{"n": i, "tags": ["a"]} for i in range(50)])
    assert counts == {"added": 50, "replaced": 0, "unchanged": 0}
    reopened = VectorIndex.open(tmp_path / "index")
    assert len(reopened) == 50 and reopened.manifest == index.manifest
    hits = reopened.search(vectors[:3], top_k=5)
    assert [h[0].id for h in hits] == ["doc-0", "doc-1", "doc-2"]
    assert hits[1][0].text == "text 1" and hits[1][0].metadata == {"n": 1, "tags": ["a"]}
    assert hits[0][0].score == pytest.approx(1.0, abs=1e-5)
    assert all(a.score >= b.score for query in hits for a, b in zip(query, query[1:]))
    assert hit_ids(hits) == hit_ids(index.search(vectors[:3], top_k=5))
    # the stored vectors are the given ones (already unit length), bit for bit
    part = pq.read_table(tmp_path / "index" / index.manifest.parts[0][0])
    assert np.array_equal(store.column_vectors(part.column("vector"), DIM), vectors)
    manifest = json.loads((tmp_path / "index" / "manifest.json").read_text())
    assert manifest["model"] == "minilm" and manifest["dim"] == DIM and manifest["metric"] == "cosine"
    assert index.search(vectors[0], top_k=1)[0][0].id == "doc-0"  # one query may be given as a vector


def test_append_adds_rows_and_fewer_rows_than_top_k_give_fewer_hits(tmp_path):
    vectors = clustered(30)
    index = new_index(tmp_path)
    index.add(ids(10), vectors[:10])
    index.add(ids(20, start=10), vectors[10:])
    assert len(index) == 30 and len(index.manifest.parts) == 2
    assert [h[0].id for h in VectorIndex.open(tmp_path / "index").search(vectors[[5, 25]])] == ["doc-5", "doc-25"]
    hits = index.search(vectors[:2], top_k=100)
    assert [len(h) for h in hits] == [30, 30] and len(set(hit_ids(hits)[0])) == 30


def test_changed_rows_replace_and_unchanged_rows_are_skipped(tmp_path):
    vectors = clustered(40)
    texts = [f"text {i}" for i in range(40)]
    index = new_index(tmp_path)
    index.add(ids(40), vectors, texts=texts)
    hashes = [content_hash(t) for t in texts]
    hashes[3] = content_hash("text 3, edited")
    assert np.flatnonzero(index.needs_update(ids(40) + ["doc-99"], hashes + ["x"])).tolist() == [3, 40]

    changed = vectors.copy()
    changed[3] = -vectors[3]
    texts[3] = "text 3, edited"
    counts = index.add(ids(40), changed, texts=texts)
    assert counts == {"added": 0, "replaced": 1, "unchanged": 39}
    for opened in (index, VectorIndex.open(tmp_path / "index")):
        assert len(opened) == 40 and opened.info()["stored_rows"] == 41
        top = opened.search(-vectors[3], top_k=1)[0][0]
        assert (top.id, top.text) == ("doc-3", "text 3, edited")
        assert "doc-3" not in hit_ids(opened.search(vectors[3], top_k=40))[0][:2]  # the old vector is gone
        assert len(set(hit_ids(opened.search(vectors[:1], top_k=100))[0])) == 40  # every id once
    before = hit_ids(index.search(vectors[:5], top_k=10))
    index.compact()
    assert index.info()["stored_rows"] == 40 and len(index.manifest.parts) == 1
    assert hit_ids(VectorIndex.open(tmp_path / "index").search(vectors[:5], top_k=10)) == before
    assert sorted(p.name for p in (tmp_path / "index").iterdir()) == ["manifest.json", index.manifest.parts[0][0]]


def _fail(*args, **kwargs):
    raise RuntimeError("killed")


@pytest.mark.parametrize("where", ["part", "graph", "manifest"])
def test_a_killed_write_leaves_the_previous_index_with_every_row_once(tmp_path, monkeypatch, small_exact_limit, where):
    vectors = clustered(600)
    index = new_index(tmp_path)
    index.add(ids(300), vectors[:300], texts=[f"old {i}" for i in range(300)])
    assert index.manifest.ann is not None  # 300 rows: a graph is built and saved
    before = index.manifest
    # rows 250..299 change, 300..599 are new; the write dies at `where`
    batch = np.concatenate([-vectors[250:300], vectors[300:]])
    target = {"part": (store.pq, "write_table"), "graph": (vector_index_module.AnnIndex, "save"),
              "manifest": (store, "write_manifest")}[where]
    with monkeypatch.context() as patch:
        patch.setattr(*target, _fail)
        if where == "graph":  # rows past the save threshold, so this add saves the graph
            patch.setattr(vector_index_module, "ANN_SAVE_FRACTION", 0.0)
        with pytest.raises(RuntimeError, match="killed"):
            index.add(ids(350, start=250), batch, texts=[f"new {i}" for i in range(250, 600)])
    for opened in (index, VectorIndex.open(tmp_path / "index")):
        assert opened.manifest == before and len(opened) == 300
        assert _graph_rows(opened) == list(range(300))
        hits = opened.search(vectors[:300], top_k=1, exact=True)
        assert [h[0].id for h in hits] == ids(300) and {h[0].text[:3] for h in hits} == {"old"}
    # the next write succeeds and clears what the dead one left (a SIGKILL also leaves a temporary file of
    # ours); a file that only looks like one (no bertkit prefix, or a live process's) is not ours to remove
    (tmp_path / "index" / f"{temp_prefix(dead_pid())}part-000002.parquet.x1y2.tmp").write_bytes(b"half")
    for name in (".part-000002.parquet.x1y2.tmp", f"{temp_prefix()}x.tmp"):
        (tmp_path / "index" / name).write_bytes(b"someone else's")
    index.add(ids(350, start=250), batch, texts=[f"new {i}" for i in range(250, 600)])
    reopened = VectorIndex.open(tmp_path / "index")
    assert len(reopened) == 600 and _graph_rows(reopened) == list(range(250)) + list(range(300, 650))
    assert [h[0].id for h in reopened.search(np.concatenate([vectors[:250], batch]), top_k=1, exact=True)] == ids(600)
    named = {f for f, _ in reopened.manifest.parts} | {reopened.manifest.ann.file, "manifest.json"}
    assert {p.name for p in (tmp_path / "index").iterdir()} == named | {".part-000002.parquet.x1y2.tmp",
                                                                         f"{temp_prefix()}x.tmp"}


def dead_pid() -> int:
    """The pid of a process that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _graph_rows(index: VectorIndex) -> list[int]:
    """The rows the in-memory graph holds: exactly the live ones when it is in step."""
    return sorted(int(k) for k in index._ann.graph.keys)


def test_graph_top10_equals_exact_top10(tmp_path):
    vectors = clustered(4000, dim=64, centres=40)
    queries = clustered(200, dim=64, seed=1, centres=40)
    index = new_index(tmp_path, dim=64)
    index.add(ids(4000), vectors)
    exact = hit_ids(index.search(queries, top_k=10, exact=True))
    graph = hit_ids(index.search(queries, top_k=10, exact=False))
    assert np.mean([a == b for a, b in zip(exact, graph)]) >= 0.99


def test_graph_is_saved_reopened_and_kept_in_step(tmp_path, small_exact_limit):
    vectors = clustered(500)
    index = new_index(tmp_path)
    index.add(ids(150), vectors[:150])
    assert index.manifest.ann is None  # below the limit: exact search, no graph
    index.add(ids(250, start=150), vectors[150:400])
    saved = index.manifest.ann
    assert saved.rows == 400 and (tmp_path / "index" / saved.file).exists()
    index.add(ids(50, start=400), vectors[400:450])  # under the save fraction: the file stays as it is
    assert index.manifest.ann == saved
    reopened = VectorIndex.open(tmp_path / "index")
    assert _graph_rows(reopened) == list(range(450))  # rows after the saved graph joined it on opening
    found = [h[0].id for h in reopened.search(vectors[:450], top_k=1, exact=False)]
    assert np.mean(np.array(found) == np.array(ids(450))) >= 0.99
    index.flush()  # now the file covers every row
    assert index.manifest.ann.rows == 450 and not (tmp_path / "index" / saved.file).exists()
    assert VectorIndex.open(tmp_path / "index").manifest == index.manifest
    (tmp_path / "index" / index.manifest.ann.file).write_bytes(b"damaged")
    damaged = VectorIndex.open(tmp_path / "index")  # an unreadable graph is not trusted: search rebuilds it
    assert damaged._ann is None
    assert [h[0].id for h in damaged.search(vectors[:450], top_k=1, exact=False)] == found


def _recall(found: list[list[str]], truth: list[list[str]]) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


@pytest.mark.parametrize("storage, least", [("int8", 0.98), ("binary", 0.9)])
def test_quantised_storage_with_rescoring_keeps_recall(tmp_path, storage, least):
    vectors = clustered(3000, dim=128, centres=30)
    queries = clustered(200, dim=128, seed=1, centres=30)
    index = new_index(tmp_path, dim=128, storage=storage)
    index.add(ids(3000), vectors)
    index.build_ann()
    truth = hit_ids(index.search(queries, top_k=10, exact=True))
    rescored = hit_ids(index.search(queries, top_k=10, exact=False))
    raw = hit_ids(index.search(queries, top_k=10, exact=False, rescore_factor=1))
    assert _recall(rescored, truth) >= least
    assert _recall(raw, truth) <= _recall(rescored, truth)
    hit = index.search(queries[:1], top_k=1, exact=False)[0][0]
    assert hit.score == pytest.approx(float(vectors[int(hit.id[4:])] @ queries[0]), abs=1e-5)  # float32 score
    index.build_ann("f16")  # the graph's storage can change after the fact
    assert VectorIndex.open(tmp_path / "index").manifest.storage == "f16"


def test_inner_product_keeps_lengths_and_cosine_normalises(tmp_path):
    vectors = np.array([[3.0, 0.0], [1.0, 1.0]], np.float32)
    cosine = VectorIndex.create(tmp_path / "cos", 2, **SETTINGS)
    ip = VectorIndex.create(tmp_path / "ip", 2, **SETTINGS, metric="ip")
    for index in (cosine, ip):
        index.add(["long", "diagonal"], vectors)
    assert [h.score for h in cosine.search([[1.0, 0.0]])[0]] == pytest.approx([1.0, 2 ** -0.5])
    assert [h.score for h in ip.search([[1.0, 0.0]])[0]] == pytest.approx([3.0, 1.0])


def _one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_user_errors_are_one_line(tmp_path):
    index = new_index(tmp_path)
    index.add(ids(3), clustered(3))
    with pytest.raises(BertkitError) as e:
        index.add(["x"], np.zeros((1, 768), np.float32))
    assert "32-dimensional" in _one_line(e)
    with pytest.raises(BertkitError) as e:
        index.search(np.zeros((2, 16), np.float32))
    assert "32-dimensional" in _one_line(e)
    with pytest.raises(BertkitError) as e:
        index.manifest.check_compatible("bert-base-uncased", "mean", True, 768)
    assert "model 'minilm'" in _one_line(e) and "dim 32" in str(e.value)
    index.manifest.check_compatible("minilm", "mean", True, DIM)
    with pytest.raises(BertkitError) as e:
        VectorIndex.create(tmp_path / "index", DIM, **{**SETTINGS, "pooling": "cls"}, exist_ok=True)
    assert "pooling 'mean'" in _one_line(e)
    assert len(VectorIndex.create(tmp_path / "index", DIM, **SETTINGS, exist_ok=True)) == 3
    with pytest.raises(BertkitError) as e:
        VectorIndex.create(tmp_path / "index", DIM, **SETTINGS)
    assert "already holds an index" in _one_line(e)
    with pytest.raises(BertkitError) as e:
        VectorIndex.open(tmp_path / "nowhere")
    assert "does not exist" in _one_line(e)
    (tmp_path / "empty").mkdir()
    with pytest.raises(BertkitError) as e:
        VectorIndex.open(tmp_path / "empty")
    assert "holds no index" in _one_line(e)
    bad = [
        lambda: index.add(["a", "a"], clustered(2)),
        lambda: index.add(["a", "b"], clustered(3)),
        lambda: index.add(["a"], clustered(1), texts=["x", "y"]),
        lambda: index.add(["a"], np.full((1, DIM), np.nan, np.float32)),
        lambda: index.search(clustered(1), top_k=0),
        lambda: index.search(clustered(1), rescore_factor=0),
        lambda: new_index(tmp_path / "other", storage="int4"),
        lambda: new_index(tmp_path / "other", metric="l2"),
    ]
    for call in bad:
        with pytest.raises(BertkitError) as e:
            call()
        _one_line(e)


def test_damaged_folders_say_so_in_one_line(tmp_path):
    index = new_index(tmp_path)
    index.add(ids(3), clustered(3))
    (tmp_path / "index" / index.manifest.parts[0][0]).unlink()
    with pytest.raises(BertkitError) as e:
        VectorIndex.open(tmp_path / "index")
    assert "rebuild the index" in _one_line(e)
    (tmp_path / "index" / "manifest.json").write_text("{not json")
    with pytest.raises(BertkitError) as e:
        VectorIndex.open(tmp_path / "index")
    assert "rebuild the index" in _one_line(e)


def test_manifest_json_round_trip():
    manifest = IndexManifest(model="minilm", pooling="mean", normalize=True, dim=384, storage="int8",
                             parts=(("part-000000.parquet", 5),), ann=store.AnnEntry("ann-000001.usearch", 5, 0.01),
                             generation=1, extra={"input": "corpus/"})
    assert IndexManifest.from_json(manifest.to_json()) == manifest


def test_take_rows_reads_each_row_from_its_own_chunk_in_the_order_asked():
    import pyarrow as pa

    from bertkit.index.store import take_rows

    rng = np.random.default_rng(0)
    values = [f"row {i}" if i % 7 else None for i in range(1000)]
    sizes = [0, 1, 300, 0, 199, 500]  # empty chunks too
    starts = np.cumsum([0] + sizes)
    column = pa.chunked_array([pa.array(values[a:b], pa.string()) for a, b in zip(starts[:-1], starts[1:])])
    rows = rng.integers(0, 1000, 200)
    rows[:3] = [999, 0, 999]  # the ends, a repeat
    assert take_rows(column, rows) == [values[r] for r in rows]
    assert take_rows(column, np.zeros(0, np.int64)) == []
