"""Vector search over embedded corpora: an index folder of Parquet rows, exact or HNSW search, optional quantised storage."""
from bertkit.index.ann import EXACT_BELOW
from bertkit.index.quantize import RESCORE_FACTOR, STORAGES
from bertkit.index.store import IndexManifest, content_hash
from bertkit.index.vector_index import Hit, VectorIndex

__all__ = ["EXACT_BELOW", "RESCORE_FACTOR", "STORAGES", "Hit", "IndexManifest", "VectorIndex", "content_hash"]
