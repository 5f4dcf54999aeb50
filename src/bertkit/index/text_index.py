"""`Index`: an index folder opened by path and searched with text, embedding queries with the index's own model."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from bertkit.index.cache import open_index
from bertkit.index.model_check import check_model

if TYPE_CHECKING:
    from bertkit.model import Model


class Index:
    """A built index and the model that reads its queries: `Index.open(path).search(queries, top_k)`.

    A thin handle over `model.search` (the search task), so its answers, options and errors are
    the task's: `[{id, score, text, metadata}]` per query, best first.
    """

    def __init__(self, folder: str | os.PathLike, model: "Model") -> None:
        self.folder = Path(folder)
        self.model = model

    @classmethod
    def open(cls, folder: str | os.PathLike, model: "Model | str | os.PathLike | None" = None,
             device: str | None = None) -> "Index":
        """The index in `folder`, with `model` (default: the model it was built with, loaded on `device`).

        A model other than the index's is refused here, before any query is embedded.
        """
        from bertkit.model import Model, load

        manifest = open_index(str(folder)).manifest
        if not isinstance(model, Model):
            model = load(manifest.model if model is None else model, device)
        check_model(manifest, model)
        return cls(folder, model)

    def search(self, queries: str | Sequence[str], top_k: int = 10, **options: Any) -> list[list[dict]]:
        """Per query, the `top_k` nearest rows; `options` are the search task's (exact, rerank, candidates, long...)."""
        return self.model.search(str(self.folder), queries, top_k=top_k, **options)

    def info(self) -> dict:
        """What the index holds and how it searches (as `bertkit index info --json`)."""
        return open_index(str(self.folder)).info()

    def __len__(self) -> int:
        return len(open_index(str(self.folder)))

    def __repr__(self) -> str:
        return f"Index({str(self.folder)!r}, rows={len(self)}, model={self.model.source!r})"
