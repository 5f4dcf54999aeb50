"""Corpus mode never loses or misreports data: one run writes an output at a time, only into a folder of its own,
and a re-run re-does what changed in the input (and says so) instead of reporting stale parts as done."""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

import bertkit
from bertkit import corpus
from helpers import PausedCommand, cli, model_args, one_line_error, snapshot

WORDS = ["good", "bad", "movie", "plot", "acting", "great", "boring", "fun"]


def write_texts(path, n: int, seed: int = 0, suffix: str = "") -> list[str]:
    rng = np.random.default_rng(seed)
    lines = [" ".join(rng.choice(WORDS, size=rng.integers(2, 12))) + suffix for _ in range(n)]
    path.write_text("".join(line + "\n" for line in lines))
    return lines


@pytest.fixture
def folder(tmp_path):
    source = tmp_path / "corpus"
    source.mkdir()
    for k in range(3):
        write_texts(source / f"f{k}.txt", 12, seed=k)
    return source


def embed(capsys, tiny_base_dir, source, out, *extra):
    code, stdout, err = cli(capsys, "embed", "--input", source, "--output", out, "--shard-rows", "5", "--json",
                            *extra, *model_args(tiny_base_dir))
    assert code == 0, err
    return json.loads(stdout)


def vectors_of(out, name: str) -> np.ndarray:
    frame = corpus.read_results(out)
    return np.stack(frame[frame["source"].map(os.path.basename) == name]["embedding"])


def test_an_edited_input_file_is_embedded_again_and_said(folder, tmp_path, tiny_base_dir, capsys):
    out = tmp_path / "out"
    first = embed(capsys, tiny_base_dir, folder, out)
    assert first["shards_written"] == 9
    new = write_texts(folder / "f1.txt", 12, seed=1, suffix=" but edited")  # every text of one file, same row count
    again = embed(capsys, tiny_base_dir, folder, out)
    model = bertkit.load(tiny_base_dir, device="cpu")
    np.testing.assert_allclose(vectors_of(out, "f1.txt"), model.embed(new), atol=1e-5)
    assert again["shards_redone"] == 3 and again["shards_written"] == 3 and again["shards_skipped"] == 6
    assert embed(capsys, tiny_base_dir, folder, out)["shards_skipped"] == 9  # nothing changed since


def test_an_edit_that_keeps_the_size_and_the_time_is_seen(folder, tmp_path, tiny_base_dir, capsys):
    out = tmp_path / "out"
    embed(capsys, tiny_base_dir, folder, out)
    path = folder / "f2.txt"
    stat = path.stat()
    text = path.read_text()
    path.write_text(text.replace("good", "fine") if "good" in text else text.replace("bad", "odd"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size
    report = embed(capsys, tiny_base_dir, folder, out)
    model = bertkit.load(tiny_base_dir, device="cpu")
    np.testing.assert_allclose(vectors_of(out, "f2.txt"), model.embed(path.read_text().splitlines()), atol=1e-5)
    assert report["shards_redone"] >= 1


def test_a_file_that_shrinks_or_grows_leaves_no_stale_rows(folder, tmp_path, tiny_base_dir, capsys):
    out = tmp_path / "out"
    embed(capsys, tiny_base_dir, folder, out)
    write_texts(folder / "f0.txt", 3, seed=7)  # 3 shards of 5 rows become 1
    report = embed(capsys, tiny_base_dir, folder, out)
    frame = corpus.read_results(out)
    assert (frame["source"].map(os.path.basename) == "f0.txt").sum() == 3 and len(frame) == 27
    assert report["shards_removed"] == 2
    write_texts(folder / "f0.txt", 20, seed=8)
    embed(capsys, tiny_base_dir, folder, out)
    frame = corpus.read_results(out)
    rows = frame[frame["source"].map(os.path.basename) == "f0.txt"]["row_id"].tolist()
    assert rows == list(range(20)) and len(frame) == 44


def test_a_second_run_on_the_same_output_is_refused_naming_the_first(folder, tmp_path, tiny_base_dir, capsys):
    out = tmp_path / "out"
    with PausedCommand("bertkit.corpus:_run_task", "embed", "--input", str(folder), "--output", str(out),
                       "--shard-rows", "5", *model_args(tiny_base_dir)) as first:
        code, _, err = cli(capsys, "embed", "--input", folder, "--output", out, "--shard-rows", "5",
                           *model_args(tiny_base_dir))
        line = one_line_error(err)
        assert code == 2 and "being written by" in line and f"pid {first.process.pid}" in line
        code, _, err = first.resume()
    assert code == 0, err
    report = embed(capsys, tiny_base_dir, folder, out)
    assert report["shards_skipped"] == 9 and len(corpus.read_results(out)) == 36


def test_an_output_that_is_not_ours_or_overlaps_the_input_is_refused(folder, tmp_path, tiny_base_dir, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    pd.DataFrame({"x": [1]}).to_parquet(mine / "part-0000-000000.parquet")
    (mine / ".cache.tmp").write_text("mine")
    before = snapshot(tmp_path)
    for out in (mine, folder, folder / "out"):
        code, _, err = cli(capsys, "embed", "--input", folder, "--output", out, *model_args(tiny_base_dir))
        assert code == 2 and "--output" in one_line_error(err)
    assert snapshot(tmp_path) == before
