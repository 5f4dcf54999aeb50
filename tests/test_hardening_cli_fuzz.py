"""Fuzzing the command line: generated bad numbers, paths, files and texts in every command's flags.

Whatever it is given, the CLI exits 0 or 2, never prints a traceback, says an error in one `error:`
line, and under --json prints strict JSON (no NaN or Infinity, which standard parsers refuse).
Commands and flags are read from `bertkit.cli.build_parser()`; most examples run in-process
(`bertkit.cli.main`), a few through a real `python -m bertkit`.
"""
from __future__ import annotations

import argparse
import codecs
import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bertkit.cli import main
from bertkit.serve import runner
from helpers import COMMAND_BASE, POSITIONAL_TEXTS, cli_commands

EXAMPLES = int(os.environ.get("BERTKIT_CLI_FUZZ_EXAMPLES", "80"))
# Left out: flags that start other programs or take minutes by design (the benchmarks, torchrun processes, compiling).
SKIP_COMMANDS = {"bench"}
SKIP_FLAGS = {"--nproc", "--compile", "--help", "--version"}
# After the generated flags, so they win: every training run stops after one step on a few rows.
LAST = {"train": ["--max-steps", "1", "--limit", "16", "--no-progress", "--overwrite"]}


COMMANDS = {name: p for name, p in cli_commands().items() if name not in SKIP_COMMANDS}


def refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_mlm_dir, tiny_cls_dir) -> dict:
    root = tmp_path_factory.mktemp("cli_fuzz")
    (root / "data.csv").write_text("text,label\n" + "".join(f"the bank {i},{'ab'[i % 2]}\n" for i in range(16)))
    (root / "lines.txt").write_text("a [MASK] bank\nthe bank [MASK]\n")
    (root / "bin.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00" + bytes(range(256)))
    (root / "u16.txt").write_bytes(codecs.BOM_UTF16_LE + "a\nb\n".encode("utf-16-le"))
    (root / "nan.jsonl").write_text('{"text": NaN}\n{"text": "ok"}\n')
    (root / "empty.csv").write_text("")
    (root / "header.csv").write_text("text,label\n")
    (root / "dir").mkdir()
    (root / "file").write_text("x")
    paths = [root / n for n in ("data.csv", "lines.txt", "bin.csv", "u16.txt", "nan.jsonl", "empty.csv", "header.csv",
                                "dir", "nope.csv", "out.npy", "out.csv", "out.png", "out.parquet", "outdir")]
    paths += [root / "file" / "x.csv", root / "dir" / "plot.png", Path("/proc/bertkit-fuzz.csv")]
    return {"root": root, "paths": [str(p) for p in paths], "mlm": str(tiny_mlm_dir), "cls": str(tiny_cls_dir),
            "csv": str(root / "data.csv"), "run": str(root / "run")}


NUMBERS = ["-1", "0", "1", "2", "3", "-0", "0.5", "1e-9", "1e308", "-1e308", "nan", "inf", "-inf", "1e3", "0x10",
           "99999999999999999999", "-99999999999999999999", "", " ", "abc", "٣", "1_000"]
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)


def _values(action: argparse.Action, paths: list[str]) -> st.SearchStrategy:
    """What to put after one flag: nasty numbers, paths, choices or texts, by what the flag declares."""
    kind = getattr(action.type, "__name__", "") if action.type else ""
    if action.choices:
        return st.sampled_from([*map(str, action.choices), "", "nope"])
    if kind in ("int", "float") or "number" in kind:
        return st.one_of(st.sampled_from(NUMBERS), st.integers(-10**6, 10**6).map(str))
    if action.dest == "device":
        return st.sampled_from(["cpu", "cuda", "cuda:7", "mps", "nope", "", "auto"])
    return st.one_of(st.sampled_from(paths), TEXT, st.sampled_from(["[MASK]", "bank", "a,b", "-", "--json"]))


