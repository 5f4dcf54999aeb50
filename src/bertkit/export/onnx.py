"""ONNX export: a folder that ONNX Runtime, optimum and sentence-transformers' ONNX backend read, checked against bertkit.

Layout: `DIR/onnx/model.onnx` (and `DIR/onnx/model_quantized.onnx` with int8) beside `config.json`, the tokenizer
files and, for embedding models, the sentence-transformers module configs. The graph is traced by torch.export
(torch.onnx's default, maintained exporter; the TorchScript one is deprecated) from `PaddedNetwork`, which runs
modeling.py's own modules on padded inputs.
"""
from __future__ import annotations

import logging
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from bertkit.errors import BertkitError
from bertkit.export.padded import INPUTS, PaddedNetwork
from bertkit.precision import cosines, gate_failures

if TYPE_CHECKING:
    from bertkit.model import Model

ONNX_FILE = "onnx/model.onnx"
INT8_FILE = "onnx/model_quantized.onnx"  # optimum's name for a quantized graph; sentence-transformers loads it by file_name
OPSET = 18
INSTALL = "pip install 'bertkit[export]'"
# The sentence-transformers files that say how its ONNX backend pools and normalises.
SENTENCE_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")


def require_onnx() -> None:
    """onnx and onnxruntime are an optional extra: say how to get them, in one line, before any work."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise BertkitError(f"ONNX export needs onnx, onnxscript and onnxruntime ({e.name} is missing): {INSTALL}") from None


def exportable(model: "Model") -> None:
    """Refuse, in one line, a model whose head the export does not cover."""
    if model.network.mlm_head is not None:
        raise BertkitError("this model has a masked-LM head, which the ONNX export does not cover (it writes encoders, "
                           "embedding models and sequence classifiers); export a checkpoint without it")
    if model.network.inference_only:
        raise BertkitError(f"export needs the fp32 weights: load the model with precision fp32 ({model.precision} "
                           "rounded them)")


def export_onnx(model: "Model", directory: str | Path, int8: bool = False) -> dict:
    """Write `model` as ONNX into `directory` (see the module docstring); returns what was written and how well the
    graphs agree with bertkit on `check_inputs()`: the fp32 graph within float32 arithmetic, the int8 graph
    measured against the quality gate."""
    require_onnx()
    exportable(model)
    from bertkit.tasks.embed import EmbedOptions, settings

    folder = Path(directory)
    (folder / "onnx").mkdir(parents=True, exist_ok=True)
    network = model.network if model.device.type == "cpu" else _cpu_copy(model.network)
    pooling, normalize = settings(model, EmbedOptions())
    graph = PaddedNetwork(network, pooling, normalize).eval()
    _trace(graph, folder / ONNX_FILE)
    _write_companions(model, folder)
    report = {"output": str(folder), "onnx": str(folder / ONNX_FILE), "inputs": list(INPUTS),
              "outputs": graph.output_names, "opset": OPSET}
    texts, pairs = check_inputs()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*were truncated")  # the long check text is cut on purpose
        report["check"] = agreement(model, folder / ONNX_FILE, texts, pairs)
        if int8:
            quantize_graph(folder / ONNX_FILE, folder / INT8_FILE)
            report["onnx_int8"] = str(folder / INT8_FILE)
            report["check_int8"] = agreement(model, folder / INT8_FILE, texts, pairs)
    return report


def _cpu_copy(network: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(network).cpu()


def _trace(graph: PaddedNetwork, path: Path) -> None:
    ids = torch.tensor([[101, 7592, 2088, 102, 0], [101, 2023, 2003, 1037, 102]])
    example = (ids, (ids != 0).long(), torch.zeros_like(ids))
    batch, length = torch.export.Dim("batch"), torch.export.Dim("sequence")
    dims = {name: {0: batch, 1: length} for name in INPUTS}
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the exporter logs every torchvision op it skips and what it optimised
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, example, str(path), input_names=list(INPUTS), output_names=graph.output_names,
                          dynamic_shapes=dims, opset_version=OPSET, dynamo=True, external_data=False, verbose=False)
    quiet.setLevel(level)


def _write_companions(model: "Model", folder: Path) -> None:
    """config.json, the tokenizer files and the sentence-transformers configs, as the readers expect them."""
    from bertkit.checkpoint import architectures

    model.config.save(folder, architectures=architectures(model.network))
    model.tokenizer.save(folder)
    source = model.folder
    if source is None or model.network.classifier is not None:
        return
    for name in SENTENCE_FILES:
        if (source / name).is_file():
            shutil.copy(source / name, folder / name)
    for sub in source.glob("[0-9]_*"):  # 1_Pooling, 2_Normalize: sentence-transformers' module folders
        if sub.is_dir():
            shutil.copytree(sub, folder / sub.name, dirs_exist_ok=True)


def check_inputs() -> tuple[list[str], list[tuple[str, str]]]:
    """What an export is checked on: bertkit's built-in calibration sentences, one text past most models' limit (its
    truncation and late positions), and a few sentence pairs (segment ids)."""
    from bertkit.precision import CALIBRATION_TEXTS

    texts = [*CALIBRATION_TEXTS, " ".join(CALIBRATION_TEXTS * 4)]
    pairs = [(CALIBRATION_TEXTS[1], CALIBRATION_TEXTS[0]), (CALIBRATION_TEXTS[20], CALIBRATION_TEXTS[17]),
             (CALIBRATION_TEXTS[13], CALIBRATION_TEXTS[12])]
    return texts, pairs


def quantize_graph(source: Path, target: Path) -> None:
    """ONNX Runtime's dynamic int8 quantization of the MatMuls: int8 weights, one scale per output channel."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer advises pre-processing on the root logger at every call
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=["MatMul"])
    root.setLevel(level)


