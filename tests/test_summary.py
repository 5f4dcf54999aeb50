"""model.summary(): every parameter in its named part, adding up to the parameter count (bert-base: the known 110M)."""
from __future__ import annotations

import json

import pytest
import torch

from bertkit.architecture import summarize
from bertkit.cli import main
from bertkit.config import BertConfig
from bertkit.modeling import BertNetwork

BERT_BASE = BertConfig()  # bert-base-uncased's config.json: 12 layers, hidden 768, 12 heads, FFN 3072, 30522 words


def network(config: BertConfig, **heads) -> BertNetwork:
    with torch.device("meta"):  # shapes only: 110M parameters without allocating them
        return BertNetwork(config, **heads)


def reference(kind: str) -> int:
    import transformers

    with torch.device("meta"):
        model = getattr(transformers, kind)(transformers.BertConfig())
    return model.num_parameters()


def test_bert_base_has_its_well_known_110m_parameters():
    net = network(BERT_BASE, pooler=True)
    summary = summarize(net)
    assert summary.total == sum(p.numel() for p in net.parameters()) == 109_482_240 == reference("BertModel")
    assert summary.count("") == summary.total and not [p for p in summary.parts if p.name == "other"]
    assert summary.count("embeddings") == 23_837_184 and summary.count("pooler") == 590_592
    assert [summary.count(f"layers.{i}") for i in range(12)] == [7_087_872] * 12
    assert summary.count("layers.0.attention") == 4 * 590_592 + 1536 and summary.count("layers.0.feed_forward") == 4_723_968
    assert (summary.hidden_size, summary.layers, summary.heads, summary.head_size, summary.ffn_size, summary.vocab_size,
            summary.max_positions) == (768, 12, 12, 64, 3072, 30522, 512)
    # One head: its 64 query, key and value columns (and biases), and its 64 input columns of the output projection.
    assert summary.head == {"query": 768 * 64 + 64, "key": 768 * 64 + 64, "value": 768 * 64 + 64, "output": 64 * 768}
    assert 12 * summary.head["query"] == next(p.parameters for p in summary.parts if p.name == "layers.5.attention.query")


def test_the_tied_decoder_is_counted_once_and_said_to_be_tied():
    net = network(BertConfig(id2label={0: "no", 1: "yes"}), pooler=False, mlm_head=True, classifier=True)
    summary = summarize(net)
    assert summary.total == sum(p.numel() for p in net.parameters()) == summary.count("")
    decoder = next(p for p in summary.parts if p.name == "mlm_head.decoder")
    assert decoder.parameters == 30522 and "tied" in decoder.note and "embeddings.word" in decoder.note
    assert summary.count("mlm_head") == 590_592 + 1536 + 30522  # transform, norm, decoder bias: no second matrix
    mlm_only = summarize(network(BERT_BASE, pooler=False, mlm_head=True))
    assert mlm_only.total == reference("BertForMaskedLM") == 109_514_298  # transformers counts the tied matrix once too
    assert summary.count("classifier") == 768 * 2 + 2


def test_the_bundled_model_and_its_table(minilm):
    summary = minilm.summary()
    assert summary.total == minilm.num_parameters() == summary.count("") == 22_713_216
    text = str(summary)
    assert "6 layers, hidden size 384, 12 heads of size 32, feed-forward size 1536" in text
    assert "layers 0-5 (6 x 1,774,464)" in text and text.splitlines()[-1].split() == ["total", "22,713,216"]
    assert json.loads(json.dumps(summary.to_dict()))["total"] == 22_713_216


def test_info_layers_prints_the_table_and_json(minilm_dir, capsys):
    assert main(["info", str(minilm_dir), "--layers", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["total"] == data["parameters"] == 22_713_216
    assert sum(p["parameters"] for p in data["summary"]["parts"]) == data["parameters"]
    assert main(["info", str(minilm_dir), "--layers"]) == 0
    out = capsys.readouterr().out
    assert "attention query" in out and "feed forward up" in out and "22,713,216" in out
    assert main(["info", str(minilm_dir)]) == 0
    assert "attention query" not in capsys.readouterr().out


@pytest.mark.parametrize("fixture", ["tiny_mlm", "tiny_cls"])
def test_every_checkpoint_kind_adds_up(request, fixture):
    model = request.getfixturevalue(fixture)
    summary = model.summary()
    assert summary.count("") == summary.total == model.num_parameters()
    assert not [p for p in summary.parts if p.name == "other"]
