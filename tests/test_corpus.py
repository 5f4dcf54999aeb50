"""Corpus inference: sharded across processes, every row exactly once, restartable after a crash."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import bertkit
from bertkit import corpus
from bertkit.cli import main
from bertkit.errors import BertkitError

N_ROWS = 230


@pytest.fixture(scope="module")
def parquet_corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    words = ["good", "bad", "movie", "plot", "acting", "great", "boring", "fun"]
    texts = [" ".join(rng.choice(words, size=rng.integers(1, 30))) for _ in range(N_ROWS)]
    texts[7] = None  # a missing text must be flagged, not dropped
    # two files with small row groups, so shards cross row-group boundaries
    pq.write_table(pa.table({"text": texts[:150], "id": list(range(150))}), folder / "a.parquet", row_group_size=40)
    pq.write_table(pa.table({"text": texts[150:], "id": list(range(150, N_ROWS))}), folder / "b.parquet", row_group_size=25)
    return folder, texts


@pytest.fixture(scope="module")
def classifier(tiny_cls_dir):
    return bertkit.load(tiny_cls_dir, device="cpu")


def _rows(out):
    frame = corpus.read_results(out)
    return frame, sorted(zip(frame["source"].map(lambda s: os.path.basename(s)), frame["row_id"]))


def _expected_keys():
    return sorted([("a.parquet", i) for i in range(150)] + [("b.parquet", i) for i in range(N_ROWS - 150)])


def test_two_ranks_cover_every_row_exactly_once(parquet_corpus, classifier, tmp_path):
    folder, texts = parquet_corpus
    stats = [corpus.run_corpus(classifier, "predict", folder, tmp_path, shard_rows=32, rank=r, world_size=2, progress=False)
             for r in (0, 1)]
    assert stats[0]["shards_written"] > 0 and stats[1]["shards_written"] > 0
    frame, keys = _rows(tmp_path)
    assert keys == _expected_keys()
    missing = frame[(frame["source"].str.endswith("a.parquet")) & (frame["row_id"] == 7)].iloc[0]
    assert pd.isna(missing["predicted_label"]) and missing["error"]
    # results equal a plain in-memory predict, row for row
    direct = classifier.predict([t for t in texts[150:]])
    b = frame[frame["source"].str.endswith("b.parquet")].sort_values("row_id")
    assert list(b["predicted_label"]) == [r["label"] for r in direct]


def test_crash_then_rerun_completes_without_duplicates(parquet_corpus, classifier, tmp_path, monkeypatch):
    folder, _ = parquet_corpus
    real = corpus._run_task
    calls = {"n": 0}

    def crash_after_three(*args):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt  # the process dies mid-run
        return real(*args)

    monkeypatch.setattr(corpus, "_run_task", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        corpus.run_corpus(classifier, "predict", folder, tmp_path, shard_rows=20, progress=False)
    monkeypatch.setattr(corpus, "_run_task", real)
    assert len(list(tmp_path.glob("part-*.parquet"))) == 3
    stats = corpus.run_corpus(classifier, "predict", folder, tmp_path, shard_rows=20, progress=False)
    assert stats["shards_skipped"] == 3
    _, keys = _rows(tmp_path)
    assert keys == _expected_keys()


def test_embed_corpus_matches_embed_and_refuses_a_different_run(parquet_corpus, tmp_path, minilm_dir):
    folder, texts = parquet_corpus
    model = bertkit.load("minilm", device="cpu")
    corpus.run_corpus(model, "embed", folder / "b.parquet", tmp_path, shard_rows=50, progress=False)
    frame = corpus.read_results(tmp_path)
    got = np.stack(frame.sort_values("row_id")["embedding"].to_list())
    assert np.allclose(got, model.embed(texts[150:]), atol=1e-5)
    with pytest.raises(BertkitError, match="different run"):
        corpus.run_corpus(model, "embed", folder / "b.parquet", tmp_path, shard_rows=10, progress=False)


def test_text_and_csv_inputs_stream(tmp_path, classifier):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "x.txt").write_text("one\ntwo\n\nfour\n")
    pd.DataFrame({"body": ["a, b", "c"], "id": [1, 2]}).to_csv(tmp_path / "in" / "y.csv", index=False)
    with pytest.raises(BertkitError, match="text_column is needed: .*y.csv has no text column"):
        corpus.run_corpus(classifier, "predict", tmp_path / "in", tmp_path / "out", progress=False)
    corpus.run_corpus(classifier, "predict", tmp_path / "in", tmp_path / "out2", text_column="body", progress=False)
    frame = corpus.read_results(tmp_path / "out2")
    assert len(frame) == 6  # the empty line is kept and flagged, nothing else is
    assert frame["error"].fillna("").tolist() == ["", "", "empty text", "", "", ""]


def test_cli_under_torchrun_covers_every_row_once(parquet_corpus, tiny_cls_dir, tmp_path):
    """The real launcher: `torchrun --nproc_per_node 2 -m bertkit predict --input FOLDER --output FOLDER`."""
    folder, _ = parquet_corpus
    out = tmp_path / "preds"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "bertkit",
           "predict", "--model", str(tiny_cls_dir), "--input", str(folder), "--output", str(out),
           "--shard-rows", "16", "--device", "cpu", "--no-progress", "--json"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    reports = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert sorted(r["rank"] for r in reports) == [0, 1] and {r["world_size"] for r in reports} == {2}
    assert sum(r["shards_written"] for r in reports) == len(list(out.glob("part-*.parquet")))
    _, keys = _rows(out)
    assert keys == _expected_keys()


def test_cli_embed_corpus_keeps_options_and_refuses_to_mix_runs(parquet_corpus, tmp_path, minilm_dir, capsys):
    folder, texts = parquet_corpus
    out = tmp_path / "vectors"
    args = ["embed", "--model", str(minilm_dir), "--input", str(folder / "b.parquet"), "--output", str(out),
            "--pooling", "cls", "--device", "cpu", "--no-progress", "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == N_ROWS - 150 and report["shards_skipped"] == 0
    frame = corpus.read_results(out)
    want = bertkit.load(minilm_dir, device="cpu").embed(texts[150:153], pooling="cls")
    np.testing.assert_allclose(np.stack(frame["embedding"][:3]), want, atol=1e-5)
    assert main(args) == 0 and json.loads(capsys.readouterr().out)["shards_skipped"] == 1  # a re-run skips finished parts
    assert main(args[:-5] + ["mean", "--device", "cpu", "--no-progress", "--json"]) == 2
    assert "different run" in capsys.readouterr().err


def test_cli_corpus_mode_errors_are_one_line(parquet_corpus, tmp_path, capsys):
    folder, _ = parquet_corpus
    assert main(["embed", "some text", "--input", str(folder), "--output", str(tmp_path / "o")]) == 2
    assert "--input" in capsys.readouterr().err
    assert main(["embed", "--input", str(folder)]) == 2
    assert "--output FOLDER" in capsys.readouterr().err
