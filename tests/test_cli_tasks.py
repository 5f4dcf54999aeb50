"""`bertkit fill-mask`, `embed`, `similarity`, `predict`: JSON equal to the API, files written, one-line errors."""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd

import bertkit
from bertkit.cli import main

RIVER = "He sat down by the bank to enjoy the view of the river."
MONEY = "She went to the bank to deposit some cash."


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_fill_mask_json_and_human(capsys, tiny_mlm_dir):
    code, out, _ = run(capsys, "fill-mask", "Paris is the [MASK] of France.", "a [MASK] b [MASK]",
                       "--model", tiny_mlm_dir, "--top-k", 3, "--json")
    rows = json.loads(out)
    want = bertkit.load(tiny_mlm_dir, device="cpu").fill_mask(["Paris is the [MASK] of France."], top_k=3)[0]
    assert code == 0 and rows[0]["text"] == "Paris is the [MASK] of France." and len(rows[1]["masks"]) == 2
    assert [r["id"] for r in rows[0]["masks"][0]] == [r["id"] for r in want[0]]
    code, out, _ = run(capsys, "fill-mask", "a [MASK] b", "--model", tiny_mlm_dir, "--targets", "cat,dog",
                       "--targets", "aardvark")
    assert code == 0 and out.splitlines()[0] == "a [MASK] b"
    assert {"cat", "dog", "aardvark"} <= set(out.split())


def test_fill_mask_errors_are_one_line(capsys, tiny_mlm_dir):
    code, _, err = run(capsys, "fill-mask", "a [MASK] b", "--model", "minilm")
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "bertkit embed" in err
    code, _, err = run(capsys, "fill-mask", "no mask", "--model", tiny_mlm_dir)
    assert code == 2 and "has no [MASK]" in err


def test_embed_json_equals_the_api(capsys, minilm):
    code, out, _ = run(capsys, "embed", "hello world", "", "--json")
    data = json.loads(out)
    assert code == 0 and data["dim"] == 384 and len(data["embeddings"]) == 2
    assert np.abs(np.array(data["embeddings"]) - minilm.embed(["hello world", ""])).max() < 1e-6
    code, out, _ = run(capsys, "embed", "hello world", "--pooling", "cls", "--no-normalize", "--json")
    assert np.abs(np.array(json.loads(out)["embeddings"]) - minilm.embed(["hello world"], "cls", False)).max() < 1e-6
    code, out, _ = run(capsys, "embed", "hello world")
    assert code == 0 and "1 embeddings of dimension 384" in out and "norm 1.000" in out


def test_embed_reads_a_table_and_writes_npy_parquet_json(capsys, tmp_path, minilm):
    source = tmp_path / "in.csv"
    pd.DataFrame({"id": [1, 2, 3], "sentence": ["one", "two words", "three words here"]}).to_csv(source, index=False)
    want = minilm.embed(["one", "two words", "three words here"])
    code, out, _ = run(capsys, "embed", "--input", source, "--output", tmp_path / "v.npy", "--json")
    assert code == 0 and json.loads(out)["rows"] == 3
    assert np.abs(np.load(tmp_path / "v.npy") - want).max() < 1e-6
    assert run(capsys, "embed", "--input", source, "--output", tmp_path / "v.parquet")[0] == 0
    assert pd.read_parquet(tmp_path / "v.parquet")["text"].tolist()[2] == "three words here"
    lines = tmp_path / "in.txt"
    lines.write_text("one\ntwo words\n")
    assert run(capsys, "embed", "--input", lines, "--output", tmp_path / "v.json")[0] == 0
    assert json.loads((tmp_path / "v.json").read_text())["texts"] == ["one", "two words"]
    code, _, err = run(capsys, "embed", "x", "--output", tmp_path / "v.csv")
    assert code == 2 and ".npy" in err


