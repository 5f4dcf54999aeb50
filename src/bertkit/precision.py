"""Inference precision: fp32 (exact), bf16 and int8 (faster where the hardware has the instructions, within a
measured quality gate), declared once, checked against the CPU or GPU, and applied to a loaded model."""
from __future__ import annotations

import contextlib
import warnings
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np
import torch

from bertkit.errors import BertkitError, OptionError

if TYPE_CHECKING:
    from bertkit.model import Model

Precision = Literal["fp32", "bf16", "int8"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of CPUs with native bf16 dot products
INT8_FAST_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # int8 runs without them (AVX2), faster with them
INT8_CAPABILITIES = ("AVX2", "AVX512")  # torch.backends.cpu.get_cpu_capability() values fbgemm's kernels run on

# Real sentences of varied kinds (questions, numbers, names, punctuation, a long one) that int8 is calibrated on:
# they show each layer which input channels carry outliers. Any English text does; these ship with bertkit.
CALIBRATION_TEXTS = (
    "The committee will meet again on Tuesday to review the budget.",
    "Why did the bridge close for three weeks last spring?",
    "She paid $1,250.00 for the flight, which was delayed by 4 hours!",
    "A quiet, beautifully shot film that never quite finds its story.",
    "Preheat the oven to 200 degrees and bake for 25-30 minutes.",
    "The new vaccine reduced hospital admissions by nearly 40 percent.",
    "I can't believe it's already December; where did the year go?",
    "Manchester United drew 1-1 with Chelsea at Old Trafford on Sunday.",
    "Error 404: the page you requested could not be found.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "Please send the signed contract to legal@example.com by Friday.",
    "He whispered, \"Don't open the door,\" and then the lights went out.",
    "The river rose so fast that the farmers had no time to move their cattle, and by morning the whole valley, "
    "from the old mill to the church on the hill, lay under brown, slow-moving water that would not recede for "
    "weeks, leaving behind mud, ruined harvests and a long argument about who should pay for the new dams.",
    "Is this restaurant open on public holidays?",
    "Stocks fell sharply after the central bank raised interest rates to 5.5%.",
    "The sequel is louder, longer and dumber than the original.",
    "Mount Everest is 8,849 metres high and lies on the border of Nepal and China.",
    "Thanks so much for your help yesterday :)",
    "The defendant pleaded not guilty to all charges.",
    "def add(a, b): return a + b",
    "Who wrote Pride and Prejudice, and when was it published?",
    "Heavy rain is expected across the north-west overnight.",
    "What a waste of a talented cast.",
    "The museum reopened in 2021 after a five-year, 80-million-euro renovation.",
)


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux reports them (empty where /proc/cpuinfo is not readable)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def cpu_capability() -> str:
    """The widest vector instruction set torch dispatches to on this CPU (AVX2, AVX512, DEFAULT, ...)."""
    return torch.backends.cpu.get_cpu_capability()


def why_not(precision: str, device: torch.device) -> str | None:
    """Why `precision` cannot run on `device`, in one sentence; None when it can."""
    if precision == "fp32":
        return None
    if device.type not in ("cpu", "cuda"):
        return f"{precision} inference runs on the CPU or CUDA, not {device.type}; use fp32"
    if precision == "bf16":
        if device.type == "cuda":
            return None if torch.cuda.is_bf16_supported() else "this GPU has no bf16 arithmetic; use fp32"
        if cpu_flags() & set(BF16_CPU_FLAGS):
            return None
        return (f"this CPU has neither AVX-512 BF16 nor AMX (torch sees {cpu_capability()}), so bf16 would be "
                "emulated and slower than fp32; use fp32, or int8")
    if device.type != "cpu":
        return "int8 runs on the CPU (fbgemm kernels); on CUDA use bf16"
    if not any(cpu_capability().startswith(c) for c in INT8_CAPABILITIES):
        return f"the int8 kernels need AVX2 or AVX-512 and this CPU has {cpu_capability()}; use fp32"
    return None


def resolve(precision: str | None, device: torch.device) -> str:
    """The precision a model on `device` runs at: the one asked for if this hardware runs it, else an error;
    None means the device's default (fp32 on the CPU, bf16 autocast on CUDA)."""
    if precision is None:
        return "bf16" if device.type == "cuda" else "fp32"
    if precision not in PRECISIONS:
        raise OptionError("precision", f"must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    reason = why_not(precision, device)
    if reason:
        raise BertkitError(f"precision {precision} cannot run here: {reason}")
    return precision


def apply(model: "Model", precision: str) -> None:
    """Turn `model.network` into its `precision` form, in place; reduced precisions are inference-only."""
    from bertkit.accel import cast_linear_weights, quantize_int8

    if precision == "bf16":
        cast_linear_weights(model.network, torch.bfloat16)  # autocast's numbers without its per-forward casts
    elif precision == "int8":
        calibration = list(model.batches(model.tokenize(list(CALIBRATION_TEXTS))))
        model.network = quantize_int8(model.network, calibration)
        if model.network.classifier is not None:
            warnings.warn("int8 moves a classifier's logits enough to flip labels near its decision boundary (measured: "
                          "1.7% of labels on a MiniLM sentiment classifier, README Deployment); use fp32, or bf16 where "
                          "the CPU has it, when every label must match fp32", stacklevel=3)


def autocast(device: torch.device, precision: str):
    """The context a forward pass runs in: bf16 autocast (matmuls in bf16; LayerNorm, softmax's sums, residuals and
    pooling in fp32), else nothing (fp32, and int8, whose layers choose their own arithmetic)."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# -- the quality gate a reduced precision must pass against fp32, measured on real text ------------------------------
QUALITY_GATE = {
    "min_cosine": 0.99,  # the lowest cosine between a text's sentence vector and its fp32 one
    "label_agreement": 0.995,  # the share of texts a classifier labels as it does in fp32
    "top10_overlap": 0.95,  # the mean share of a query's 10 nearest texts that fp32 also finds
}


def cosines(a, b) -> np.ndarray:
    """The cosine of each row of `a` with the same row of `b` (float64)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def top_k_overlap(queries, corpus, reference_queries, reference_corpus, k: int = 10) -> float:
    """The mean share of each query's `k` nearest corpus rows (by cosine) that the reference vectors also rank top `k`."""
    def top(q, c):
        q, c = np.asarray(q, dtype=np.float64), np.asarray(c, dtype=np.float64)
        q, c = q / np.linalg.norm(q, axis=1, keepdims=True), c / np.linalg.norm(c, axis=1, keepdims=True)
        return np.argsort(-(q @ c.T), axis=1)[:, :k]

    found, wanted = top(queries, corpus), top(reference_queries, reference_corpus)
    return float(np.mean([len(set(f) & set(w)) / k for f, w in zip(found, wanted)]))


def gate_failures(figures: dict) -> list[str]:
    """The gate's figures in `figures` that miss it, named with both numbers (empty: it passes)."""
    return [f"{name} {figures[name]:.4f} < {bound}" for name, bound in QUALITY_GATE.items()
            if name in figures and figures[name] < bound]
