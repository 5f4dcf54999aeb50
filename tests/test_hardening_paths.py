"""Paths: every command, fed every kind of bad path in every flag that takes one, answers one `error:` line (exit 2) or works.

Commands and their flags are read from `bertkit.cli.build_parser()`, so a new command or a new path
flag is covered without touching this file. A refused path leaves every file as it was.
"""
from __future__ import annotations

import argparse
import codecs
import re
from pathlib import Path

import pytest

from bertkit.cli import main
from helpers import COMMAND_BASE, POSITIONAL_TEXTS, cli_commands

# Flags that take a path by name, and any whose help says it reads or writes one.
PATH_DESTS = {"input", "data", "eval_data", "test_data", "output", "output_dir", "plot", "resume", "model"}
SAYS_PATH = re.compile(r"\b(file|folder|path)\b", re.IGNORECASE)
def _path_flags(parser: argparse.ArgumentParser) -> list[str]:
    return [a.option_strings[0] for a in parser._actions
            if a.option_strings and a.nargs is None and a.const is None and not isinstance(a, argparse._HelpAction)
            and (a.dest in PATH_DESTS or SAYS_PATH.search(a.help or ""))]


CASES = [(name, flag) for name, parser in cli_commands().items() if name != "bench" for flag in _path_flags(parser)]
KINDS = ["missing", "folder", "binary", "utf16", "empty", "under-a-file", "under-a-file.png", "read-only.csv",
         "read-only.png", "read-only.npy", "read-only-folder"]


@pytest.fixture
def place(tmp_path, tiny_mlm_dir, tiny_cls_dir, monkeypatch) -> dict:
    """Fresh files per case (a case that works may create what the next one expects missing); no server ever runs."""
    from bertkit.serve import runner

    class Started:
        started = True

    def run(app, sock, *args, **kwargs):
        sock.close()
        return Started()

    monkeypatch.setattr(runner, "run", run)
    root = tmp_path
    (root / "file").write_text("a plain file\n")
    (root / "bin.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (root / "u16.txt").write_bytes(codecs.BOM_UTF16_LE + "text\nhello\n".encode("utf-16-le"))
    (root / "empty.txt").write_bytes(b"")
    (root / "dir").mkdir()
    (root / "data.csv").write_text("text,label\n" + "".join(f"a bank number {i},{'no yes'.split()[i % 2]}\n"
                                                             for i in range(16)))
    kinds = {
        "missing": root / "nope" / "x.csv", "folder": root / "dir", "binary": root / "bin.csv",
        "utf16": root / "u16.txt", "empty": root / "empty.txt", "under-a-file": root / "file" / "x.csv",
        "under-a-file.png": root / "file" / "x.png",
        # Nothing can be created in /proc or /sys, not even by root: read-only places anywhere.
        "read-only.csv": Path("/proc/bertkit-test.csv"), "read-only.png": Path("/proc/bertkit-test.png"),
        "read-only.npy": Path("/sys/bertkit-test.npy"), "read-only-folder": Path("/proc/bertkit-test"),
    }
    return {"root": root, "kinds": kinds, "mlm": str(tiny_mlm_dir), "cls": str(tiny_cls_dir),
            "csv": str(root / "data.csv"), "run": str(root / "run")}


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in root.iterdir() if p.is_file()}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("command, flag", CASES, ids=[f"{c} {f}" for c, f in CASES])
def test_every_command_answers_a_bad_path_in_one_line(capsys, place, command, flag, kind):
    base = [part.format(**place) for part in COMMAND_BASE.get(command, [])]
    if flag in base:  # the flag under test replaces the base's value for it
        i = base.index(flag)
        del base[i:i + 2]
    if flag == "--input":  # texts come from the file instead
        base = [b for b in base if b not in POSITIONAL_TEXTS]
    before = _snapshot(place["root"])
    code = main([command, *base, flag, str(place["kinds"][kind])])
    out, err = capsys.readouterr()
    after = _snapshot(place["root"])
    assert "Traceback" not in err and code in (0, 2), (code, err[-2000:])
    if code == 2:
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and err.rstrip("\n").splitlines()[-1] == errors[0], err
        assert after == before, "a refused path changed a file that was there"


def test_the_enumeration_sees_the_path_flags_of_every_command():
    flags = dict.fromkeys(name for name, _ in CASES)
    found = {name: set(_path_flags(parser)) for name, parser in cli_commands().items()}
    assert {"--input", "--output"} <= found["embed"] and "--plot" in found["similarity"]
    assert {"--data", "--output"} <= found["train"] and "--output-dir" in found["evaluate"]
    assert set(flags) >= {"tokenize", "fill-mask", "embed", "similarity", "predict", "train", "evaluate", "serve"}


def test_a_bad_plot_path_is_refused_before_any_work(capsys, place, monkeypatch):
    from bertkit.tasks import get

    ran = []
    monkeypatch.setattr(type(get("similarity")), "step", lambda *a: ran.append(1) or [])
    for bad, says in [("x.txt", "ending in .png"), (str(place["root"] / "file" / "x.png"), "which is a file"),
                      (str(place["root"] / "dir"), "ending in .png"), ("/proc/bertkit-test.png", "cannot write")]:
        code = main(["similarity", "a bank", "the bank", "--word", "bank", "--model", place["mlm"], "--plot", bad])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: --plot ") and says in err, err
    assert ran == []
