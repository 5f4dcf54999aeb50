"""The tasks built on a loaded Model: fill-mask, sentence and word-in-context embeddings, classification."""
from bertkit.tasks.classify import predict
from bertkit.tasks.embeddings import embed
from bertkit.tasks.fill_mask import fill_mask
from bertkit.tasks.word_similarity import SimilarityMatrix, WordSimilarity, WordVector, similarity_matrix, word_similarity

__all__ = [
    "SimilarityMatrix", "WordSimilarity", "WordVector", "embed", "fill_mask", "predict", "similarity_matrix",
    "word_similarity",
]
