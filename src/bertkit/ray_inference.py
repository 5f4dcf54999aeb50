"""Multi-node corpus inference with Ray Data: our batched model mapped over a Ray dataset (Ray is optional)."""
from __future__ import annotations

from typing import Any

import numpy as np

from bertkit.data import text_column as pick_text_column
from bertkit.errors import BertkitError


def _require_ray():
    try:
        import ray  # noqa: F401
        import ray.data  # noqa: F401
    except ImportError:
        raise BertkitError("Ray is not installed; `pip install 'ray[data]'` (it is optional), or use torchrun sharding") from None
    return ray


class _ModelActor:
    """One model per Ray actor, loaded once; each call handles one batch of rows."""

    def __init__(self, model: str, task: str, text_column: str, device: str | None, options: dict | None = None,
                 compile: bool = False, precision: str | None = None):
        import bertkit

        self.model = bertkit.load(model, device=device, precision=precision)
        if compile:
            self.model.compile()
        self.task = task
        self.text_column = text_column
        self.options = dict(options or {})

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        import pandas as pd

        from bertkit.tasks import get
        from bertkit.tasks.tables import run_table

        options = dict(self.options)
        batch_tokens = options.pop("batch_tokens", None)
        frame = pd.DataFrame({"text": list(batch[self.text_column])})
        table, _, _ = run_table(get(self.task), self.model, frame, "text", None, batch_tokens, **options)
        added = {name: np.array(table[name].tolist(), dtype=object) for name in table.columns if name != "text"}
        return {**batch, **added}


def map_dataset(
    dataset,
    task: str = "embed",
    model: str = "minilm",
    text_column: str | None = None,
    batch_size: int = 512,
    concurrency: int = 1,
    num_gpus: float = 0,
    device: str | None = None,
    options: dict | None = None,
    compile: bool = False,
    precision: str | None = None,
):
    """Return `dataset` with the task's result columns added (embed: `embedding`; predict: `predicted_label`, scores),
    plus `error`, computed by `concurrency` model actors.

    The texts are in `text_column`, else the column every other path picks (bertkit.data.text_column:
    one of bertkit.data.TEXT_COLUMNS, or the only column). Each actor holds one model; Ray places
    actors on the cluster's nodes (give `num_gpus=1` for one GPU per actor). Rows keep every input
    column, so ids travel with their results. `compile` runs `Model.compile()` in each actor; `precision` is `bertkit.load`'s.
    """
    from bertkit.tasks import tasks

    _require_ray()
    names = [t.name for t in tasks() if t.table]
    if task not in names:
        raise BertkitError(f"unknown task '{task}'; use one of {', '.join(names)}")
    # Picked from the schema before any actor starts, so a wrong name is one line naming the columns.
    column = pick_text_column(dataset.columns(), text_column, where="the Ray dataset")
    return dataset.map_batches(
        _ModelActor,
        fn_constructor_kwargs={"model": model, "task": task, "text_column": column,
                               "device": device or ("cuda" if num_gpus else "cpu"), "options": options,
                               "compile": compile, "precision": precision},
        batch_size=batch_size,
        concurrency=concurrency,
        num_gpus=num_gpus,
        batch_format="numpy",
    )


def run_with_ray(source: str, output: str, task: str = "embed", model: str = "minilm", text_column: str | None = None,
                 concurrency: int = 1, num_gpus: float = 0, address: str | None = None, options: dict | None = None,
                 device: str | None = None, compile: bool = False, precision: str | None = None) -> dict:
    """Read Parquet from `source`, map the model over it, write Parquet to `output` (a folder)."""
    ray = _require_ray()
    if not ray.is_initialized():
        ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
    dataset = ray.data.read_parquet(source)
    mapped = map_dataset(dataset, task, model, text_column, concurrency=concurrency, num_gpus=num_gpus, device=device,
                         options=options, compile=compile, precision=precision)
    mapped.write_parquet(output)
    # Counting `mapped` would run the model a second time; the written files' metadata is enough.
    return {"output": output, "task": task, "rows": ray.data.read_parquet(output).count()}
