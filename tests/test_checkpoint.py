"""Checkpoint round trips with transformers, old and odd layouts, corrupted files, name resolution."""
from __future__ import annotations

import json
import pickle
import shutil
import warnings

import pytest
import torch
from helpers import hf_padded_inputs, packed, random_sequences, unpad

from bertkit.checkpoint import load_network, resolve, save_network
from bertkit.errors import BertkitError

TOL = 1e-5


def _ours_hidden(network, ids, types):
    with torch.no_grad():
        return network(packed(ids, types))


@pytest.mark.parametrize("kind", ["base", "mlm", "cls"])
def test_we_save_transformers_loads_identical_outputs(kind, tiny_base_dir, tiny_mlm_dir, tiny_cls_dir, tmp_path):
    import transformers

    source = {"base": tiny_base_dir, "mlm": tiny_mlm_dir, "cls": tiny_cls_dir}[kind]
    ours = load_network(source).eval()
    save_network(ours, tmp_path)
    assert (tmp_path / "model.safetensors").exists() and (tmp_path / "config.json").exists()
    ids, types = random_sequences([4, 33, 1, 100], seed=1, pair_split=True)
    inputs = hf_padded_inputs(ids, types)
    batch = packed(ids, types)
    with torch.no_grad():
        base = transformers.AutoModel.from_pretrained(tmp_path).eval()
        hidden = ours(batch)
        assert (hidden - unpad(base(**inputs).last_hidden_state, ids)).abs().max().item() < TOL
        if kind == "mlm":
            mlm = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path).eval()
            assert (ours.mlm_head(hidden) - unpad(mlm(**inputs).logits, ids)).abs().max().item() < TOL
        if kind == "cls":
            clf = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
            assert (ours.classify(batch) - clf(**inputs).logits).abs().max().item() < TOL
            assert clf.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}


def test_saved_state_holds_every_tensor_transformers_expects(tiny_mlm_dir, tmp_path):
    import transformers
    from safetensors.torch import load_file

    save_network(load_network(tiny_mlm_dir), tmp_path)
    saved = set(load_file(tmp_path / "model.safetensors"))
    ref = transformers.BertForMaskedLM.from_pretrained(tiny_mlm_dir)
    expected = {k for k in ref.state_dict() if "decoder" not in k and "position_ids" not in k}
    assert expected - saved == set()


def test_transformers_bin_with_old_gamma_beta_names_loads(tiny_cls_dir, tmp_path):
    import transformers

    ref = transformers.BertForSequenceClassification.from_pretrained(tiny_cls_dir).eval()
    state = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
             for k, v in ref.state_dict().items()}
    shutil.copy(tiny_cls_dir / "config.json", tmp_path / "config.json")
    torch.save(state, tmp_path / "pytorch_model.bin")
    ours = load_network(tmp_path).eval()
    ids, types = random_sequences([6, 20], seed=2)
    with torch.no_grad():
        assert (ours.classify(packed(ids, types)) - ref(**hf_padded_inputs(ids, types)).logits).abs().max() < TOL


