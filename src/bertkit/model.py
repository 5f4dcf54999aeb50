"""Model: one loaded BERT (tokenizer + network + device) and the machinery every task runs on.

The task methods (`tokenize`, `embed`, `fill_mask`, `similarity`, `predict`, ...) are not written
here: each task is declared once in `bertkit.tasks`, and registering it gives `Model` its method
with the declared signature (see `bertkit.tasks.registry`).
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence, TypeVar

import torch

from bertkit.batching import Batch, group_by_budget, pack
from bertkit.checkpoint import load_network, resolve, save_network
from bertkit.config import BertConfig
from bertkit import precision as precision_module
from bertkit.device import pick_device
from bertkit.errors import BertkitError, OptionError
from bertkit.inputs import warn_truncated
from bertkit.modeling import BertNetwork
from bertkit.tokenizer import Encoding, Tokenizer

if TYPE_CHECKING:
    from bertkit.architecture import Summary

R = TypeVar("R")
# CPU: small batches stay in cache; 2048 measured ~10% faster than 8192 on MiniLM (benchmarks/bench_embed.py).
DEFAULT_BATCH_TOKENS = {"cuda": 65536, "mps": 16384, "cpu": 2048}


class Model:
    """A BERT checkpoint ready to use: `hidden_states`, and the tasks built on it."""

    def __init__(
        self,
        network: BertNetwork,
        tokenizer: Tokenizer,
        device: str | torch.device | None = None,
        source: str = "",
        folder: Path | None = None,
        precision: str | None = None,
    ):
        self.device = pick_device(device)
        # What every forward pass runs at (bertkit.precision): asked for, or the device's default.
        self.precision = precision_module.resolve(precision, self.device)
        self.network = network.to(self.device).eval()
        self.tokenizer = tokenizer
        self.source = source
        self.folder = folder
        self.sentence_config = read_sentence_config(folder) if folder else {}
        if precision is not None:  # asked for: bf16 weights or int8 layers (the device default keeps fp32 weights)
            precision_module.apply(self, self.precision)

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def load(cls, name_or_path: str | os.PathLike, device: str | torch.device | None = None,
             precision: str | None = None) -> "Model":
        folder = resolve(name_or_path)
        device = pick_device(device)  # fail on a missing device or precision before reading any weights
        precision_module.resolve(precision, device)
        network = load_network(folder)
        return cls(network, Tokenizer.from_dir(folder), device, source=str(name_or_path), folder=folder,
                   precision=precision)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write an HF-layout folder (config, safetensors, tokenizer files) that transformers can load."""
        folder = save_network(self.network, directory)
        self.tokenizer.save(folder)
        return folder

    def export_onnx(self, directory: str | os.PathLike, int8: bool = False) -> dict:
        """Write this model as ONNX (`DIR/onnx/model.onnx` beside its config and tokenizer, the layout ONNX Runtime,
        optimum and sentence-transformers read), checked against this model; `int8` adds ONNX Runtime's quantized
        graph and its measured agreement. Needs the `export` extra. Returns what was written and the checks."""
        from bertkit.export import export_onnx

        return export_onnx(self, directory, int8=int8)

    def compile(self) -> "Model":
        """Compile the encoder's dense blocks with torch.compile (shape-generic, so any batch runs), in place.

        Worth it on CUDA for long runs (a server, a corpus): on an H200 the compiled network ran
        BERT-base inference 20% faster than eager (benchmarks/NOTES.md); the first batches wait for
        the compiler. On the CPU it measured no gain. Numbers equal eager's within float rounding;
        training and saving work as before. Returns the model.
        """
        from bertkit.accel import compile_network

        compile_network(self.network, dynamic=True)
        return self

    @property
    def compiled(self) -> bool:
        from bertkit.accel import is_compiled

        return is_compiled(self.network)

    # -- facts ----------------------------------------------------------------------------------
    @property
    def config(self) -> BertConfig:
        return self.network.config

    @property
    def labels(self) -> list[str]:
        return self.config.label_names

    @property
    def max_length(self) -> int:
        """The longest input in tokens, special tokens included, that the model accepts."""
        limit = self.config.max_position_embeddings
        if self.tokenizer.model_max_length:
            limit = min(limit, self.tokenizer.model_max_length)
        return limit

    @property
    def default_batch_tokens(self) -> int:
        return DEFAULT_BATCH_TOKENS.get(self.device.type, 2048)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.network.parameters())

    def summary(self) -> "Summary":
        """The architecture in numbers: the network's shape and every part's parameter count (embeddings, each
        layer's attention and feed-forward, one head's share, the heads on top), adding up to the parameter count.
        Plain data (`.parts`, `.to_dict()`); printing it gives a table."""
        from bertkit.architecture import summarize

        return summarize(self.network)

    def info(self) -> dict:
        return {
            "source": self.source,
            "folder": str(self.folder) if self.folder else None,
            "device": str(self.device),
            "compiled": self.compiled,
            "precision": self.precision,
            "parameters": self.num_parameters(),
            "heads": self.network.heads,
            "labels": self.labels,
            "max_length": self.max_length,
            "sentence_transformers": self.sentence_config or None,
            "config": self.config.to_dict(),
        }

    # -- the shared machinery of every task -------------------------------------------------------
    def encode(self, texts: Sequence[str], pairs: Sequence[str] | None = None,
               max_length: int | None = None) -> list[Encoding]:
        """Deprecated name of `tokenize` (in sentence-transformers `encode` means "embed"); removed in 0.2."""
        warnings.warn("Model.encode is deprecated: it is called tokenize now (encode means embed elsewhere)",
                      DeprecationWarning, stacklevel=2)
        return self.tokenize(texts, pairs, max_length)

    def run(
        self,
        encodings: Sequence[Encoding],
        step: Callable[[Batch], Sequence[R]],
        batch_tokens: int | None = None,
    ) -> list[R]:
        """Apply `step` to length-sorted, token-budget batches; results come back in input order."""
        results: list[R | None] = [None] * len(encodings)
        for batch in self.batches(encodings, batch_tokens):
            with torch.inference_mode(), precision_module.autocast(self.device, self.precision):
                outputs = step(batch)
            for i, out in zip(batch.index, outputs):
                results[i] = out
        return results  # type: ignore[return-value]

    def batches(self, encodings: Sequence[Encoding], batch_tokens: int | None = None) -> Iterator[Batch]:
        if batch_tokens is not None and (isinstance(batch_tokens, bool) or not isinstance(batch_tokens, int)
                                         or batch_tokens < 1):
            raise OptionError("batch_tokens", f"must be a positive whole number of tokens, not {batch_tokens!r}")
        groups = group_by_budget([len(e) for e in encodings], batch_tokens or self.default_batch_tokens)
        for indices in groups:
            batch = pack([encodings[i].ids for i in indices], [encodings[i].type_ids for i in indices], index=indices)
            yield self.to_device(batch)

    def to_device(self, batch: Batch) -> Batch:
        if self.device.type == "cuda":  # pinned memory lets the copy overlap with the previous batch's compute
            return batch.pin_memory().to(self.device, non_blocking=True)
        return batch.to(self.device)

    # -- hidden states ----------------------------------------------------------------------------
    def hidden_states(
        self,
        texts: Sequence[str] | str,
        layer: int = -1,
        pairs: Sequence[str] | None = None,
        batch_tokens: int | None = None,
    ) -> list[torch.Tensor]:
        """One float32 CPU tensor [n_tokens_i, hidden] per text, special tokens included, in input order.

        `layer` counts like transformers' `hidden_states`: 0 is the embedding output, -1 the last layer.
        """
        n_layers = self.config.num_hidden_layers
        if not -(n_layers + 1) <= layer <= n_layers:
            raise BertkitError(f"layer {layer} does not exist; this model has layers 0..{n_layers} (or -1..-{n_layers + 1})")
        encodings = self.tokenize(texts, pairs)
        warn_truncated(encodings, self.max_length)
        last = layer in (-1, n_layers)

        def step(batch: Batch) -> list[torch.Tensor]:
            states = self.network(batch) if last else self.network(batch, all_layers=True)[layer]
            return batch.split_per_sequence(states.float().cpu())

        return self.run(encodings, step, batch_tokens)

    def __repr__(self) -> str:
        c = self.config
        return (f"Model({self.source!r}, layers={c.num_hidden_layers}, hidden={c.hidden_size}, "
                f"heads={self.network.heads}, device={self.device}, precision={self.precision})")