def test_similarity_prints_the_cosine_and_the_pieces(capsys, minilm):
    code, out, _ = run(capsys, "similarity", "--word", "bank", RIVER, MONEY)
    want = minilm.word_similarity(RIVER, MONEY, "bank").similarity
    assert code == 0 and out.startswith(f"{want:.4f}  cosine similarity of 'bank'")
    assert "[bank] to enjoy" in out and "pieces bank" in out
    code, out, _ = run(capsys, "similarity", "-w", "embeddings", "-w", "vectors", "Word embeddings help.",
                       "Word vectors help.", "--layer", "sum4", "--pooling", "first", "--json")
    data = json.loads(out)
    assert data["a"]["tokens"] == ["em", "##bed", "##ding", "##s"] and data["a"]["layer"] == "sum4"
    assert data["b"]["word"] == "vectors" and data["a"]["pooling"] == "first"


def test_similarity_matrix_and_heatmap(capsys, tmp_path):
    plot = tmp_path / "bank.png"
    code, out, _ = run(capsys, "similarity", "--word", "bank", RIVER, MONEY, "The bank is closed.",
                       "--plot", plot, "--json")
    data = json.loads(out)
    assert code == 0 and len(data["matrix"]) == 3 and data["plot"] == str(plot)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out, _ = run(capsys, "similarity", "--word", "bank", RIVER, MONEY, "The bank is closed.", "--matrix")
    assert code == 0 and "1.000" in out and "[bank]" in out


def test_similarity_errors_are_one_line(capsys):
    code, _, err = run(capsys, "similarity", "--word", "bank", RIVER, "No such word here.")
    assert code == 2 and err.count("\n") == 1 and "'bank' does not occur" in err
    code, _, err = run(capsys, "similarity", "--word", "bank", RIVER, MONEY, RIVER)
    assert code == 2 and "--matrix" in err
    code, _, err = run(capsys, "similarity", "--word", "bank", RIVER, MONEY, "--layer", "top")
    assert code == 2 and "--layer" in err and "'top'" in err and err.count("\n") == 1


def test_predict_texts_json_and_human(capsys, tiny_cls_dir):
    code, out, _ = run(capsys, "predict", "--model", tiny_cls_dir, "great film", "", "--json")
    rows = json.loads(out)
    want = bertkit.load(tiny_cls_dir, device="cpu").predict(["great film"])[0]
    assert code == 0 and rows[0]["text"] == "great film" and rows[0]["label"] == want["label"]
    assert abs(rows[0]["scores"]["neutral"] - want["scores"]["neutral"]) < 1e-9
    assert rows[1]["error"] == "empty text" and rows[1]["label"] is None
    code, out, _ = run(capsys, "predict", "--model", tiny_cls_dir, "great film")
    assert code == 0 and out.startswith(want["label"])


def test_predict_file_to_file_keeps_every_row(capsys, tmp_path, tiny_cls_dir):
    source = tmp_path / "reviews.jsonl"
    source.write_text('{"id": 1, "body": "fine"}\n{"id": 2, "body": ""}\n{"id": 3, "body": null}\n'
                      '{"id": 4, "body": "' + "long " * 600 + '"}\n')
    for suffix in ("csv", "jsonl", "parquet", "json"):
        out_path = tmp_path / f"pred.{suffix}"
        code, out, err = run(capsys, "predict", "--model", tiny_cls_dir, "--input", source, "--text-column", "body",
                             "--output", out_path, "--json")
        summary = json.loads(out)
        assert code == 0 and summary == {**summary, "rows": 4, "errors": 2, "truncated": 1, "output": str(out_path)}
        assert "truncated" in err  # the one-line warning
    back = pd.read_csv(tmp_path / "pred.csv")
    assert back["id"].tolist() == [1, 2, 3, 4] and back["error"].tolist()[1:3] == ["empty text", "missing text"]
    assert back["truncated"].tolist()[3] > 0
    code, _, err = run(capsys, "predict", "--model", tiny_cls_dir, "--input", source)
    assert code == 2 and "--text-column" in err
    code, _, err = run(capsys, "predict", "--model", "minilm", "x")
    assert code == 2 and "bertkit train" in err and err.count("\n") == 1