@st.composite
def command_lines(draw, files: dict) -> list[str]:
    name = draw(st.sampled_from(sorted(COMMANDS)))
    parser = COMMANDS[name]
    actions = [a for a in parser._actions
               if a.option_strings and not isinstance(a, argparse._HelpAction) and a.option_strings[0] not in SKIP_FLAGS]
    base = [part.format(**files) for part in COMMAND_BASE.get(name, [])]
    argv = [name, *base]
    for action in draw(st.lists(st.sampled_from(actions), max_size=3, unique_by=lambda a: a.dest)) if actions else []:
        flag = action.option_strings[0]
        if flag in base:
            i = base.index(flag)
            argv = [name, *base[:i], *base[i + 2:]]
            base = argv[1:]
        if flag == "--input":
            argv = [a for a in argv if a not in POSITIONAL_TEXTS]
        if action.nargs == 0:
            argv.append(flag)
        else:
            argv += [flag, draw(_values(action, files["paths"]))]
    if draw(st.booleans()) and any("--json" in a.option_strings for a in parser._actions):
        argv.append("--json")
    return argv + LAST.get(name, [])


def run_in_process(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # --help and --version exit through argparse
            code = e.code
    return code, out.getvalue(), err.getvalue()


def check(argv: list[str], code: int, out: str, err: str) -> None:
    assert code in (0, 2), (argv, code, err[-3000:])
    assert "Traceback" not in err, (argv, err[-3000:])
    if code == 2:
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and err.rstrip("\n").splitlines()[-1] == errors[0], (argv, err)
    if code == 0 and "--json" in argv and out.strip():
        json.loads(out, parse_constant=refuse_constant)


def test_fuzz_every_command_in_process(files, monkeypatch):
    class Started:
        started = True

    def run(app, sock, *args, **kwargs):  # `bertkit serve` up to uvicorn: settings, binding, the app
        sock.close()
        return Started()

    monkeypatch.setattr(runner, "run", run)
    monkeypatch.delenv("BERTKIT_API_KEY", raising=False)

    @given(argv=command_lines(files))
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def exercise(argv):
        check(argv, *run_in_process(argv))

    exercise()


@pytest.mark.parametrize("argv", [
    ["tokenize", b"\xff\xfe caf\xe9".decode("utf-8", "surrogateescape"), "--json"],  # bytes that are not UTF-8
    ["tokenize", "--input", "{root}/u16.txt", "--json"],
    ["embed", "--input", "{root}/bin.csv", "--model", "{mlm}"],
    ["similarity", "a bank", "the bank", "--word", "bank", "--plot", "{root}/file/x.png", "--model", "{mlm}"],
    ["serve", "--port", "70000"],
    ["serve", "--graceful-timeout", "-3"],
    ["fill-mask", "--top-k", "nan", "a [MASK]", "--model", "{mlm}"],
    [],
])
def test_a_real_process_answers_in_one_line(files, argv):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    argv = [a.format(**files) for a in argv]
    proc = subprocess.run([sys.executable, "-m", "bertkit", *argv], capture_output=True, env=env, timeout=300)
    out, err = proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")
    if argv:
        check(argv, proc.returncode, out, err)
        assert proc.returncode == 2
    else:  # no command: usage on stderr, status 2, as for a wrong one
        assert proc.returncode == 2 and "usage: bertkit" in err and "Traceback" not in err


@pytest.mark.parametrize("value", ["-1", "-4096", "0"])
def test_a_token_budget_below_one_is_one_line(files, value):
    argv = ["embed", "a bank", "--model", files["mlm"], "--batch-tokens", value]
    code, out, err = run_in_process(argv)
    check(argv, code, out, err)
    assert code == 2 and out == ""
    assert err == f"error: --batch-tokens must be a positive whole number of tokens, not {value}\n"


def test_a_flag_that_takes_one_value_or_one_per_text_works_when_given(files):
    argv = ["similarity", "a bank", "the bank", "--word", "bank", "--occurrence", "0", "--model", files["mlm"]]
    code, out, err = run_in_process(argv)
    check(argv, code, out, err)
    assert code == 0


@pytest.mark.parametrize("device", ["meta", "xla"])
def test_a_device_torch_knows_but_bertkit_cannot_use_is_one_line(files, device):
    argv = ["embed", "a bank", "--model", files["mlm"], "--device", device]
    code, out, err = run_in_process(argv)
    check(argv, code, out, err)
    assert code == 2 and out == ""
    assert err.startswith(f"error: unknown device '{device}'; use cpu, cuda") and err.count("\n") == 1


def test_json_output_never_holds_nan(capsys):
    from bertkit.cli.common import emit

    emit(argparse.Namespace(json=True), {"score": 0.5})
    assert json.loads(capsys.readouterr().out) == {"score": 0.5}
    with pytest.raises(Exception, match="NaN or infinite"):
        emit(argparse.Namespace(json=True), {"score": float("nan")})
