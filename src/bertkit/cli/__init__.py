"""The `bertkit` command line: one thin sub-command per task; the logic lives in the Python API."""
from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from bertkit.cli.common import check_arguments, say
from bertkit.errors import BertkitError, OptionError
from bertkit.options import flag_name

# Each module adds its sub-commands with `register(subparsers)`.
COMMAND_MODULES = ["tasks", "search_eval", "index", "core", "train", "serve", "bench", "export"]


class UsageError(BertkitError):
    """A command line argparse refused (unknown flag, bad value); said in one line like every other error."""


class Parser(argparse.ArgumentParser):
    """argparse, except that a usage mistake is one `error:` line and exit status 2, not usage text and a message,
    and a flag is spelled out: `--epoch 2` is not silently taken as `--epochs` (nor would a new flag change its meaning)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="bertkit", description="BERT-family encoders: tokenize, fill masks, embed, train, predict, serve.")
    from bertkit import __version__

    parser.add_argument("--version", action="version", version=f"bertkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"bertkit.cli.{name}").register(sub)
    return parser


def one_line_warning(message, category, filename, lineno, file=None, line=None):
    # Users need what happened, not where in our source it was noticed.
    say("warning", str(message))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as e:
        say("error", str(e))
        return 2
    if not getattr(args, "func", None):  # no command is a usage error, as argparse treats a wrong one
        parser.print_help(sys.stderr)
        return 2
    warnings.showwarning = one_line_warning
    try:
        check_arguments(args)
        return int(args.func(args) or 0)
    except BrokenPipeError:  # `bertkit ... | head` closed the pipe: not an error
        return 0
    except OptionError as e:  # the library names its parameter; a CLI user typed a flag
        say("error", e.named(flag_name(e.param)))
        return 2
    except BertkitError as e:
        say("error", str(e))
        return 2
    except OSError as e:  # a file we were told to read or write failed under us (disk full, permissions, ...)
        where = f" {e.filename!r}" if getattr(e, "filename", None) else ""
        say("error", f"cannot access{where}: {e.strerror or e}")
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