def test_compile_flag_compiles_and_changes_no_answer(capsys, tiny_cls_dir):
    code, out, _ = run(capsys, "predict", "a fine film", "a dull film", "--model", tiny_cls_dir, "--compile", "--json")
    want = bertkit.load(tiny_cls_dir, device="cpu").predict(["a fine film", "a dull film"])
    rows = json.loads(out)
    assert code == 0 and [r["label"] for r in rows] == [r["label"] for r in want]
    assert all(abs(r["scores"][k] - w["scores"][k]) < 1e-5 for r, w in zip(rows, want) for k in w["scores"])


# -- what a corpus holds cannot steer the terminal ------------------------------------------------------------------
HOSTILE = ["\x1b[31mred\x1b[0m text", "retitle \x1b]0;pwned\x07 window",
           "clipboard \x1b]52;c;ZWNobyBoaQ==\x07 write", "bidi \u202egnp.exe\u202c name", "C1 \x9b2J clear",
           "line\nbreak and \r return and DEL\x7f"]
# What a terminal obeys: C0 controls but the newline and tab that lay lines out, DEL, C1, bidi controls.
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def test_search_escapes_control_characters_in_human_output_and_keeps_json_exact(capsys, tmp_path, tiny_mlm_dir):
    from bertkit.index_build import build_index

    corpus = tmp_path / "corpus.jsonl"
    rows = [{"id": f"id-{i}-{text[:12]}", "text": text, "source": text} for i, text in enumerate(HOSTILE)]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    build_index(bertkit.load(tiny_mlm_dir, device="cpu"), corpus, tmp_path / "index", id_column="id",
                metadata_columns=["source"], progress=False)
    query = "a \x1b[2J query"
    code, out, err = run(capsys, "search", tmp_path / "index", query, "--top-k", len(HOSTILE))
    assert code == 0, err
    assert not RAW.search(out), repr(out)
    assert "\\x1b[31mred" in out and "\\x1b]52;c;" in out and "\\u202e" in out and "\\x9b" in out
    assert "a \\x1b[2J query" in out and "line\\nbreak" in out  # a text keeps to its row of the table
    assert len(out.splitlines()) == 1 + len(HOSTILE)
    code, out, err = run(capsys, "search", tmp_path / "index", query, "--top-k", len(HOSTILE), "--json")
    assert code == 0, err
    assert not RAW.search(out), repr(out)  # JSON escapes them too (\u001b, \u009b, \u202e) ...
    (answer,) = json.loads(out)
    assert answer["query"] == query  # ... and every value is exactly what the index holds
    by_id = {r["id"]: r for r in rows}
    assert len(answer["hits"]) == len(HOSTILE)
    for hit in answer["hits"]:
        assert hit["text"] == by_id[hit["id"]]["text"] and hit["metadata"] == {"source": by_id[hit["id"]]["source"]}


def test_every_printer_and_error_line_escapes_control_characters(capsys, tiny_mlm_dir, tiny_cls_dir):
    for argv in (["embed", *HOSTILE], ["tokenize", *HOSTILE], ["fill-mask", *(t + " [MASK]" for t in HOSTILE)],
                 ["similarity", *(f"the bank {t}" for t in HOSTILE[:3]), "--word", "bank", "--matrix"],
                 ["rerank", *HOSTILE, "--query", "x"], ["predict", *HOSTILE]):
        model = tiny_cls_dir if argv[0] in ("rerank", "predict") else tiny_mlm_dir
        code, out, err = run(capsys, *argv, "--model", model)
        assert code == 0, err
        assert not RAW.search(out), (argv[0], out)
        assert "\\x1b[31mred" in out or argv[0] in ("tokenize", "similarity"), (argv[0], out)
    code, out, err = run(capsys, "similarity", "a \x1b]0;x\x07 bank", "the bank", "--word", "nothere", "--model",
                         tiny_mlm_dir)
    assert code == 2 and not RAW.search(err) and err.count("\n") == 1 and "\\x1b]0;x\\x07" in err
