"""`bertkit tokenize`, `models`, `info`: JSON output, human output, one-line errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from bertkit.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_tokenize_json_is_the_notebook_example(capsys):
    code, out, _ = run(capsys, "tokenize", "Hello, BERT!", "--json")
    assert code == 0
    rows = json.loads(out)
    assert rows[0]["tokens"] == ["[CLS]", "hello", ",", "bert", "!", "[SEP]"]
    assert rows[0]["ids"] == [101, 7592, 1010, 14324, 999, 102]
    assert rows[0]["offsets"][1] == [0, 5] and rows[0]["offsets"][3] == [7, 11]


def test_tokenize_human_and_truncation_report(capsys):
    code, out, _ = run(capsys, "tokenize", "one two three four five", "--max-length", "4")
    assert code == 0
    assert out.splitlines()[0] == "[CLS] one two [SEP]"
    assert "3 tokens cut" in out


def test_models_lists_the_bundled_alias(capsys, minilm_dir):
    code, out, _ = run(capsys, "models", "--json")
    rows = json.loads(out)
    assert code == 0 and rows[0]["alias"] == "minilm" and rows[0]["path"] == str(minilm_dir)


def test_info_reports_config_parameters_and_heads(capsys):
    code, out, _ = run(capsys, "info", "minilm", "--json")
    data = json.loads(out)
    assert code == 0
    assert data["parameters"] == 22_713_216 and data["heads"] == ["pooler"]
    assert data["config"]["num_hidden_layers"] == 6
    code, out, _ = run(capsys, "info", "minilm")
    assert "22,713,216" in out and "pooler" in out


def test_errors_are_one_line_without_traceback(capsys, tmp_path):
    code, out, err = run(capsys, "info", str(tmp_path))
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    code, _, err = run(capsys, "tokenize")
    assert code == 2 and "no texts" in err


def test_console_entry_point_runs_as_a_module():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, "-m", "bertkit", "tokenize", "Hello, BERT!", "--json"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["ids"][1:-1] == [7592, 1010, 14324, 999]


@pytest.mark.parametrize("argv, says", [
    (["train", "--data", "rotten_tomatoes", "--seed", "-1"], "--seed must be at least 0, not -1"),
    (["serve", "--port", "70000"], "--port must be at most 65535, not 70000"),
    (["serve", "--port", "-1"], "--port must be at least 0, not -1"),
    (["serve", "--graceful-timeout", "-3"], "--graceful-timeout must be at least 0"),
    (["tokenize", "x", "--max-length", "0"], "--max-length must be at least 1, not 0"),
])
def test_a_bad_number_is_one_line_before_any_work(capsys, argv, says):
    code, _, err = run(capsys, *argv)
    assert code == 2 and err.startswith("error: ") and says in err and err.count("\n") == 1, err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("command", ["tokenize", "embed", "similarity"])
def test_a_missing_device_is_an_error_even_where_no_network_runs(capsys, command):
    code, _, err = run(capsys, command, "a bank", "the bank", "--word", "bank", "--device", "cuda") \
        if command == "similarity" else run(capsys, command, "a bank", "--device", "cuda")
    assert code == 2 and err.startswith("error: CUDA was asked for") and err.count("\n") == 1


def test_no_command_is_a_usage_error(capsys):
    code, _, err = run(capsys)
    assert code == 2 and err.startswith("usage: bertkit") and "Traceback" not in err


def _leaf_commands(parser, path=()):
    """Every runnable command, nested ones included (`index build`), as (words, parser)."""
    import argparse

    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for action in subs:
        for name, child in action.choices.items():
            yield from _leaf_commands(child, path + (name,))


def test_every_command_has_json():
    from bertkit.cli import build_parser

    commands = dict(_leaf_commands(build_parser()))
    assert ("serve",) in commands and ("index", "build") in commands
    without = [" ".join(words) for words, p in commands.items()
               if "--json" not in {o for a in p._actions for o in a.option_strings}]
    assert without == []
