"""How a model was made: library versions, the device, and a data split's size, hash and label counts."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from typing import Any

import torch

from bertkit.data import TextDataset
from bertkit.version import __version__

LIBRARIES = ("torch", "transformers", "tokenizers", "safetensors", "numpy", "pandas", "accelerate")


def library_versions() -> dict[str, str | None]:
    """Installed versions (None when absent), read from package metadata so nothing heavy is imported."""
    out: dict[str, str | None] = {"bertkit": __version__, "python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    out["torch"] = torch.__version__  # the build tag (+cpu, +cu126) matters for reproducing numbers
    return out


def device_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"type": device.type, "torch_threads": torch.get_num_threads(),
                            "cpu_count": os.cpu_count(), "platform": platform.platform()}
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        info["name"] = torch.cuda.get_device_name(index)
        info["cuda"] = torch.version.cuda
    else:
        info["name"] = platform.processor() or platform.machine()
    return info


def describe_split(dataset: TextDataset) -> dict[str, Any]:
    """What identifies a split: where it came from, its size, content hash and labels."""
    return {
        "source": dataset.source,
        "rows": len(dataset),
        "sha256": dataset.fingerprint(),
        "label_counts": dataset.label_counts(),
        "pairs": dataset.text_pairs is not None,
    }


def command_line() -> str:
    return " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]) if sys.argv else ""
