"""Opt-in acceleration for the encoder: token-count bucketing, torch.compile of the dense blocks, CUDA graphs, CPU int8.

Nothing here restates modeling.py: the compiled graphs and the CUDA graphs run its modules' own
methods. `compile_network` swaps in a compiled encoder forward on one network instance (undo with
`uncompile_network`); `cast_linear_weights` stores the Linear weights in the autocast dtype once
instead of every forward (same numbers) and marks the network inference-only; `CudaGraphRunner` replays
captured CUDA graphs for inference; `quantize_int8` returns a *copy* whose encoder Linear layers run in
int8 (calibrated outlier channels kept fp32), which changes the numbers and is therefore flagged
(`is_quantized`) and only applied when asked for (`bertkit.load(..., precision="int8")`).
"""
from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass, replace
from types import MethodType
from typing import Iterable, Sequence

import torch
from torch import nn

from bertkit.attention import AttentionLayout
from bertkit.batching import Batch
from bertkit.errors import BertkitError
from bertkit.modeling import BertNetwork, Embeddings, Layer

__all__ = [
    "Bucketed", "CudaGraphRunner", "Int8Linear", "bucket_size", "bucket_tokens", "cast_linear_weights", "compile_network",
    "is_compiled", "is_quantized", "linear_weights_dtype", "quantize_int8", "uncompile_network",
]

IGNORE_LABEL = -100  # F.cross_entropy's default ignore_index: dummy sequences never count in a loss
_COMPILED = "_bertkit_compiled"
_QUANTIZED = "_bertkit_quantized"
_LINEAR_DTYPE = "_bertkit_linear_dtype"


