"""Masked-LM training in one call: load the model, read and window the text, train with the trainer's loop, write the run folder."""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

from bertkit.model import Model, load
from bertkit.pretrain.arguments import NOT_FOR_PRETRAINING, SELECTED_BY, PretrainArguments
from bertkit.pretrain.prepare import prepare_data
from bertkit.pretrain.training import MaskedLanguageModeling
from bertkit.train import distributed
from bertkit.train.arguments import options_from_keywords
from bertkit.train.config import TrainConfig
from bertkit.train.jsonout import write_json
from bertkit.train.launch import Command
from bertkit.train.recipes import in_run_folder
from bertkit.train.record import command_line
from bertkit.train.run_folder import ARGUMENTS
from bertkit.train.trainer import Trainer, TrainResult


def pretrain_mlm(
    model: str | os.PathLike | Model,
    data: str | os.PathLike,
    *,
    output_dir: str | os.PathLike | None = None,
    device: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
    config: TrainConfig | None = None,
    **options: Any,
) -> TrainResult:
    """Masked-LM training of `model` (name, folder or Model) on the unlabelled text in `data` (a file or a folder).

    `options` are the fields of PretrainArguments (eval_data=, eval_fraction=, text_column=, paragraphs=,
    mask_prob=, mask=, max_length=, pack=) and of TrainConfig (epochs=, max_steps=, lr=, batch_size=,
    batch_tokens=, seed=, ...; they override `config`), with the defaults and meanings declared there;
    the names are `bertkit pretrain`'s flags. The best model is the one with the lowest held-out masked
    loss. `output_dir` ends as a Hugging Face BertForMaskedLM folder with the run's record, metrics
    and plots; an interrupted run carries on with `resume=True`.
    """
    arguments, cfg = options_from_keywords(PretrainArguments, model, data, config, options, caller="pretrain_mlm",
                                           refused=NOT_FOR_PRETRAINING, refusal="is not a masked-LM training setting")
    return pretrain_run(arguments, cfg, output_dir=output_dir, device=device, resume=resume, overwrite=overwrite,
                        progress=progress)


def pretrain_run(
    arguments: PretrainArguments,
    config: TrainConfig,
    *,
    output_dir: str | os.PathLike | None = None,
    device: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
    output_param: str = "output_dir",
) -> TrainResult:
    """`pretrain_mlm` with its options already made (what `bertkit pretrain` calls); `output_param` names `output_dir` in errors."""
    # The window length is the run's, and the best model the lowest held-out loss, whatever `config` said.
    config = dataclasses.replace(config, max_length=arguments.max_length, metric=SELECTED_BY)
    return in_run_folder(output_dir, resume, overwrite, output_param,
                         lambda output: _pretrain(arguments, config, output, device, resume, progress))


def _pretrain(arguments: PretrainArguments, cfg: TrainConfig, output_dir: Path | None, device: str | None,
              resume: bool, progress: bool | None) -> TrainResult:
    speaks = distributed.is_main_process()
    say = (lambda line: print(line, file=sys.stderr)) if speaks else (lambda line: None)
    model = arguments.model if isinstance(arguments.model, Model) else load(arguments.model, device=device)
    t = time.perf_counter()
    data = prepare_data(model.tokenizer, arguments.data, max_length=arguments.max_length, limit=model.max_length,
                        eval_data=arguments.eval_data, eval_fraction=arguments.eval_fraction, seed=cfg.seed,
                        pack=arguments.pack, text_column=arguments.text_column, paragraphs=arguments.paragraphs,
                        progress=progress is not False and speaks)
    prepare_s = time.perf_counter() - t
    for line in data.describe():
        say(line)
    objective = MaskedLanguageModeling(model, data, cfg, arguments.mask_prob, arguments.mask)
    if objective.head_note:
        say(objective.head_note)
    if objective.unigram is not None:
        u = objective.unigram
        say(f"unigram baseline on the held-out masks: perplexity {u['perplexity']:.1f}, top-1 {u['top1']:.3f}, "
            f"top-5 {u['top5']:.3f} ({u['masked_tokens']:,} masked tokens)")

    # Every argument, defaults included, so a resumed run never depends on what a later version's defaults are.
    recorded = {**arguments.to_record(), **cfg.to_dict()}
    record = {"command": command_line(), "arguments": recorded, "prepare_s": round(prepare_s, 3)}
    trainer = Trainer(model, objective=objective, config=cfg, output_dir=output_dir, progress=progress, record=record)
    if output_dir is not None and not resume:
        def start_run_folder() -> None:
            trainer.prepare_output(resume=False)  # refuses a folder holding another run before anything is written
            if arguments.given_by_name():  # what `bertkit pretrain --resume` reuses
                write_json(output_dir / ARGUMENTS, recorded)

        distributed.on_main(start_run_folder)
    return trainer.fit(resume=resume)


PRETRAIN = Command("pretrain", (PretrainArguments, TrainConfig), pretrain_run)
