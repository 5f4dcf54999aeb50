"""Result tables written by extension (.csv, .jsonl, .json, .parquet), their cells as plain JSON values."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bertkit.paths import output_file

if TYPE_CHECKING:
    import pandas as pd

TABLE_OUTPUTS = (".csv", ".jsonl", ".json", ".parquet")


def write_table(table: "pd.DataFrame", path: str | Path, what: str = "results", param: str = "output") -> Path:
    """Write by extension: .csv, .jsonl, .json (a list of objects) or .parquet."""
    path, suffix = output_file(path, TABLE_OUTPUTS, what, param)
    if suffix == ".parquet":
        table.to_parquet(path, index=False)
        return path
    if suffix == ".csv":
        flat = table.copy()
        for name in flat.columns:  # one cell per row: lists joined like the training data's label separator
            if flat[name].map(lambda v: isinstance(v, (list, tuple, np.ndarray))).any():
                flat[name] = [",".join(map(str, v)) if isinstance(v, (list, tuple, np.ndarray)) else v for v in flat[name]]
        flat.to_csv(path, index=False)
        return path
    records = [jsonable(r) for r in table.to_dict(orient="records")]
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False, allow_nan=False) + "\n" for r in records), encoding="utf-8")
    else:
        path.write_text(json.dumps(records, ensure_ascii=False, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return path


def jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars and arrays become numbers and lists; NaN (pandas' missing value) becomes null."""
    import pandas as pd

    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is pd.NA or value is pd.NaT:
        return None
    return value