# ---------------------------------------------------------------------------------------------
# Bucketing the packed token count
# ---------------------------------------------------------------------------------------------
def bucket_size(n: int, multiple: int = 256, sizes: Sequence[int] | None = None) -> int:
    """The smallest of `sizes` that holds `n`, else `n` rounded up to a multiple of `multiple`."""
    if sizes:
        fitting = [s for s in sizes if s >= n]
        if fitting:
            return min(fitting)
    return -(-n // multiple) * multiple


@dataclass
class Bucketed:
    """A batch grown to a bucketed token count by dummy sequences appended at the end.

    The real tokens and sequences come first, so dropping the dummies is a slice: `tokens(x)` for
    per-token outputs, `sequences(x)` for per-sequence ones (logits, pooled vectors, labels).
    """

    batch: Batch
    num_tokens: int  # real tokens
    num_sequences: int  # real sequences

    @property
    def num_dummy_tokens(self) -> int:
        return self.batch.num_tokens - self.num_tokens

    def tokens(self, values: torch.Tensor) -> torch.Tensor:
        return values[: self.num_tokens]

    def sequences(self, values: torch.Tensor) -> torch.Tensor:
        return values[: self.num_sequences]


def bucket_tokens(
    batch: Batch,
    multiple: int = 256,
    *,
    sizes: Sequence[int] | None = None,
    max_dummy_length: int | None = None,
    pad_token_id: int = 0,
) -> Bucketed:
    """Append dummy sequences of pad tokens so the packed token count T becomes `bucket_size(T, ...)`.

    Few distinct T values mean few compiled graphs / captured CUDA graphs. Dummies are at most
    `max_dummy_length` long (default: the batch's longest sequence), so the longest sequence — and
    with it the CPU padded view and the flash grid — does not grow. A dummy's label is -100, which
    cross_entropy ignores; multi-label rows are zeros, so slice with `sequences()` before any loss.
    `index` keeps only the real sequences, so results still go back to their inputs.
    """
    T = batch.num_tokens
    target = bucket_size(T, multiple, sizes)
    pad = target - T
    if pad == 0:
        return Bucketed(batch, T, batch.num_sequences)
    chunk = max(1, max_dummy_length or batch.max_seqlen)
    lengths = [chunk] * (pad // chunk) + ([pad % chunk] if pad % chunk else [])
    device = batch.input_ids.device
    positions = torch.cat([torch.arange(n) for n in lengths]).to(device)
    cu_tail = batch.cu_seqlens[-1] + torch.tensor(lengths, dtype=torch.int32).cumsum(0).to(device, batch.cu_seqlens.dtype)
    labels = batch.labels
    if labels is not None:
        filler = torch.full((len(lengths),) + tuple(labels.shape[1:]), IGNORE_LABEL if labels.dtype == torch.long else 0,
                            dtype=labels.dtype, device=labels.device)
        labels = torch.cat([labels, filler])
    grown = replace(
        batch,
        input_ids=torch.cat([batch.input_ids, batch.input_ids.new_full((pad,), pad_token_id)]),
        token_type_ids=torch.cat([batch.token_type_ids, batch.token_type_ids.new_zeros(pad)]),
        positions=torch.cat([batch.positions, positions.to(batch.positions.dtype)]),
        cu_seqlens=torch.cat([batch.cu_seqlens, cu_tail]),
        max_seqlen=max(batch.max_seqlen, max(lengths)),
        labels=labels,
        index=list(batch.index),
    )
    return Bucketed(grown, T, batch.num_sequences)


# ---------------------------------------------------------------------------------------------
# torch.compile of the dense blocks
# ---------------------------------------------------------------------------------------------
# Module-level functions taking modules as arguments: every layer shares one compiled graph per
# (shape, mode) instead of compiling twelve copies (dynamo turns the parameters into graph inputs).
#
# The graphs are cut around attention (SelfAttention.context stays eager), so each one runs from
# one layer's attention context to the next layer's QKV projection: the residual stream's cast for
# that matmul fuses into the LayerNorm that produces it, instead of costing an eager pass over the
# activations per layer.
def _embed_then_qkv(embeddings: Embeddings, first: Layer, input_ids: torch.Tensor, positions: torch.Tensor,
                    token_type_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = embeddings(input_ids, positions, token_type_ids)
    return x, first.attention.qkv(x)


def _after_attention(layer: Layer, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    return layer.after_attention(x, context)


def _after_attention_then_qkv(layer: Layer, following: Layer, x: torch.Tensor,
                              context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = layer.after_attention(x, context)
    return x, following.attention.qkv(x)


def _raise_recompile_limit(at_least: int) -> None:
    import torch._dynamo.config as cfg

    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(cfg, name) and getattr(cfg, name) < at_least:
            setattr(cfg, name, at_least)
    if hasattr(cfg, "accumulated_recompile_limit") and cfg.accumulated_recompile_limit < 8 * at_least:
        cfg.accumulated_recompile_limit = 8 * at_least


def compile_network(
    network: BertNetwork,
    mode: str | None = None,
    dynamic: bool | None = None,
    backend: str = "inductor",
    max_shapes: int = 64,
) -> BertNetwork:
    """Compile the encoder's dense blocks in place; attention stays eager in between.

    Attention is left out of the graphs because its shape facts (number of sequences, longest
    sequence) change every batch while the dense blocks only see [T, hidden]. Bucket T with
    `bucket_tokens` and pass `dynamic=False` to get one specialised graph per bucket (up to
    `max_shapes`); `dynamic=None` lets torch switch to one shape-generic graph after the second
    shape it sees. `mode` is torch.compile's: "max-autotune-no-cudagraphs" has inductor time its
    own matmul kernels (which could fuse bias+GELU) against cuBLAS, minutes per shape; on an H200
    cuBLAS won every time (benchmarks/NOTES.md). For CUDA graphs use `CudaGraphRunner`, which can
    replay a compiled network. Outputs equal the
    eager network's within float rounding (tests hold them to 1e-5 in fp32). Returns `network`.
    """
    if is_compiled(network):
        return network
    if dynamic is False:
        _raise_recompile_limit(max_shapes)
    compile = lambda fn: torch.compile(fn, mode=mode, dynamic=dynamic, backend=backend)  # noqa: E731
    embed, tail, tail_then_qkv = compile(_embed_then_qkv), compile(_after_attention), compile(_after_attention_then_qkv)

    def encoder_forward(encoder, batch: Batch, all_layers: bool = False, force_padded_attention: bool = False):
        layout = AttentionLayout.for_batch(batch, force_padded=force_padded_attention)
        layers = encoder.layers
        x, qkv = embed(encoder.embeddings, layers[0], batch.input_ids, batch.positions, batch.token_type_ids)
        states = [x]
        for i, layer in enumerate(layers):
            context = layer.attention.context(qkv, layout)
            if i + 1 < len(layers):
                x, qkv = tail_then_qkv(layer, layers[i + 1], x, context)
            else:
                x = tail(layer, x, context)
            if all_layers:
                states.append(x)
        return states if all_layers else x

    # An instance attribute shadows the class's forward; deleting it restores the eager code.
    network.encoder.forward = MethodType(encoder_forward, network.encoder)
    setattr(network, _COMPILED, {"mode": mode, "dynamic": dynamic, "backend": backend})
    return network


def uncompile_network(network: BertNetwork) -> BertNetwork:
    """Undo `compile_network`: the network runs modeling.py's eager code again."""
    network.encoder.__dict__.pop("forward", None)
    network.__dict__.pop(_COMPILED, None)
    return network


def is_compiled(network: nn.Module) -> bool:
    return _COMPILED in network.__dict__


# ---------------------------------------------------------------------------------------------
# Linear weights stored in the autocast dtype (inference)
# ---------------------------------------------------------------------------------------------
def cast_linear_weights(network: BertNetwork, dtype: torch.dtype = torch.bfloat16) -> BertNetwork:
    """Store every nn.Linear's weight and bias in `dtype`, in place, for inference under `dtype` autocast.

    Autocast rounds each fp32 weight to `dtype` on every forward (one kernel per matrix); doing it
    once gives the same numbers, bit for bit, without those kernels. Embeddings and LayerNorms stay
    fp32, as autocast computes them. The network then needs autocast (or `dtype` inputs); it can be
    neither trained nor saved (its fp32 weights are gone: `network.inference_only` says so and both
    refuse), so reload the checkpoint for that. Returns `network`.
    """
    if network.training:
        raise BertkitError("cast_linear_weights is for inference: call network.eval() first (training needs fp32 weights)")
    for module in network.modules():
        if isinstance(module, nn.Linear):
            module.to(dtype)
    setattr(network, _LINEAR_DTYPE, dtype)
    network.inference_only = (f"this network's Linear weights were cast to {str(dtype).removeprefix('torch.')} for "
                              "inference (accel.cast_linear_weights), so its fp32 weights are gone; "
                              "load the checkpoint again to train or save it")
    return network


def linear_weights_dtype(network: nn.Module) -> torch.dtype | None:
    """The dtype `cast_linear_weights` stored the Linear weights in, or None if it was not applied."""
    return network.__dict__.get(_LINEAR_DTYPE)


# ---------------------------------------------------------------------------------------------
# CUDA graphs for inference
# ---------------------------------------------------------------------------------------------
def _pow2_at_least(n: int, floor: int = 1) -> int:
    return max(floor, 1 << max(0, math.ceil(math.log2(max(n, 1)))))


def static_inputs(batch: Batch, tokens: int, sequences: int, max_seqlen: int, pad_token_id: int = 0) -> dict[str, torch.Tensor]:
    """Host tensors of one fixed shape for `batch`: T = `tokens`, B = `sequences`, longest = `max_seqlen`.

    Dummy sequences (at most `max_seqlen` long) fill the tokens; zero-length sequences (repeated
    cu_seqlens entries, which the flash varlen kernel skips) fill the sequence slots. `first_index`
    points each sequence at its first token, clamped so empty slots stay in range.
    """
    grown = bucket_tokens(batch, sizes=[tokens], multiple=tokens, max_dummy_length=max_seqlen, pad_token_id=pad_token_id).batch
    if grown.num_tokens != tokens or grown.num_sequences > sequences or grown.max_seqlen > max_seqlen:
        raise ValueError(f"batch (T={batch.num_tokens}, B={batch.num_sequences}, L={batch.max_seqlen}) "
                         f"does not fit the shape ({tokens}, {sequences}, {max_seqlen})")
    cu = grown.cu_seqlens.cpu()
    cu = torch.cat([cu, cu.new_full((sequences - grown.num_sequences,), tokens)])
    return {
        "input_ids": grown.input_ids.cpu(), "token_type_ids": grown.token_type_ids.cpu(), "positions": grown.positions.cpu(),
        "cu_seqlens": cu, "first_index": cu[:-1].long().clamp(max=tokens - 1),
    }


class _Captured:
    def __init__(self, shape: tuple[int, int, int], device: torch.device):
        T, B, L = shape
        self.shape = shape
        self.inputs = {
            "input_ids": torch.zeros(T, dtype=torch.long, device=device),
            "token_type_ids": torch.zeros(T, dtype=torch.long, device=device),
            "positions": torch.zeros(T, dtype=torch.long, device=device),
            "cu_seqlens": torch.zeros(B + 1, dtype=torch.int32, device=device),
            "first_index": torch.zeros(B, dtype=torch.long, device=device),
        }
        self.graph: torch.cuda.CUDAGraph | None = None
        self.output: torch.Tensor | None = None

    def load(self, host: dict[str, torch.Tensor]) -> None:
        for name, buf in self.inputs.items():
            src = host[name]
            if buf.device.type == "cuda" and not src.is_pinned():
                src = src.pin_memory()  # lets the copy run async instead of through a pageable bounce
            buf.copy_(src, non_blocking=True)


class CudaGraphRunner:
    """Inference by CUDA-graph replay: one graph per (tokens, sequences, longest) bucket, captured on first use.

    Each batch is grown to its bucket (dummy and empty sequences; see `static_inputs`), copied into
    that graph's static buffers and replayed: no per-kernel launch cost and no host sync. `output`
    picks what comes back: "states" [T, hidden], "pooled" [B, hidden] or "logits" [B, labels], with
    dummies already dropped (a fresh tensor, safe to keep). Runs under bf16 autocast and
    inference_mode; pass a `compile_network`-ed network to replay compiled kernels. With
    `capture=False` the same fixed-shape code runs eagerly, which is how it is tested off CUDA.
    """

    def __init__(self, network: BertNetwork, output: str = "states", token_multiple: int = 2048,
                 min_seqlen: int = 64, dtype: torch.dtype = torch.bfloat16, capture: bool = True,
                 max_graphs: int = 64):
        if output not in ("states", "pooled", "logits"):
            raise BertkitError(f"output must be states, pooled or logits, not {output!r}")
        if output != "states" and network.pooler is None:
            raise BertkitError(f"output={output!r} needs a pooler; this network has none")
        if output == "logits" and network.classifier is None:
            raise BertkitError("output='logits' needs a classifier head; this network has none")
        self.device = next(network.parameters()).device
        if capture and (self.device.type != "cuda" or not torch.cuda.is_available()):
            raise BertkitError("CUDA graphs need the network on a CUDA device; use capture=False elsewhere")
        if network.training:
            raise BertkitError("CudaGraphRunner is for inference; call network.eval() first")
        self.network, self.output, self.capture = network, output, capture
        self.token_multiple, self.min_seqlen, self.dtype, self.max_graphs = token_multiple, min_seqlen, dtype, max_graphs
        self.max_position = network.config.max_position_embeddings
        self.pad_token_id = network.config.pad_token_id
        self.graphs: dict[tuple[int, int, int], _Captured] = {}
        self.pool = torch.cuda.graph_pool_handle() if capture else None

    def shape_for(self, batch: Batch) -> tuple[int, int, int]:
        """(tokens, sequences, longest) after bucketing: T to `token_multiple`, B and L to powers of two."""
        L = min(self.max_position, _pow2_at_least(batch.max_seqlen, self.min_seqlen))
        T = bucket_size(batch.num_tokens, self.token_multiple)
        dummies = -(-(T - batch.num_tokens) // L)
        return T, _pow2_at_least(batch.num_sequences + dummies, 8), L

    def __call__(self, batch: Batch) -> torch.Tensor:
        shape = self.shape_for(batch)
        entry = self.graphs.get(shape)
        host = static_inputs(batch.to("cpu"), *shape, pad_token_id=self.pad_token_id)
        if entry is None:
            if len(self.graphs) >= self.max_graphs:
                raise BertkitError(f"more than {self.max_graphs} CUDA graph shapes; raise token_multiple or max_graphs")
            entry = _Captured(shape, self.device)
            entry.load(host)
            self._prepare(entry)
            self.graphs[shape] = entry
        else:
            entry.load(host)
        if self.capture:
            entry.graph.replay()
            out = entry.output
        else:
            out = self._forward(entry)
        keep = batch.num_tokens if self.output == "states" else batch.num_sequences
        return out[:keep].clone()

    def _forward(self, entry: _Captured) -> torch.Tensor:
        T, B, L = entry.shape
        buf = entry.inputs
        static = Batch(buf["input_ids"], buf["token_type_ids"], buf["positions"], buf["cu_seqlens"], L)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self.dtype, enabled=self.device.type == "cuda"):
            states = self.network.encoder(static)
            if self.output == "states":
                return states
            # Not network.pooled: that reads static.first_token_index, which points the empty
            # sequence slots past the last token; first_index is clamped into the buffer.
            pooled = self.network.pooler(states.index_select(0, buf["first_index"]))
            return pooled if self.output == "pooled" else self.network.logits(pooled)

    def _prepare(self, entry: _Captured) -> None:
        if not self.capture:
            return
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up off the capture: compiles, autotunes, sets up cuBLAS
            for _ in range(2):
                self._forward(entry)
        torch.cuda.current_stream().wait_stream(side)
        entry.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(entry.graph, pool=self.pool):
            entry.output = self._forward(entry)


# ---------------------------------------------------------------------------------------------
# CPU int8: int8 weights and activations, the calibrated outlier channels kept in fp32 (opt-in)
# ---------------------------------------------------------------------------------------------
# An input channel whose calibrated magnitude is over this many times the layer's median channel stays fp32. BERT's
# residual stream and GELU outputs carry a few channels 5-15x larger than the rest; one per-batch int8 range over
# them leaves the others a handful of levels (MiniLM: lowest sentence cosine to fp32 0.94 with them, 0.996 without).
OUTLIER_RATIO = 4.0
# Which of a layer's Linear modules run in int8 (names inside modeling.Layer). The FFN's up-projection stays fp32: with
# it in int8, MiniLM's search top-10 overlap with fp32 fell to 0.938 (1,000 snippets, 200 queries), below the 0.95 gate;
# without it 0.953, lowest sentence cosine 0.998 (benchmarks/NOTES.md, Deployment).
INT8_LAYERS = ("attention.qkv", "attention.out", "ffn.down")


class Int8Linear(nn.Module):
    """`nn.Linear` run in int8: weights with one scale per output channel; activations quantized to 8 bits per token
    (each row is divided by its largest |value| first, so one per-batch range fits every row), except the input
    channels `outliers` names, which are multiplied in fp32 and added."""

    def __init__(self, linear: nn.Linear, outliers: torch.Tensor | None = None):
        super().__init__()
        weight = linear.weight.detach().float()
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        mask = torch.zeros(self.in_features, dtype=torch.bool) if outliers is None else outliers.cpu()
        self.register_buffer("inliers", (~mask).nonzero().flatten())
        self.register_buffer("outliers", mask.nonzero().flatten())
        self.register_buffer("outlier_weight", weight[:, mask].t().contiguous())  # [outliers, out_features], fp32
        bias = torch.zeros(self.out_features) if linear.bias is None else linear.bias.detach().float()
        self.register_buffer("bias", bias)
        kept = weight[:, ~mask]
        scale = (kept.abs().amax(dim=1) / 127).clamp(min=1e-12).double()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch announces the quantized tensor types' move to torchao on every call
            q = torch.quantize_per_channel(kept, scale, torch.zeros_like(scale, dtype=torch.long), 0, torch.qint8)
            self._packed = torch.ops.quantized.linear_prepack(q, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, self.in_features).float()
        kept = x.index_select(1, self.inliers) if self.outliers.numel() else x
        row_scale = kept.abs().amax(dim=1, keepdim=True).clamp(min=1e-12)
        y = torch.ops.quantized.linear_dynamic(kept / row_scale, self._packed, reduce_range=False)
        y = torch.addcmul(self.bias, y, row_scale)
        if self.outliers.numel():
            y = y.addmm_(x.index_select(1, self.outliers), self.outlier_weight)
        return y.view(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, fp32 inputs={self.outliers.numel()}"


def input_magnitudes(network: BertNetwork, calibration: Iterable[Batch]) -> dict[str, torch.Tensor]:
    """Each encoder Linear's largest |input| per channel over the calibration batches, keyed by module name."""
    found: dict[str, torch.Tensor] = {}

    def record(name: str):
        def hook(module, inputs, output):
            seen = inputs[0].detach().float().abs().reshape(-1, inputs[0].shape[-1]).amax(dim=0)
            found[name] = seen if name not in found else torch.maximum(found[name], seen)
        return hook

    hooks = [module.register_forward_hook(record(name)) for name, module in network.encoder.named_modules()
             if isinstance(module, nn.Linear)]
    try:
        with torch.inference_mode():
            for batch in calibration:
                network.encoder(batch)
    finally:
        for h in hooks:
            h.remove()
    return found


def quantize_int8(network: BertNetwork, calibration: Iterable[Batch] = (), outlier_ratio: float = OUTLIER_RATIO,
                  layers: Sequence[str] = INT8_LAYERS) -> BertNetwork:
    """A CPU copy of `network` whose encoder Linear layers run in int8 (`Int8Linear`); the original is untouched.

    `calibration` (batches of real text, run once in fp32) finds each layer's outlier input channels, which stay
    fp32; without it every channel is int8 (a measured accuracy cost: benchmarks/NOTES.md). The heads stay fp32. The
    copy is marked (`is_quantized`) and inference-only (`network.inference_only`): its fp32 weights are not kept.
    """
    if next(network.parameters()).device.type != "cpu":
        raise BertkitError("int8 inference runs on the CPU; move the network to cpu first")
    magnitudes = input_magnitudes(network.eval(), calibration)
    quantized = copy.deepcopy(network).eval()
    for owner_name, owner in list(quantized.encoder.named_modules()):
        for name, child in list(owner.named_children()):
            if isinstance(child, nn.Linear) and f"{owner_name}.{name}".endswith(tuple(layers)):
                seen = magnitudes.get(f"{owner_name}.{name}" if owner_name else name)
                outliers = None if seen is None else seen > outlier_ratio * seen.median()
                setattr(owner, name, Int8Linear(child, outliers))
    setattr(quantized, _QUANTIZED, "int8")
    quantized.inference_only = ("this network runs int8 (precision int8), so its fp32 weights are gone; load the "
                                "checkpoint again with precision fp32 to train or save it")
    return quantized


def is_quantized(network: nn.Module) -> bool:
    """True for a network whose numbers differ from the checkpoint's by design (int8)."""
    return _QUANTIZED in network.__dict__
