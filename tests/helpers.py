"""Test helpers: checkpoint builders, random id sequences, transformers' padded forward cut back to packed form,
float32 tolerances derived from the arithmetic, and the server run in-process.

Builders live here, not in conftest.py (which holds fixtures only), so test modules import them by name.
"""
from __future__ import annotations

import asyncio
import contextlib
import math
import shutil
from pathlib import Path

import numpy as np
import torch

from bertkit.batching import Batch, pack

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


# -- checkpoint builders ------------------------------------------------------------------------------
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


# -- inputs -------------------------------------------------------------------------------------------
def random_sequences(lengths, seed=0, pair_split=None):
    """[CLS] random ids [SEP] sequences of exactly the given lengths (length 1 is a lone [CLS])."""
    g = torch.Generator().manual_seed(seed)
    ids, types = [], []
    for n in lengths:
        body = torch.randint(1000, 30000, (max(n - 2, 0),), generator=g).tolist()
        seq = ([101] + body + [102])[:n]
        ids.append(seq)
        if pair_split:  # second half is segment B
            cut = n // 2
            types.append([0] * cut + [1] * (n - cut))
        else:
            types.append([0] * n)
    return ids, types


def hf_padded_inputs(ids, types):
    L = max(len(s) for s in ids)
    x = torch.zeros(len(ids), L, dtype=torch.long)
    t = torch.zeros_like(x)
    m = torch.zeros_like(x)
    for i, (s, ty) in enumerate(zip(ids, types)):
        x[i, : len(s)] = torch.tensor(s)
        t[i, : len(s)] = torch.tensor(ty)
        m[i, : len(s)] = 1
    return dict(input_ids=x, token_type_ids=t, attention_mask=m)


def unpad(padded: torch.Tensor, ids) -> torch.Tensor:
    return torch.cat([padded[i, : len(s)] for i, s in enumerate(ids)])


def packed(ids, types) -> Batch:
    return pack(ids, types)


# -- float32 tolerances ---------------------------------------------------------------------------------
EPS32 = float(torch.finfo(torch.float32).eps)  # 2**-23 ~ 1.19e-7: one float32 ulp at 1.0
# The longest reduction in a forward pass: MiniLM's FFN width (1536; attention spans at most 512 positions), and
# for the tiny test checkpoints (FFN width 128) attention over up to 512 positions.
MINILM_TERMS = 1536
TINY_TERMS = 512


def fp32_tol(scale: float, terms: int, depth: int = 1) -> float:
    """How far two float32 evaluations of one formula can drift apart when only their order of summation differs.

    Rounding model: one float32 reduction over `terms` terms is off by about sqrt(terms) ulps of the largest
    magnitude it handles, `scale` (round-off errors add like a random walk); `depth` reductions in a row add up
    linearly (post-LN layers re-normalise, so errors add rather than multiply: measured on MiniLM, each layer adds
    about 1.5 ulps of the largest hidden value, against the sqrt(1536) ~ 39 allowed here). A wrong weight, a missing
    LayerNorm or a mask leak moves values by 1e-2 of their scale or more, far beyond this.
    """
    return depth * math.sqrt(terms) * EPS32 * float(scale)


def _as_float64(x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double()
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def assert_fp32_close(got, want, *, terms: int, depth: int = 1, scale: float | None = None, what: str = "") -> None:
    """max |got - want| <= fp32_tol(scale, terms, depth); scale defaults to max |want|."""
    got, want = _as_float64(got), _as_float64(want)
    assert got.shape == want.shape, f"{what} shapes differ: {tuple(got.shape)} vs {tuple(want.shape)}"
    if scale is None:
        scale = float(want.abs().max()) if want.numel() else 0.0
    tol = fp32_tol(scale, terms, depth)
    diff = float((got - want).abs().max()) if want.numel() else 0.0
    assert diff <= tol, (f"{what} max |diff| {diff:.3g} > tolerance {tol:.3g} "
                         f"= {depth} x sqrt({terms}) x eps32 x {scale:.3g}")


# -- the server, in-process ---------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def serving(model, **settings):
    """The app with its lifespan running (start-up warm-up unless `warmup=False`, shutdown drain) and an httpx
    client talking to it in-process (`client.app` is the app)."""
    import httpx

    from bertkit.serve import Settings, create_app

    app = create_app(model, Settings(**settings))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bertkit",
                                     timeout=60) as client:
            client.app = app
            yield client


def serve_and(model, fn, **settings):
    """Start the app, await `fn(client)`, stop the app; returns what `fn` returned."""
    async def go():
        async with serving(model, **settings) as client:
            return await fn(client)

    return asyncio.run(go())


# -- CLI answers ----------------------------------------------------------------------------------------
def without_precision(payload):
    """A CLI --json answer less the `precision` key the CLI adds (the server says it in a header instead)."""
    if isinstance(payload, dict):
        return {k: v for k, v in payload.items() if k != "precision"}
    if isinstance(payload, list):
        return [without_precision(row) if isinstance(row, dict) else row for row in payload]
    return payload
