"""Helpers every sub-command shares: model and device flags, reading texts, printing JSON or text."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable

from bertkit.errors import BertkitError


def add_model_args(parser: argparse.ArgumentParser, default: str | None = "minilm", runs_network: bool = True) -> None:
    parser.add_argument("--model", "-m", default=default, required=default is None,
                        help="bundled alias, local folder or hub id" + (f" (default: {default})" if default else ""))
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:N, mps (default: best available)")
    if runs_network:
        parser.add_argument("--compile", action="store_true",
                            help="torch.compile the network first: ~20%% faster on CUDA for long runs, no gain on the CPU")


def add_json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def load_model(args: argparse.Namespace):
    from bertkit.model import load

    model = load(args.model, device=args.device)
    return model.compile() if getattr(args, "compile", False) else model


def emit(args: argparse.Namespace, payload: Any, human: Callable[[Any], str] | None = None) -> None:
    """Print `payload` as JSON under --json, otherwise the human rendering."""
    if getattr(args, "json", False) or human is None:
        print(json.dumps(payload, ensure_ascii=False, indent=None if getattr(args, "compact", False) else 2))
    else:
        print(human(payload))


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

