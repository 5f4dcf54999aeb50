"""Vector search over embedded corpora: an index folder of Parquet rows, exact or HNSW search, optional quantised storage.

The layer below the tasks: it opens an index, checks that a model makes its vectors, and searches
vectors. Building one from a corpus (which embeds) is the pipeline `bertkit.index_build`.
"""
from bertkit.index.ann import EXACT_BELOW
from bertkit.index.cache import open_index
from bertkit.index.model_check import check_model, model_fingerprint
from bertkit.index.quantize import RESCORE_FACTOR, STORAGE_DEFAULT, STORAGES
from bertkit.index.store import IndexManifest, content_hash
from bertkit.index.vector_index import Hit, VectorIndex

__all__ = ["EXACT_BELOW", "RESCORE_FACTOR", "STORAGES", "STORAGE_DEFAULT", "Hit", "IndexManifest", "VectorIndex",
           "check_model", "content_hash", "model_fingerprint", "open_index"]
