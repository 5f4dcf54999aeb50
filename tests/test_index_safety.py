"""`bertkit index build|add` never loses or misreports data: one writer at a time, only its own files touched,
ids checked whole before anything is written, and a manifest that does not describe its index refused in one line."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

import pandas as pd
import pytest

import bertkit
from bertkit.cli import main
from bertkit.index import VectorIndex
from helpers import PausedCommand, cli, model_args, one_line_error, serve_and, snapshot

WORDS = ["river", "bread", "film", "ocean", "market", "garden", "music", "winter", "engine", "letter"]


def texts(n: int, start: int = 0) -> list[str]:
    return [f"{WORDS[i % 10]} and {WORDS[(i * 7 + 3) % 10]} number {i}" for i in range(start, start + n)]


def write_csv(path, n: int, start: int = 0, prefix: str = "r", ids: list | None = None):
    ids = [f"{prefix}{i}" for i in range(start, start + n)] if ids is None else ids
    pd.DataFrame({"id": ids, "text": texts(len(ids), start)}).to_csv(path, index=False)
    return path


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture(scope="module")
def base_index(tmp_path_factory, tiny_base_dir):
    """A small index of 40 rows (ids r0..r39), built once; tests copy it."""
    folder = tmp_path_factory.mktemp("base")
    source = write_csv(folder / "a.csv", 40)
    assert main(["index", "build", "-i", str(source), "-o", str(folder / "index"), "--shard-rows", "10",
                 *model_args(tiny_base_dir)]) == 0
    return folder / "index"


@pytest.fixture
def index_copy(base_index, tmp_path):
    shutil.copytree(base_index, tmp_path / "index")
    return tmp_path / "index"


# -- one writer at a time ---------------------------------------------------------------------------------
def test_a_second_writer_is_refused_naming_the_first_while_readers_read(index_copy, tmp_path, tiny_base_dir, capsys):
    b = write_csv(tmp_path / "b.csv", 30, prefix="b")
    c = write_csv(tmp_path / "c.csv", 20, prefix="c")
    with PausedCommand("bertkit.index.vector_index:VectorIndex.add", "index", "add", "-i", b, "-o", index_copy,
                       "--shard-rows", "10", *model_args(tiny_base_dir)) as first:
        code, _, err = cli(capsys, "index", "add", "-i", c, "-o", index_copy, *model_args(tiny_base_dir))
        line = one_line_error(err)
        assert code == 2 and "being written by" in line and f"pid {first.process.pid} on {socket.gethostname()}" in line
        assert len(VectorIndex.open(index_copy)) == 40  # a reader needs no lock, and sees the last complete write
        code, _, err = first.resume()
    assert code == 0, err
    assert cli(capsys, "index", "add", "-i", c, "-o", index_copy, *model_args(tiny_base_dir))[0] == 0
    index = VectorIndex.open(index_copy)
    assert len(index) == 90 and all(f"{p}{i}" in index for p, n in (("r", 40), ("b", 30), ("c", 20)) for i in range(n))
    assert not (index_copy / ".bertkit-lock").exists()


def test_a_lock_left_by_a_killed_writer_is_taken_over_and_its_files_removed(index_copy, tmp_path, tiny_base_dir,
                                                                            capsys):
    dead = dead_pid()
    (index_copy / ".bertkit-lock").write_text(json.dumps({
        "pid": dead, "host": socket.gethostname(), "started": "2025-01-01T00:00:00+0000",
        "command": "bertkit index add", "writing": ["part-000042.parquet"]}))
    (index_copy / "part-000042.parquet").write_bytes(b"half a part the killed writer left")
    (index_copy / "part-000043.parquet").write_bytes(b"a file nobody said it wrote")
    code, _, err = cli(capsys, "index", "add", "-i", write_csv(tmp_path / "b.csv", 5, prefix="b"), "-o", index_copy,
                       *model_args(tiny_base_dir))
    assert code == 0, err
    assert "took over the lock" in err and f"pid {dead}" in err
    assert not (index_copy / "part-000042.parquet").exists() and (index_copy / "part-000043.parquet").exists()
    assert not (index_copy / ".bertkit-lock").exists() and len(VectorIndex.open(index_copy)) == 45


def test_a_lock_file_naming_a_live_process_is_honoured_however_it_was_taken(index_copy, tmp_path, tiny_base_dir,
                                                                             capsys):
    holder = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:  # a lock taken O_CREAT|O_EXCL-style, by a process that is alive: no flock on it
        fd = os.open(index_copy / ".bertkit-lock", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.write(fd, json.dumps({"pid": holder.pid, "host": socket.gethostname(), "started": "now"}).encode())
        os.close(fd)
        code, _, err = cli(capsys, "index", "add", "-i", write_csv(tmp_path / "b.csv", 5, prefix="b"), "-o",
                           index_copy, *model_args(tiny_base_dir))
        assert code == 2 and f"pid {holder.pid}" in one_line_error(err)
        assert len(VectorIndex.open(index_copy)) == 40
    finally:
        holder.kill()
        holder.wait()
    code, _, err = cli(capsys, "index", "add", "-i", tmp_path / "b.csv", "-o", index_copy, *model_args(tiny_base_dir))
    assert code == 0 and "took over the lock" in err and len(VectorIndex.open(index_copy)) == 45


def test_two_adds_at_once_lose_nothing_or_are_refused(index_copy, tmp_path, tiny_base_dir):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1")
    sources = {"b": (write_csv(tmp_path / "b.csv", 35, prefix="b"), "7"),
               "c": (write_csv(tmp_path / "c.csv", 33, prefix="c"), "11")}
    runs = {k: subprocess.Popen([sys.executable, "-m", "bertkit", "index", "add", "-i", str(path), "-o", str(index_copy),
                                 "--shard-rows", rows, *model_args(tiny_base_dir)], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for k, (path, rows) in sources.items()}
    done = {k: (p.wait(timeout=300), p.stderr.read()) for k, p in runs.items()}
    index = VectorIndex.open(index_copy)  # readable, whatever happened
    assert any(code == 0 for code, _ in done.values())
    for prefix, (code, err) in done.items():
        if code == 0:
            n = 35 if prefix == "b" else 33
            assert all(f"{prefix}{i}" in index for i in range(n)), f"rows of the {prefix} add were lost"
        else:
            assert code == 2 and "being written by" in one_line_error(err)
    assert all(f"r{i}" in index for i in range(40))


# -- never delete what we did not write ---------------------------------------------------------------------
def test_a_folder_that_is_not_an_index_is_refused_and_left_alone(tmp_path, tiny_base_dir, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in ("part-000000.parquet", ".draft.tmp", ".part-000001.parquet.abc.tmp", "notes.txt"):
        (mine / name).write_bytes(f"my own {name}".encode())
    before = snapshot(mine)
    source = write_csv(tmp_path / "a.csv", 5)
    for verb in ("build", "add"):
        code, _, err = cli(capsys, "index", verb, "-i", source, "-o", mine, *model_args(tiny_base_dir))
        assert code == 2 and "--output" in one_line_error(err)
        assert snapshot(mine) == before
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli(capsys, "index", "build", "-i", source, "-o", empty, *model_args(tiny_base_dir))[0] == 0


@pytest.mark.parametrize("output", [".", "index", "deeper/index"])
def test_an_output_inside_the_input_or_holding_it_is_refused(tmp_path, tiny_base_dir, capsys, output):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_csv(corpus / "a.csv", 5)
    before = snapshot(tmp_path)
    code, _, err = cli(capsys, "index", "build", "-i", corpus, "-o", corpus / output, *model_args(tiny_base_dir))
    assert code == 2 and "input" in one_line_error(err)
    code, _, err = cli(capsys, "index", "build", "-i", corpus / "a.csv", "-o", tmp_path, *model_args(tiny_base_dir))
    assert code == 2 and "input" in one_line_error(err)  # the output would hold the input file
    assert snapshot(tmp_path) == before


def test_files_an_index_never_wrote_survive_its_writes(index_copy, tmp_path, tiny_base_dir, capsys):
    strangers = {"part-000099.parquet": b"looks like a part", "ann-000099.usearch": b"looks like a graph",
                 ".notes.tmp": b"a temporary file of someone else's", "README": b"about this index"}
    for name, data in strangers.items():
        (index_copy / name).write_bytes(data)
    changed = write_csv(tmp_path / "a.csv", 40, ids=[f"r{i}" for i in range(40)])
    pd.DataFrame({"id": [f"r{i}" for i in range(40)], "text": [t + " again" for t in texts(40)]}).to_csv(changed,
                                                                                                       index=False)
    assert cli(capsys, "index", "add", "-i", changed, "-o", index_copy, *model_args(tiny_base_dir))[0] == 0
    VectorIndex.open(index_copy).compact()
    assert {name: (index_copy / name).read_bytes() for name in strangers} == strangers


# -- ids ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shard_rows", [1, 3, 10_000])
def test_a_duplicate_id_is_found_before_anything_is_written_whatever_the_shard_size(tmp_path, tiny_base_dir, capsys,
                                                                                     shard_rows):
    source = write_csv(tmp_path / "x.csv", 6, ids=["a", "b", "c", "d", "b", "e"])
    out = tmp_path / "index"
    code, _, err = cli(capsys, "index", "build", "-i", source, "-o", out, "--shard-rows", shard_rows,
                       *model_args(tiny_base_dir))
    line = one_line_error(err)
    assert code == 2 and "'b'" in line and "x.csv:1" in line and "x.csv:4" in line
    assert not (out / "manifest.json").exists()


def test_a_duplicate_id_across_two_files_names_both(tmp_path, tiny_base_dir, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_csv(corpus / "one.csv", 4, prefix="k")
    write_csv(corpus / "two.csv", 3, ids=["m0", "k2", "m1"])
    code, _, err = cli(capsys, "index", "build", "-i", corpus, "-o", tmp_path / "index", *model_args(tiny_base_dir))
    line = one_line_error(err)
    assert code == 2 and "'k2'" in line and "one.csv:2" in line and "two.csv:1" in line
    assert not (tmp_path / "index" / "manifest.json").exists()


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_a_missing_id_is_an_invalid_row_never_an_empty_id(tmp_path, tiny_base_dir, capsys, suffix):
    rows = [{"id": "a", "text": "first"}, {"id": "b", "text": "second"}, {"text": "third, without an id"},
            {"id": "  ", "text": "fourth, with a blank id"}, {"id": "e", "text": "fifth"}]
    source = tmp_path / f"x{suffix}"
    if suffix == ".jsonl":
        source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        frame = pd.DataFrame(rows)
        frame.to_csv(source, index=False) if suffix == ".csv" else frame.to_parquet(source)
    out = tmp_path / "index"
    code, _, err = cli(capsys, "index", "build", "-i", source, "-o", out, *model_args(tiny_base_dir))
    line = one_line_error(err)
    assert code == 2 and f"x{suffix}:2" in line and f"x{suffix}:3" in line and "--drop-invalid" in line
    assert not (out / "manifest.json").exists()
    code, summary, err = cli(capsys, "index", "build", "-i", source, "-o", out, "--drop-invalid",
                             *model_args(tiny_base_dir))
    assert code == 0, err
    assert "2 without an id left out" in summary
    index = VectorIndex.open(out)
    assert len(index) == 3 and all(i in index for i in "abe") and "" not in index and "  " not in index


def test_an_id_column_is_used_without_being_named_and_the_summary_says_so(tmp_path, tiny_base_dir, capsys):
    source = write_csv(tmp_path / "x.csv", 4, prefix="doc-")
    code, summary, err = cli(capsys, "index", "build", "-i", source, "-o", tmp_path / "index", *model_args(tiny_base_dir))
    assert code == 0, err
    assert "ids from column 'id'" in summary
    assert all(f"doc-{i}" in VectorIndex.open(tmp_path / "index") for i in range(4))
    code, summary, _ = cli(capsys, "index", "build", "-i", tmp_path / "x.csv", "-o", tmp_path / "by_row",
                           "--text-column", "text", "--id-column", "text", *model_args(tiny_base_dir))
    assert code == 0 and "ids from column 'text'" in summary
    (tmp_path / "lines.txt").write_text("one line\nanother\n")
    code, summary, _ = cli(capsys, "index", "build", "-i", tmp_path / "lines.txt", "-o", tmp_path / "lines",
                           *model_args(tiny_base_dir))
    assert code == 0 and "ids FILE:ROW" in summary and "lines.txt:1" in VectorIndex.open(tmp_path / "lines")


# -- the manifest describes the index, or is refused --------------------------------------------------------------
def _set(key, value):
    return lambda m: m.update({key: value})


TAMPERING = {
    "pooling changed": (_set("pooling", "cls"), "pooling"),
    "normalisation changed": (_set("normalize", False), "normalize"),
    "fingerprint changed": (lambda m: m["extra"].update(fingerprint="0123456789abcdef"), "fingerprint"),
    "model renamed": (_set("model", "bert-base-uncased"), "model"),
    "dim changed": (_set("dim", 65), "dim"),
    "dim a string": (_set("dim", "64"), "dim"),
    "dim not positive": (_set("dim", 0), "dim"),
    "storage unknown": (_set("storage", "f8"), "storage"),
    "normalize not a bool": (_set("normalize", "yes"), "normalize"),
    "part outside the folder": (lambda m: m["parts"][0].update(file="../other/part-000000.parquet"), "parts"),
    "part by absolute path": (lambda m: m["parts"][0].update(file="/etc/hostname"), "parts"),
    "part rows negative": (lambda m: m["parts"][0].update(rows=-1), "parts"),
    "parts not a list": (_set("parts", "part-000000.parquet"), "parts"),
    "a field missing": (lambda m: m.pop("metric"), "metric"),
    "an unknown field": (_set("colour", "blue"), "colour"),
    "graph outside the folder": (_set("ann", {"file": "../ann-000001.usearch", "rows": 1, "scale": 1.0}), "ann"),
}
NOT_OBJECTS = {"a list": [], "a string": "manifest", "null": None, "a number": 7}


@pytest.mark.parametrize("case", [*TAMPERING, *NOT_OBJECTS])
def test_a_manifest_that_does_not_describe_its_index_is_refused_in_one_line(index_copy, tiny_base_dir, capsys, case):
    path = index_copy / "manifest.json"
    if case in NOT_OBJECTS:
        path.write_text(json.dumps(NOT_OBJECTS[case]))
        said = "manifest"
    else:
        manifest = json.loads(path.read_text())
        change, said = TAMPERING[case]
        change(manifest)
        path.write_text(json.dumps(manifest))
    code, out, err = cli(capsys, "search", index_copy, "river and bread number 1", *model_args(tiny_base_dir)[:-1])
    assert code == 2 and said in one_line_error(err) and not out
    code, out, err = cli(capsys, "index", "info", index_copy)
    assert code == 2 and said in one_line_error(err)


def test_a_part_linked_from_outside_the_folder_is_refused(index_copy, tmp_path, tiny_base_dir, capsys):
    part = index_copy / json.loads((index_copy / "manifest.json").read_text())["parts"][0]["file"]
    outside = tmp_path / "elsewhere.parquet"
    shutil.move(part, outside)
    part.symlink_to(outside)
    code, _, err = cli(capsys, "index", "info", index_copy)
    assert code == 2 and "outside the index folder" in one_line_error(err)


def test_the_untouched_index_still_searches(index_copy, tiny_base_dir, capsys):
    code, out, err = cli(capsys, "search", index_copy, texts(1, 5)[0], "--json", *model_args(tiny_base_dir)[:-1])
    assert code == 0, err
    assert json.loads(out)[0]["hits"][0]["id"] == "r5"


def test_search_requests_do_not_hash_the_weights_again(index_copy, tiny_base_dir, monkeypatch):
    model = bertkit.load(tiny_base_dir, device="cpu")
    opened = []
    real_open = open

    def counting_open(file, *args, **kwargs):
        if str(file).endswith((".safetensors", ".bin")):
            opened.append(str(file))
        return real_open(file, *args, **kwargs)

    async def five_searches(client):
        opened.clear()  # what start-up read does not count
        for i in range(5):
            r = await client.post("/v1/search", json={"queries": [texts(1, i)[0]], "top_k": 1})
            assert r.status_code == 200 and r.json()[0]["hits"][0]["id"] == f"r{i}"
        return list(opened)

    monkeypatch.setattr("builtins.open", counting_open)
    assert serve_and(model, five_searches, index=str(index_copy), warmup=False) == []
