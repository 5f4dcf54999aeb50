"""The tasks, each declared once in its own module; Model methods, CLI commands and server endpoints derive from the registry."""
from bertkit.tasks.attention import Attention
from bertkit.tasks.base import Head, Item, Prepared, Task, run_task
from bertkit.tasks.predict import Predict
from bertkit.tasks.embed import Embed
from bertkit.tasks.fill_mask import FillMask
from bertkit.tasks.registry import get, register, tasks, unregister
from bertkit.tasks.rerank import Rerank
from bertkit.tasks.search import Search
from bertkit.tasks.tokenize import Tokenize
from bertkit.tasks.similarity import Similarity, SimilarityMatrix, WordSimilarity, WordVector

for _task in (Tokenize, FillMask, Embed, Similarity, Predict, Rerank, Search, Attention):
    register(_task)

__all__ = [
    "Head", "Item", "Prepared", "SimilarityMatrix", "Task", "WordSimilarity", "WordVector", "get", "register",
    "run_task", "tasks", "unregister",
]
