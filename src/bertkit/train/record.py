"""How a model was made: the training record (settings, data, steps, versions, device, timings) and its parts."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
import time
from typing import TYPE_CHECKING, Any

import torch

from bertkit.data import TextDataset
from bertkit.train import distributed
from bertkit.version import __version__

if TYPE_CHECKING:
    from bertkit.model import Model
    from bertkit.train.config import TrainConfig
    from bertkit.train.objective import Objective
    from bertkit.train.state import RunState

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


def training_record(config: "TrainConfig", model: "Model", objective: "Objective", run: "RunState",
                    best: dict[str, Any] | None, total_steps: int, timings: dict[str, float],
                    extra: dict[str, Any]) -> dict[str, Any]:
    """training_record.json: the run's settings, what the objective trained on, how far it went, and where it ran."""
    train_losses = [r["loss"] for r in run.history if r["split"] == "train"]
    return {
        "bertkit_training_record": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
        "config": config.to_dict(),
        "seed": config.seed,
        "base_model": model.source,
        **objective.describe(),
        "steps": run.step,
        "total_steps_planned": total_steps,
        "epochs_completed": run.epoch,
        "stopped_early": run.stopped_early,
        "best": best,
        "final_train_loss": train_losses[-1] if train_losses else None,
        "resumed_at_steps": run.resumed_at,
        "world_size": distributed.world_size(),
        "versions": library_versions(),
        "device": device_info(model.device),
        "timings": timings,
    }