def session(path: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session with all graph optimisations."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def padded_inputs(encodings: Sequence) -> dict[str, np.ndarray]:
    """Token encodings right-padded into the graph's three int64 inputs, as ONNX consumers feed them."""
    L = max(len(e.ids) for e in encodings)
    out = {name: np.zeros((len(encodings), L), dtype=np.int64) for name in INPUTS}
    for i, e in enumerate(encodings):
        n = len(e.ids)
        out["input_ids"][i, :n] = e.ids
        out["attention_mask"][i, :n] = 1
        out["token_type_ids"][i, :n] = e.type_ids
    return out


def agreement(model: "Model", path: Path, texts: Sequence[str], pairs: Sequence[tuple[str, str]] = ()) -> dict:
    """The graph at `path` against bertkit on the same inputs (`texts` alone, then `pairs`): the token states' largest
    |difference| (and their scale), then the classifier's logits and labels, or the sentence vectors' lowest cosine."""
    from bertkit.tasks.embed import embed_max_length

    sess = session(path)
    classifier = model.network.classifier is not None
    inputs = [model.tokenize(list(texts), max_length=model.max_length)]
    if pairs:
        inputs.append(model.tokenize([a for a, _ in pairs], [b for _, b in pairs], max_length=model.max_length))
    diff, scale, theirs, ours = 0.0, 0.0, [], []
    for encodings in inputs:
        states, second = sess.run(None, padded_inputs(encodings))
        mine = model.run(encodings, lambda b: b.split_per_sequence(model.network(b).float().cpu()))
        for i, (e, h) in enumerate(zip(encodings, mine)):
            diff = max(diff, float(np.abs(states[i, :len(e.ids)] - h.numpy()).max()))
            scale = max(scale, float(h.abs().max()))
        if classifier:
            theirs.append(second)
            ours.append(torch.stack(model.run(encodings, lambda b: list(model.network.classify(b).float().cpu()))))
    result = {"texts": len(texts), "pairs": len(pairs), "max_abs_diff_states": diff, "states_scale": scale}
    if classifier:
        logits, reference = np.concatenate(theirs), torch.cat(ours).numpy()
        result["max_abs_diff_logits"] = float(np.abs(logits - reference).max())
        result["label_agreement"] = float((logits.argmax(1) == reference.argmax(1)).mean())
        result["passes_gate"] = not gate_failures(result)
    else:
        _, vectors = sess.run(None, padded_inputs(model.tokenize(list(texts), max_length=embed_max_length(model))))
        embedded = model.embed(list(texts))
        agree = cosines(vectors, embedded)
        result["max_abs_diff_embedding"] = float(np.abs(vectors - embedded).max())
        result["min_cosine"], result["mean_cosine"] = float(agree.min()), float(agree.mean())
        result["passes_gate"] = not gate_failures(result)
    return result