def test_mlm_checkpoint_without_bert_prefix_and_without_pooler(tiny_mlm_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    state = load_file(tiny_mlm_dir / "model.safetensors")
    assert not any(k.startswith("bert.pooler") for k in state)  # BertForMaskedLM has no pooler
    stripped = {k.removeprefix("bert."): v for k, v in state.items()}
    save_file(stripped, tmp_path / "model.safetensors")
    shutil.copy(tiny_mlm_dir / "config.json", tmp_path / "config.json")
    a, b = load_network(tiny_mlm_dir), load_network(tmp_path)
    assert a.heads == b.heads == ["mlm_head"]
    ids, types = random_sequences([10, 3], seed=4)
    assert torch.equal(_ours_hidden(a, ids, types), _ours_hidden(b, ids, types))


def test_sharded_safetensors_checkpoint_loads(tiny_base_dir, tmp_path):
    import transformers

    transformers.BertModel.from_pretrained(tiny_base_dir).save_pretrained(tmp_path, max_shard_size="500KB")
    assert (tmp_path / "model.safetensors.index.json").exists()
    a, b = load_network(tiny_base_dir), load_network(tmp_path)
    ids, types = random_sequences([12], seed=5)
    assert torch.equal(_ours_hidden(a, ids, types), _ours_hidden(b, ids, types))


def test_truncated_safetensors_gives_one_line_error_naming_the_file(tiny_base_dir, tmp_path):
    shutil.copytree(tiny_base_dir, tmp_path / "m")
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(BertkitError) as e:
        load_network(tmp_path / "m")
    message = str(e.value)
    assert "model.safetensors" in message and "\n" not in message and "corrupted or truncated" in message


def test_garbage_bin_gives_one_line_error(tiny_base_dir, tmp_path):
    shutil.copy(tiny_base_dir / "config.json", tmp_path / "config.json")
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(BertkitError, match="pytorch_model.bin"):
        load_network(tmp_path)


class _Exploit:
    def __reduce__(self):
        return (print, ("code ran while loading",))


@pytest.mark.parametrize("protocol", [2, 4])
def test_pickled_code_is_refused_never_run_in_whole_sentences(tiny_base_dir, tmp_path, capsys, protocol):
    shutil.copy(tiny_base_dir / "config.json", tmp_path / "config.json")
    with open(tmp_path / "pytorch_model.bin", "wb") as f:
        pickle.dump({"x": _Exploit()}, f, protocol=protocol)
    with warnings.catch_warnings(record=True) as seen, pytest.raises(BertkitError) as e:
        warnings.simplefilter("always")
        load_network(tmp_path)
    assert not [w for w in seen if "pickle protocol" in str(w.message)]  # torch's note for its own issue tracker
    assert "code ran" not in capsys.readouterr().out
    message = str(e.value)
    # torch's own refusal explains how to load the file unsafely, and cut at a length it ended mid-word.
    assert "\n" not in message and "weights_only" not in message and "PyTorch 2.6" not in message
    assert "pickled Python objects" in message and message.endswith("or re-download it")


def test_weights_the_config_leaves_unused_are_an_error_like_missing_ones(tiny_base_dir, tmp_path):
    """A config claiming fewer layers than the weights hold loaded silently, dropping whole layers."""
    shutil.copytree(tiny_base_dir, tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps(config | {"num_hidden_layers": 1}))
    with pytest.raises(BertkitError, match="says 1 layer but the weights hold 2; fix num_hidden_layers"):
        load_network(tmp_path / "m")


def test_tensors_of_other_heads_are_ignored_with_a_warning_not_refused(tiny_base_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    state = load_file(tiny_base_dir / "model.safetensors")
    shutil.copy(tiny_base_dir / "config.json", tmp_path / "config.json")
    state |= {"cls.seq_relationship.weight": torch.zeros(2, 64), "some_other_head.weight": torch.zeros(3)}
    save_file(state, tmp_path / "model.safetensors")
    with pytest.warns(UserWarning, match="ignored 1 tensors bertkit does not use .first: some_other_head.weight"):
        network = load_network(tmp_path)
    assert network.heads == load_network(tiny_base_dir).heads


def test_missing_tensor_and_shape_mismatch_are_clear(tiny_base_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    state = load_file(tiny_base_dir / "model.safetensors")
    shutil.copy(tiny_base_dir / "config.json", tmp_path / "config.json")
    save_file({k: v for k, v in state.items() if "layer.1.output.dense" not in k}, tmp_path / "model.safetensors")
    with pytest.raises(BertkitError, match="lacks 2 tensors"):
        load_network(tmp_path)
    state["embeddings.word_embeddings.weight"] = state["embeddings.word_embeddings.weight"][:100]
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(BertkitError, match="shape"):
        load_network(tmp_path)


def test_resolve_alias_folder_and_offline_hub_id(minilm_dir, tmp_path):
    assert resolve("minilm") == minilm_dir
    assert resolve(str(minilm_dir)) == minilm_dir
    with pytest.raises(BertkitError, match="no config.json"):
        resolve(str(tmp_path))
    with pytest.raises(BertkitError, match="no such folder"):
        resolve("./does/not/exist")
    with pytest.raises(BertkitError) as e:  # HF_HUB_OFFLINE=1 (conftest): fails at once, says what to do
        resolve("google-bert/bert-base-uncased")
    assert "local directory" in str(e.value) and "\n" not in str(e.value)
