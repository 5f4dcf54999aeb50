"""`bertkit export onnx`: write a model for ONNX Runtime, optimum and sentence-transformers' ONNX backend."""
from __future__ import annotations

import argparse

from bertkit.cli.common import add_json_arg, emit


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a model for another runtime (ONNX)")
    formats = p.add_subparsers(dest="format", metavar="FORMAT", required=True)
    q = formats.add_parser("onnx", help="ONNX graph + config + tokenizer, checked against bertkit",
                           description="Write DIR/onnx/model.onnx (inputs input_ids, attention_mask, token_type_ids; "
                                       "outputs last_hidden_state and sentence_embedding or logits) beside config.json "
                                       "and the tokenizer, then check it against bertkit with ONNX Runtime.")
    q.add_argument("--model", "-m", default="minilm", help="bundled alias, local folder or hub id (default: minilm)")
    q.add_argument("--output", "-o", required=True, metavar="DIR", help="the folder to write")
    q.add_argument("--int8", action="store_true",
                   help="also write ONNX Runtime's int8 graph (onnx/model_quantized.onnx) and its measured agreement")
    add_json_arg(q)
    q.set_defaults(func=export_onnx)


def export_onnx(args: argparse.Namespace) -> int:
    from bertkit.export.onnx import require_onnx
    from bertkit.model import load

    require_onnx()  # before loading any weights
    report = load(args.model, device="cpu", precision="fp32").export_onnx(args.output, int8=args.int8)
    emit(args, report, human)
    return 0


def human(report: dict) -> str:
    lines = [f"wrote {report['onnx']} (outputs {', '.join(report['outputs'])}) and its config and tokenizer"]
    for key, graph in (("check", "fp32"), ("check_int8", "int8")):
        if key in report:
            lines.append(f"{graph} graph vs bertkit: {describe(report[key])}")
    return "\n".join(lines)


def describe(check: dict) -> str:
    said = f"{check['texts']} texts, token states max |diff| {check['max_abs_diff_states']:.2e}"
    if "label_agreement" in check:
        said += f", labels equal {check['label_agreement']:.1%}"
    else:
        said += f", lowest sentence cosine {check['min_cosine']:.4f}"
    return said + ("" if check["passes_gate"] else " (BELOW the quality gate: use the fp32 graph where numbers matter)")
