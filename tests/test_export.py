"""ONNX export: ONNX Runtime's outputs equal bertkit's within float32 arithmetic (an embedding model and a fine-tuned
classifier, real texts, pairs and long inputs), the folder layout others read, --int8's stated agreement, refusals."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
import onnx  # noqa: E402

from helpers import MINILM_TERMS, TINY_TERMS, assert_fp32_close, tiny_config  # noqa: E402

from bertkit.errors import BertkitError  # noqa: E402
from bertkit.export.onnx import INT8_FILE, ONNX_FILE, padded_inputs, session  # noqa: E402

MINILM_LAYERS = 6


@pytest.fixture(scope="module")
def inputs(rt_texts):
    """Real snippets, three of them joined past MiniLM's 512 positions, and pairs."""
    texts = rt_texts[:30] + [" ".join(rt_texts[i:i + 40]) for i in (100, 200)]
    pairs = (rt_texts[400:406], rt_texts[500:506])
    return texts, pairs


@pytest.fixture(scope="module")
def minilm_export(minilm, tmp_path_factory):
    folder = tmp_path_factory.mktemp("minilm_onnx")
    return folder, minilm.export_onnx(folder, int8=True)


@pytest.fixture(scope="module")
def classifier_export(tiny_cls, tmp_path_factory):
    """A small classifier: the graph's arithmetic is the same whatever the weights learned, and a two-layer model
    traces in half MiniLM's time (bench_cpu.py --classifier checks a fine-tuned MiniLM's labels through ONNX)."""
    folder = tmp_path_factory.mktemp("classifier_onnx")
    return tiny_cls, folder, tiny_cls.export_onnx(folder)


def run(folder, file, encodings, batch=8):
    """The graph's outputs for `encodings`, fed in input order, `batch` at a time (a long text pads only its own)."""
    sess = session(folder / file)
    parts = [sess.run(None, padded_inputs(encodings[s:s + batch])) for s in range(0, len(encodings), batch)]
    states = [row[:len(e.ids)] for part, start in zip(parts, range(0, len(encodings), batch))
              for row, e in zip(part[0], encodings[start:start + batch])]
    return states, np.concatenate([part[1] for part in parts])


def test_states_and_sentence_vectors_equal_bertkit(minilm, minilm_export, inputs):
    folder, _ = minilm_export
    texts, (firsts, seconds) = inputs
    for encodings, ours in ((minilm.tokenize(texts), minilm.hidden_states(texts)),
                            (minilm.tokenize(firsts, seconds), minilm.hidden_states(firsts, pairs=seconds))):
        states, _ = run(folder, ONNX_FILE, encodings)
        for i, (e, want) in enumerate(zip(encodings, ours)):
            assert_fp32_close(states[i], want, terms=MINILM_TERMS, depth=MINILM_LAYERS + 1,
                              what=f"sequence {i} ({len(e.ids)} tokens)")
    from bertkit.tasks.embed import embed_max_length

    _, vectors = run(folder, ONNX_FILE, minilm.tokenize(texts, max_length=embed_max_length(minilm)))
    assert_fp32_close(vectors, minilm.embed(texts), terms=MINILM_TERMS, depth=MINILM_LAYERS + 2, what="embed")


def test_classifier_logits_and_labels_equal_bertkit(classifier_export, inputs):
    model, folder, report = classifier_export
    texts, (firsts, seconds) = inputs
    for encodings in (model.tokenize(texts), model.tokenize(firsts, seconds)):
        states, logits = run(folder, ONNX_FILE, encodings)
        want = np.stack(model.run(encodings, lambda b: list(model.network.classify(b).float().cpu())))
        assert_fp32_close(logits, want, terms=TINY_TERMS, depth=tiny_config().num_hidden_layers + 3, what="logits")
    labels = [p["label"] for p in model.predict(texts)]
    assert [model.labels[i] for i in run(folder, ONNX_FILE, model.tokenize(texts))[1].argmax(1)] == labels
    assert report["outputs"] == ["last_hidden_state", "logits"] and report["check"]["label_agreement"] == 1.0


def test_the_folder_has_the_layout_onnx_readers_expect(minilm_export):
    folder, report = minilm_export
    for name in ("config.json", "tokenizer.json", "vocab.txt", "modules.json", "1_Pooling/config.json", ONNX_FILE):
        assert (folder / name).is_file(), name
    graph = onnx.load(str(folder / ONNX_FILE)).graph
    assert [i.name for i in graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in graph.output] == ["last_hidden_state", "sentence_embedding"]
    for tensor in graph.input:  # batch and length are symbols, not the traced example's sizes
        assert all(d.dim_param and not d.dim_value for d in tensor.type.tensor_type.shape.dim), tensor.name
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["BertModel"]
    assert report["check"]["passes_gate"] and report["check"]["min_cosine"] > 0.99999


def test_int8_graph_states_its_measured_agreement(minilm_export):
    from bertkit.cli.export import describe

    folder, report = minilm_export
    check = report["check_int8"]
    assert (folder / INT8_FILE).is_file() and report["onnx_int8"].endswith(INT8_FILE)
    assert 0.5 < check["min_cosine"] < 1.0 and check["passes_gate"] == (check["min_cosine"] >= 0.99)
    said = describe(check)
    assert f"{check['min_cosine']:.4f}" in said and ("BELOW the quality gate" in said) != check["passes_gate"]


def test_a_masked_lm_head_is_refused_in_one_line(tiny_mlm, tmp_path):
    with pytest.raises(BertkitError, match="masked-LM head, which the ONNX export does not cover") as caught:
        tiny_mlm.export_onnx(tmp_path)
    assert "\n" not in str(caught.value)


def test_without_onnx_the_command_says_how_to_install_it(monkeypatch, capsys, tmp_path):
    from bertkit.cli import main

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what a missing package looks like to import
    assert main(["export", "onnx", "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "onnxruntime is missing" in err and "pip install 'bertkit[export]'" in err


def test_sentence_transformers_onnx_backend_reads_the_export(minilm, minilm_export):
    pytest.importorskip("optimum.onnxruntime")  # its ONNX backend needs optimum (absent, or not for this transformers)
    from sentence_transformers import SentenceTransformer

    folder, _ = minilm_export
    texts = ["A sentence to embed.", "Another, somewhat longer sentence about the weather."]
    st = SentenceTransformer(str(folder), backend="onnx", device="cpu")
    assert_fp32_close(st.encode(texts), minilm.embed(texts), terms=MINILM_TERMS, depth=MINILM_LAYERS + 2)
