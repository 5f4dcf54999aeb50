"""A training run's folder: checked before a run, its checkpoints and records kept during it, restored on resume, written at the end.

Layout of a finished run (an HF-layout model folder that transformers loads, plus the run's files):

    config.json, model.safetensors, tokenizer files    the model
    metrics.json          the final (best) evaluation, the test report, what selected it
    metrics.jsonl         every training read-out and evaluation, in order
    training_record.json  arguments, data hashes, versions, device, timings: how the model was made
    training_curves.png, confusion_matrix.png (a classifier's), mlm_curves.png (a masked-LM run's)
    split.json            the rows of each split (written by the recipes, which make the split)
    training_arguments.json  what `bertkit train --resume` reuses (idem)
    checkpoints/          while the run is unfinished (or with keep_checkpoints)
"""
from __future__ import annotations

import shutil
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from bertkit.checkpoint import atomic_write
from bertkit.errors import BertkitError
from bertkit.modeling import BertNetwork
from bertkit.train import distributed
from bertkit.train import state as ckpt
from bertkit.train.config import TrainConfig, defaults, resume_conflicts
from bertkit.train.jsonout import jsonl, write_json
from bertkit.train.parallel import seed_rank
from bertkit.train.state import RunState

CHECKPOINTS = "checkpoints"
METRICS = "metrics.json"
RECORDS = "metrics.jsonl"
RECORD = "training_record.json"
CURVES = "training_curves.png"
CONFUSION = "confusion_matrix.png"
MLM_CURVES = "mlm_curves.png"  # a masked-LM run's held-out figures against the unigram baseline's
SPLIT = "split.json"
ARGUMENTS = "training_arguments.json"
RUN_FILES = (METRICS, RECORDS, RECORD, CURVES, CONFUSION, MLM_CURVES, SPLIT, ARGUMENTS)
# What `bertkit evaluate --output-dir DIR` writes: a report, each row's prediction, the confusion matrix.
EVALUATION = "evaluation.json"
PREDICTIONS = "predictions.jsonl"
EVALUATION_FILES = (EVALUATION, PREDICTIONS, CONFUSION)
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "vocab.txt", "tokenizer_config.json",
               "special_tokens_map.json")


