"""bertkit: BERT-family encoders made easy, unpadded and offline-first."""
from bertkit.batching import Batch, group_by_budget, pack
from bertkit.checkpoint import bundled_models
from bertkit.config import BertConfig
from bertkit.errors import BertkitError
from bertkit.index.text_index import Index
from bertkit.model import Model, load
from bertkit.modeling import BertNetwork
from bertkit.tokenizer import Encoding, Tokenizer
from bertkit.version import __version__

__all__ = [
    "Batch", "BertConfig", "BertNetwork", "BertkitError", "Encoding", "Index", "Model", "Tokenizer",
    "bundled_models", "group_by_budget", "load", "pack", "__version__",
]
from bertkit.train import Trainer, TrainConfig, TrainResult, evaluate_model, finetune  # noqa: E402
__all__ += ["Trainer", "TrainConfig", "TrainResult", "evaluate_model", "finetune"]
from bertkit.pretrain.recipe import pretrain_mlm  # noqa: E402
__all__ += ["pretrain_mlm"]
from bertkit.tasks import SimilarityMatrix, WordSimilarity, WordVector  # noqa: E402
__all__ += ["SimilarityMatrix", "WordSimilarity", "WordVector"]
