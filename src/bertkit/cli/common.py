"""Helpers every sub-command shares: model and device flags, reading texts, printing JSON or text."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable

from bertkit.errors import BertkitError
from bertkit.options import flag_name
from bertkit.terminal import safe_json, safe_lines, shown

DEFAULT_MODEL = "minilm"  # what a command that needs no particular head loads without --model

# Flags naming a plot a command draws, whatever its other flags: dest -> what it holds. They are checked once, as
# parsed, before any work (a heatmap is drawn after the model ran; a bad path must not wait for that).
PLOT_FLAGS = {"plot": "a PNG plot"}


def check_arguments(args: argparse.Namespace) -> None:
    """What every command's arguments must be, checked once as parsed: UTF-8 text, and writable PLOT_FLAGS."""
    from bertkit.paths import output_file
    from bertkit.plots import PLOT_FORMATS

    for dest, value in vars(args).items():
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str) and not _utf8(text):
                # Bytes that are not UTF-8 reach Python as lone surrogates, which no file, table or JSON can hold.
                shown = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
                where = flag_name(dest) if dest != "texts" else "a text argument"
                raise BertkitError(f"{where} is not UTF-8 text ('{shown[:40]}'); pass UTF-8 (check the terminal's "
                                   "or the calling script's encoding)")
    for dest, what in PLOT_FLAGS.items():
        if getattr(args, dest, None) is not None:
            output_file(getattr(args, dest), PLOT_FORMATS, what, param=dest)


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def add_model_args(parser: argparse.ArgumentParser, default: str | None = DEFAULT_MODEL, runs_network: bool = True,
                   required: bool = True) -> None:
    shown = f" (default: {default})" if default else "" if required else " (default: the one the index was built with)"
    parser.add_argument("--model", "-m", default=default, required=default is None and required,
                        help="bundled alias, local folder or hub id" + shown)
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N, mps (default: best available)")
    if runs_network:
        parser.add_argument("--compile", action="store_true",
                            help="torch.compile the network first: ~20%% faster on CUDA for long runs, no gain on the CPU")
        add_precision_arg(parser)


def add_precision_arg(parser: argparse.ArgumentParser) -> None:
    from bertkit.precision import PRECISIONS

    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="arithmetic of inference: fp32 is exact; bf16 and int8 are faster where the hardware has "
                             "the instructions, within a measured quality gate, and refused where it has not "
                             "(default: fp32 on the CPU, bf16 autocast on CUDA)")


def text_column_help() -> str:
    from bertkit.data import TEXT_COLUMNS

    return f"the column holding the texts in a table input (default: {', '.join(TEXT_COLUMNS)}, or the only column)"


def add_json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def load_model(args: argparse.Namespace):
    from bertkit.model import load

    model = load(args.model, device=args.device, precision=getattr(args, "precision", None))
    args.ran_precision = model.precision  # emit adds it to every JSON answer
    return model.compile() if getattr(args, "compile", False) else model


def emit(args: argparse.Namespace, payload: Any, human: Callable[[Any], str] | None = None) -> None:
    """Print `payload` as JSON under --json, otherwise the human rendering; either way nothing in it can steer the
    terminal (bertkit.terminal: control characters escaped, JSON values unchanged). An answer from a model says the
    precision it ran at: a `precision` key in an object, or in each row of a list of them (the shape stays)."""
    ran = getattr(args, "ran_precision", None)
    if ran and isinstance(payload, dict):
        payload = {**payload, "precision": ran}
    elif ran and isinstance(payload, list) and payload and all(isinstance(row, dict) for row in payload):
        payload = [{**row, "precision": ran} for row in payload]
    if getattr(args, "json", False) or human is None:
        print(safe_json(to_json(payload, indent=None if getattr(args, "compact", False) else 2)), flush=True)
    else:
        print(safe_lines(human(payload)), flush=True)


def say(kind: str, message: str) -> None:
    """`error: ...` or `warning: ...` on stderr, always one line: a message may quote what the user typed, newlines
    and all, so control characters are shown escaped (a path 'a\\nb' stays one line)."""
    print(f"{kind}: {shown(message)}", file=sys.stderr)


def to_json(payload: Any, indent: int | None = 2) -> str:
    """Strict JSON: NaN and Infinity are not JSON, and a parser that follows the standard refuses them."""
    try:
        return json.dumps(payload, ensure_ascii=False, indent=indent, allow_nan=False)
    except ValueError as e:
        if "JSON compliant" not in str(e):
            raise
        raise BertkitError("the answer holds a NaN or infinite number, which JSON cannot carry; the checkpoint's "
                           "weights may be broken (check them with `bertkit info`)") from None


def input_frame(args: argparse.Namespace) -> tuple[Any, str]:
    """The inputs as a table and its text column: TEXT arguments, or --input FILE (any supported format), or '-' (stdin lines)."""
    import pandas as pd

    from bertkit.tasks.tables import text_column

    texts = list(getattr(args, "texts", None) or [])
    source = getattr(args, "input", None)
    if source:
        if texts:
            raise BertkitError("give texts as arguments or with --input FILE, not both")
        from bertkit.data import read_inputs

        frame = read_inputs(source)
        return frame, text_column(frame, getattr(args, "text_column", None))
    if not texts:
        raise BertkitError("no texts given; pass them as arguments or with --input FILE")
    return pd.DataFrame({"text": texts}), "text"

