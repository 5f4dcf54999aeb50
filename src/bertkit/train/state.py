"""Training checkpoints that survive a kill: RNG state as plain tensors, folders written whole then renamed, safe loading.

Layout under a run's `checkpoints/` folder:

    checkpoint-000007/      the 7th save: config.json, model.safetensors, training_state.pt
    .tmp-checkpoint-.../    a save in progress; never read, removed on the next save

A save is written into a hidden temporary folder and renamed into place in one step, so every
`checkpoint-*` folder that exists is complete. The newest one is the run's position; the best one is
named inside its training state.
"""
from __future__ import annotations

import dataclasses
import os
import random
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bertkit.checkpoint import load_network, save_network
from bertkit.errors import BertkitError
from bertkit.modeling import BertNetwork

STATE_FILE = "training_state.pt"
STATE_VERSION = 2  # 2: the run's position is RunState, under "run"
_NAME = re.compile(r"^checkpoint-(\d+)$")


@dataclass
class RunState:
    """Where a training run stands; saved in every checkpoint and restored on resume (plain values only)."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0
    batch: int = 0  # position in the epoch's batch plan
    best: dict[str, Any] | None = None  # the best evaluation so far, with its checkpoint's name
    last_eval: dict[str, Any] | None = None
    bad_evals: int = 0  # evaluations since the best one (early stopping)
    history: list[dict[str, Any]] = field(default_factory=list)  # the metrics.jsonl records so far
    finished: bool = False
    stopped_early: bool = False
    train_s: float = 0.0  # seconds in optimizer steps, over every session
    eval_s: float = 0.0
    save_s: float = 0.0
    examples: int = 0
    tokens: int = 0
    resumed_at: list[int] = field(default_factory=list)  # the step each resumed session started from
    # The training loss summed since the last read-out (over every process) and what it is a mean over (examples,
    # or an objective's Objective.counted: masked tokens):
    # restored on resume, so the read-out whose window spans a kill is the uninterrupted run's.
    window_loss: float = 0.0
    window_examples: int = 0

    def to_state(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "RunState":
        return cls(**state)


# ---------------------------------------------------------------------------------------------
# Random number generators, as tensors and plain numbers (loadable with weights_only=True)
# ---------------------------------------------------------------------------------------------
def rng_state(generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every RNG a training step can touch: Python, NumPy, torch CPU and CUDA, and our generator."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generator": generator.get_state() if generator is not None else None,
    }


def set_rng_state(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    """Put every RNG back where `rng_state` found it."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        if len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        else:  # a different GPU count: the run continues, but dropout will not replay bit for bit
            torch.cuda.manual_seed_all(int(state["torch"][:8].sum()))
    if generator is not None and state.get("generator") is not None:
        generator.set_state(state["generator"])


# ---------------------------------------------------------------------------------------------
# Checkpoint folders
# ---------------------------------------------------------------------------------------------
def checkpoints(root: str | os.PathLike) -> list[Path]:
    """The complete checkpoint folders under `root`, oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    found = checkpoints(root)
    return found[-1] if found else None


def save_checkpoint(root: str | os.PathLike, network: BertNetwork, state: dict[str, Any], keep: tuple[str, ...] = ()) -> Path:
    """Write weights + training state as the next `checkpoint-N` folder, atomically; prune older ones.

    `state` must hold only tensors and plain Python values. Folders named in `keep` (the best
    checkpoint) survive pruning; everything else older than the new one is removed.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".tmp-checkpoint-*"):  # left by a kill in the middle of a save
        shutil.rmtree(stale, ignore_errors=True)
    existing = checkpoints(root)
    number = int(_NAME.match(existing[-1].name).group(1)) + 1 if existing else 1
    final = root / f"checkpoint-{number:06d}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-checkpoint-"))
    try:
        save_network(network, tmp)
        torch.save({"version": STATE_VERSION, **state}, tmp / STATE_FILE)
        os.replace(tmp, final)  # a rename: the folder appears complete or not at all
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in existing:
        if old.name not in keep:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_training_state(folder: str | os.PathLike) -> dict[str, Any]:
    """The training state of a checkpoint folder, loaded safely (tensors and plain values only)."""
    path = Path(folder) / STATE_FILE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise BertkitError(f"{path} is missing; the checkpoint is not a bertkit training checkpoint") from None
    except Exception as e:
        raise BertkitError(f"{path} cannot be read ({str(e).splitlines()[0][:160]}); delete that checkpoint folder "
                           f"to resume from the one before it") from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise BertkitError(f"{path} was written by an incompatible bertkit version; start the run again without --resume")
    return state


def load_weights(network: BertNetwork, folder: str | os.PathLike) -> None:
    """Copy a checkpoint folder's weights into `network` in place (the optimizer keeps its references)."""
    saved = load_network(Path(folder))
    with torch.no_grad():
        mine = network.state_dict()
        theirs = saved.state_dict()
        if set(mine) != set(theirs):
            raise BertkitError(f"{folder} holds a different architecture than the model being trained; "
                               f"resume with the same --model")
        for name, tensor in mine.items():
            tensor.copy_(theirs[name])
