"""BertConfig: the architecture's hyper-parameters, read from and written to Hugging Face config.json."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertkit.classification import SINGLE_LABEL
from bertkit.errors import BertkitError

SUPPORTED_ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")


@dataclass
class BertConfig:
    """The shape of a BERT encoder and its heads, with the same field names as transformers."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    pad_token_id: int = 0
    classifier_dropout: float | None = None
    # Classification heads: label names by class index, and how the labels are used.
    id2label: dict[int, str] | None = None
    problem_type: str | None = None  # bertkit.classification: SINGLE_LABEL, MULTI_LABEL or REGRESSION
    # Keys we do not use but must write back so a round trip loses nothing.
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise BertkitError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                f"{self.num_attention_heads}; fix config.json"
            )
        if self.hidden_act not in SUPPORTED_ACTIVATIONS:
            raise BertkitError(
                f"hidden_act '{self.hidden_act}' is not supported; use one of {', '.join(SUPPORTED_ACTIVATIONS)}"
            )
        if self.id2label is not None:
            self.id2label = {int(k): str(v) for k, v in self.id2label.items()}

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def num_labels(self) -> int:
        return len(self.id2label) if self.id2label else 0

    @property
    def label_names(self) -> list[str]:
        return [self.id2label[i] for i in range(self.num_labels)] if self.id2label else []

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.label_names)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BertConfig":
        data = dict(data)
        model_type = data.get("model_type", "bert")
        if data.get("position_embedding_type", "absolute") != "absolute":
            raise BertkitError(
                f"position_embedding_type '{data['position_embedding_type']}' is not supported; "
                "bertkit runs BERT checkpoints with absolute positions"
            )
        if model_type != "bert":
            # RoBERTa & co. offset their positions and name tensors differently: refuse rather than give wrong numbers.
            raise BertkitError(f"model_type '{model_type}' is not a BERT-architecture checkpoint; bertkit loads BERT models")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known and k != "label2id"}
        if "num_labels" in extra and kwargs.get("id2label") is None:
            n = int(extra["num_labels"])
            kwargs["id2label"] = {i: f"LABEL_{i}" for i in range(n)}
        extra.pop("num_labels", None)
        return cls(**kwargs, extra=extra)

    @classmethod
    def from_json_file(cls, path: str | Path) -> "BertConfig":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BertkitError(f"{path} does not exist; a model folder needs config.json") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BertkitError(f"{path} is not valid JSON ({e}); restore or re-save the config") from None
        if not isinstance(data, dict):
            raise BertkitError(f"{path} must hold a JSON object; restore or re-save the config")
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        for f in dataclasses.fields(self):
            if f.name in ("extra", "id2label", "problem_type", "classifier_dropout"):
                continue
            out[f.name] = getattr(self, f.name)
        out["model_type"] = "bert"
        out["position_embedding_type"] = "absolute"
        out["classifier_dropout"] = self.classifier_dropout
        if self.id2label:
            out["id2label"] = {str(i): name for i, name in sorted(self.id2label.items())}
            out["label2id"] = self.label2id
            out["problem_type"] = self.problem_type or SINGLE_LABEL
        return out

    def save(self, directory: str | Path, architectures: list[str] | None = None) -> Path:
        data = self.to_dict()
        if architectures:
            data["architectures"] = architectures
        path = Path(directory) / "config.json"
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return path