def read_sentence_config(folder: Path) -> dict:
    """The sentence-transformers pooling / normalisation / length settings a folder carries, if any."""
    out: dict = {}
    try:
        modules = json.loads((folder / "modules.json").read_text()) if (folder / "modules.json").exists() else []
        for module in modules:
            kind = module.get("type", "")
            if kind.endswith("Pooling"):
                pooling = json.loads((folder / module["path"] / "config.json").read_text())
                for mode in ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens"):
                    if pooling.get(f"pooling_mode_{mode}"):
                        out["pooling"] = {"cls_token": "cls", "mean_tokens": "mean", "max_tokens": "max",
                                          "mean_sqrt_len_tokens": "mean_sqrt_len"}[mode]
                        break
            elif kind.endswith("Normalize"):
                out["normalize"] = True
        if (folder / "sentence_bert_config.json").exists():
            st = json.loads((folder / "sentence_bert_config.json").read_text())
            if st.get("max_seq_length"):
                out["max_seq_length"] = int(st["max_seq_length"])
    except (OSError, json.JSONDecodeError, KeyError) as e:
        warnings.warn(f"{folder}: ignoring an unreadable sentence-transformers config ({e})", stacklevel=2)
    return out


def load(name_or_path: str | os.PathLike, device: str | torch.device | None = None,
         precision: str | None = None) -> Model:
    """Load a bundled alias (`minilm`), a local HF-layout folder, or a Hugging Face Hub id.

    `precision`: "fp32" (exact), "bf16" or "int8" (faster where the hardware has the instructions, within the
    quality gate in the README's Deployment section; inference only), or None for the device's default (fp32 on
    the CPU, bf16 autocast on CUDA). Asking for one this hardware cannot run is an error, never a fallback.
    """
    return Model.load(name_or_path, device, precision)