class RunFolder:
    """Where a run writes (or nowhere: `path` None keeps everything in memory). Under DDP only rank 0 calls the writers."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path is not None else None

    @property
    def checkpoints(self) -> Path | None:
        return self.path / CHECKPOINTS if self.path is not None else None

    # -- before the run ---------------------------------------------------------------------------
    def prepare(self, resume: bool = False) -> Path | None:
        """Check the folder suits a new run (or holds one to resume); returns the checkpoint to resume from."""
        if self.path is None:
            if resume:
                raise BertkitError("resuming needs the run's output folder; pass output_dir (or --resume DIR)")
            return None
        latest = ckpt.latest_checkpoint(self.checkpoints)
        if resume:
            if latest is None:
                raise BertkitError(f"{self.path} holds no training checkpoint to resume; start the run without --resume")
            return latest
        if self.path.exists():
            if latest is not None:
                raise BertkitError(f"{self.path} holds an unfinished run; pass --resume {self.path} to continue it, "
                                   f"or --overwrite to start again")
            if (self.path / RECORD).exists() or (self.path / "model.safetensors").exists():
                raise BertkitError(f"{self.path} already holds a trained model; pass --overwrite to replace it, "
                                   f"or choose another --output")
        self.path.mkdir(parents=True, exist_ok=True)
        return None

    def clear(self) -> None:
        """Remove what a previous run wrote there (and nothing else the folder may hold)."""
        if self.path is None or not self.path.is_dir():
            return
        shutil.rmtree(self.checkpoints, ignore_errors=True)
        for name in RUN_FILES + MODEL_FILES:
            (self.path / name).unlink(missing_ok=True)

    # -- during the run ---------------------------------------------------------------------------
    def write_records(self, records: list[dict], rewrite: bool = False) -> None:
        """Append records to metrics.jsonl; with `rewrite`, make the file exactly `records` (on resume, later lines
        belong to steps the checkpoint lost)."""
        if self.path is None or not distributed.is_main_process():
            return
        path = self.path / RECORDS
        text = jsonl(records)
        if rewrite:
            atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        else:
            with open(path, "a", encoding="utf-8") as f:
                f.write(text)

    def next_checkpoint_name(self) -> str | None:
        """The name the next save will get (the best evaluation names its checkpoint before it is written)."""
        if self.path is None:
            return None
        latest = ckpt.latest_checkpoint(self.checkpoints)
        number = int(latest.name.split("-")[1]) + 1 if latest else 1
        return f"checkpoint-{number:06d}"

    def save_checkpoint(self, network: BertNetwork, state: dict[str, Any], keep: str | None) -> Path:
        return ckpt.save_checkpoint(self.checkpoints, network, state, keep=(keep,) if keep else ())

    def restore(self, checkpoint: Path, network: BertNetwork, optimizer, scheduler, generator: torch.Generator,
                config: TrainConfig, fingerprint: str, log: Callable[[str], None]) -> RunState:
        """Put weights, optimizer, schedule and every RNG back as `checkpoint` saved them; its run's position."""
        def read() -> dict[str, Any]:
            state = ckpt.load_training_state(checkpoint)
            saved_cfg = {**defaults(TrainConfig), **state.get("config", {})}
            changed = resume_conflicts(saved_cfg, config.to_dict())
            if changed:
                diffs = ", ".join(f"{k}: {saved_cfg.get(k)!r} -> {getattr(config, k)!r}" for k in changed)
                raise BertkitError(f"the checkpoint was trained with other settings ({diffs}); resume with the same ones")
            if state.get("data_sha256") != fingerprint:
                raise BertkitError(f"the training data differ from those of the checkpoint in {checkpoint}; "
                                   f"resume with the same --data, columns, --limit, --test-size and --seed")
            ckpt.load_weights(network, checkpoint)  # under DDP the others get them when DDP wraps the network
            return state

        # Under DDP only rank 0 reads the checkpoint (it need not be on a shared disk) and sends the state round.
        state = distributed.on_main(read)
        run = RunState.from_state(state["run"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        ckpt.set_rng_state(state["rng"], generator)
        me, world, saved_world = distributed.rank(), distributed.world_size(), int(state.get("world_size", 1))
        if me > 0:
            ranks = state.get("rng_ranks") or []
            if saved_world == world and me < len(ranks):
                ckpt.set_rng_state(ranks[me], generator)
            else:
                seed_rank(config.seed, me, run.step)
        if saved_world != world:
            log(f"the checkpoint was written by {saved_world} process(es) and this run has {world}: the global batches "
                f"stay the same; dropout on ranks other than 0 will not replay the original run")
        run.resumed_at.append(run.step)
        return run

    # -- at the end -------------------------------------------------------------------------------
    def write(self, save_model: Callable[[Path], Any], metrics: dict[str, Any], record: dict[str, Any],
              history: list[dict], plots: Callable[[Path], None], keep_checkpoints: bool) -> None:
        """The finished run: the model, metrics.json, training_record.json and the plots; the checkpoints go unless kept."""
        from bertkit.train.plots import plot_training_curves

        save_model(self.path)
        write_json(self.path / METRICS, metrics)
        write_json(self.path / RECORD, record)
        try:
            plot_training_curves(history, self.path / CURVES, title=f"Training {self.path.name}")
            plots(self.path)
        except Exception as e:  # a plot must never cost the trained model
            warnings.warn(f"could not draw the training plots ({e})", stacklevel=3)
        if not keep_checkpoints:
            shutil.rmtree(self.checkpoints, ignore_errors=True)
