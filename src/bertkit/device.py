"""Device choice (CUDA, then MPS, then CPU) and the matching autocast: bf16 on CUDA, fp32 elsewhere."""
from __future__ import annotations

import contextlib

import torch

from bertkit.errors import BertkitError

DEVICE_TYPES = ("cpu", "cuda", "mps")
DEVICE_NAMES = ("cpu", "cuda", "cuda:N", "mps", "auto")


def pick_device(requested: str | torch.device | None = None) -> torch.device:
    """The best device present, or the one asked for; asking for a missing one is an error, never a fallback."""
    if requested is None or str(requested) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        device = None
    if device is None or device.type not in DEVICE_TYPES:  # torch knows meta, xla, ...: none runs bertkit
        raise BertkitError(f"unknown device '{requested}'; use {', '.join(DEVICE_NAMES)}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BertkitError("CUDA was asked for but torch sees no CUDA device; install a CUDA build of torch or pass --device cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise BertkitError(f"{device} does not exist: torch sees {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise BertkitError("MPS was asked for but is not available here; pass --device cpu")
    return device


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA (the tensor cores' format); a no-op elsewhere, so CPU results stay fp32-exact."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()
