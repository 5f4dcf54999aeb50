"""Every command the README shows is checked here, found afresh in README.md each run.

Shell lines in ```bash / ```console blocks (continuations joined, `$ ` dropped, comments cut) and `bertkit ...` spans
in running text. Each `bertkit` command must parse with the real CLI parser (a renamed flag fails here); the ones
that are cheap on the bundled model run for real in a temporary folder, with training shrunk to a few steps. The
rest are parsed only, each for a reason listed below. Placeholders (DIR, KEY, TEXT...) get real values from
PLACEHOLDERS; an optional `[...]` part is checked with and without each of its `|` alternatives. Commands of one code
block share a folder and run in README order, as a reader would type them. A command this file cannot classify
fails loudly, so a new README command is never silently unchecked.
"""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# Placeholder tokens and the values they stand for (whole tokens only).
PLACEHOLDERS = {"DIR": "runs/rt", "KEY": "test-key", "TEXT...": "A sentence to embed.", "FILE": "texts.txt"}
# Appended to a command that runs for real, so it finishes in seconds (argparse keeps the last value of a flag).
SHRINK = {
    "train": ["--limit", "32", "--eval-limit", "16", "--epochs", "1", "--max-steps", "2", "--batch-size", "8",
              "--max-length", "64", "--no-progress"],
    "evaluate": ["--limit", "32"],
    "pretrain": ["--max-steps", "2", "--batch-size", "4", "--max-length", "32", "--no-progress"],
}
# Commands that parse but are not run here: (test, reason), first match wins.
PARSE_ONLY = [
    (lambda argv: "--nproc" in argv, "launches torchrun with several processes (DDP: test_ddp.py)"),
    (lambda argv: _value(argv, "--device") == "cuda", "needs a CUDA device"),
    (lambda argv: "--ray" in argv, "needs a Ray cluster (test_ray.py)"),
    (lambda argv: argv[:1] == ["serve"], "starts a server (tested over HTTP: test_serve.py, test_serve_process.py)"),
    (lambda argv: "--resume" in argv, "needs a killed run to resume (test_resume.py)"),
    (lambda argv: argv[:1] == ["bench"], "runs minutes of benchmarks (each adapter on the real scripts: test_bench.py)"),
]
# Known failures of commands the README shows, by the command as shown: strict, so a fix turns them red.
XFAIL: dict[str, str] = {}
# Shell lines that are not `bertkit ...`: (pattern, "run" or "skip", reason).
OTHER_COMMANDS = [
    (r"bash dev\.sh demo\b", "run", "dev.sh would (re)create the venv first: its demo module runs here, without the "
                                    "minutes of fine-tuning (demo_finetune: test_trainer.py)"),
    (r"bash dev\.sh test\b", "skip", "the test suite itself"),
    (r"curl ", "skip", "needs `bertkit serve` running (its endpoints are tested over HTTP: test_serve.py)"),
    (r"python -c ", "run", "a Python one-liner, run in its block's folder"),
]
OPTIONAL = re.compile(r"\[(-[^\[\]]*|[^\[\]]*\|[^\[\]]*)\]")  # [--flag X] or [a | b]; never [MASK] or [CLS]
ENV = re.compile(r"^[A-Z][A-Z0-9_]*=")


@dataclass
class Shown:
    line: int  # README line number
    text: str  # the command as shown: continuations joined, `$ ` dropped
    block: int  # which code block (-1: running text)
    output: list[str] = field(default_factory=list)  # what a ```console block shows under it

    @property
    def id(self) -> str:
        return f"L{self.line}:{self.text[:60]}"


def shown_commands(text: str | None = None) -> list[Shown]:
    lines = (README.read_text(encoding="utf-8") if text is None else text).splitlines()
    found: list[Shown] = []
    prose: list[tuple[int, str]] = []
    lang, block, i = None, -1, 0
    while i < len(lines):
        stripped = lines[i].strip()
        if stripped.startswith("```"):
            lang, block = (stripped[3:].strip(), block + 1) if lang is None else (None, block)
            i += 1
            continue
        if lang is None:
            prose.append((i + 1, lines[i]))
        elif lang in ("bash", "sh", "shell", "console"):
            if lang == "console" and not stripped.startswith("$ "):
                if stripped and found and found[-1].block == block:
                    found[-1].output.append(lines[i].rstrip())
                i += 1
                continue
            command, start = stripped.removeprefix("$ "), i
            while command.endswith("\\") and i + 1 < len(lines):
                i += 1
                command = command[:-1].rstrip() + " " + lines[i].strip()
            if command and not command.startswith("#"):
                found.append(Shown(start + 1, command, block))
        i += 1
    # `bertkit ...` spans in running text (they may wrap onto the next line).
    joined = "\n".join(line for _, line in prose)
    starts = [n for n, _ in prose]
    for m in re.finditer(r"`(bertkit [^`]+)`", joined):
        found.append(Shown(starts[joined.count("\n", 0, m.start())], " ".join(m.group(1).split()), -1))
    return found


def _value(argv: list[str], flag: str) -> str | None:
    return argv[argv.index(flag) + 1] if flag in argv[:-1] else None


def variants(text: str) -> list[str]:
    """The command with each optional part left out and with each of its alternatives."""
    m = OPTIONAL.search(text)
    if m is None:
        return [text]
    choices = [""] + [c.strip() for c in m.group(1).split("|")]
    return [v for c in choices for v in variants(text[: m.start()] + c + text[m.end():])]


def split(text: str) -> tuple[dict[str, str], list[str]]:
    """(environment assignments, words) of one shell line, placeholders replaced."""
    words = [PLACEHOLDERS.get(w, w) for w in shlex.split(text, comments=True)]
    env = {}
    for word in words:  # leading `NAME=VALUE`, or one inside `[... | NAME=VALUE]`
        if ENV.match(word):
            name, _, value = word.partition("=")
            env[name] = PLACEHOLDERS.get(value, value)
    return env, [w for w in words if not ENV.match(w)]


def bertkit_argv(words: list[str]) -> tuple[list[str] | None, str | None]:
    """(argv after `bertkit`, why it only parses) or (None, None) for a line that is not a bertkit command."""
    if words[:1] == ["bertkit"]:
        return words[1:], None
    if words[:1] == ["torchrun"] and "bertkit" in words and words[words.index("bertkit") - 1] == "-m":
        return words[words.index("bertkit") + 1:], "runs under torchrun"
    return None, None


def strict_parser():
    """The CLI's parser, refusing abbreviations: argparse would take a README's `--top-k` for a flag renamed to
    `--top-k-words`, so a rename would go unnoticed."""
    import argparse

    from bertkit.cli import build_parser

    parser = build_parser()
    parsers = [parser]
    while parsers:
        p = parsers.pop()
        p.allow_abbrev = False
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
    return parser


def parse(argv: list[str], shown: Shown):
    from bertkit.cli import UsageError

    try:
        args = strict_parser().parse_args(argv)
    except UsageError as e:
        pytest.fail(f"README line {shown.line}: `{shown.text}` does not parse: {e}")
    assert getattr(args, "func", None), f"README line {shown.line}: `{shown.text}` names no command"
    return args


SHOWN = shown_commands()


def cases() -> list:
    return [pytest.param(shown, id=shown.id,
                         marks=[pytest.mark.xfail(strict=True, reason=XFAIL[shown.text])] if shown.text in XFAIL else [])
            for shown in SHOWN]


# -- the folders commands run in ------------------------------------------------------------------------
def write_inputs(folder: Path) -> None:
    """The files the README's commands read, small: reviews with ids and star ratings, a text corpus, queries."""
    import pandas as pd

    words = {1: "dreadful dull mess", 3: "uneven but watchable", 5: "a wonderful moving film"}
    rows = [{"id": f"r{i}", "review": f"Review {i}: {words[s]}.", "stars": s, "url": f"https://example.org/{i}"}
            for i, s in enumerate([1, 3, 5] * 80)]
    pd.DataFrame(rows).to_csv(folder / "reviews.csv", index=False)
    pd.DataFrame(rows[:12]).to_parquet(folder / "reviews.parquet")
    new = [{**r, "id": f"new{i}", "review": r["review"] + " Seen again."} for i, r in enumerate(rows[:5])]
    pd.DataFrame(new).to_csv(folder / "new_reviews.csv", index=False)
    (folder / "corpus").mkdir()
    (folder / "corpus" / "part.txt").write_text("A first line.\nA second line of the corpus.\nThird.\n")
    (folder / "texts.txt").write_text("One text.\nAnother text.\n")
    (folder / "queries.txt").write_text("a wonderful film\na dull mess\n")
    pd.DataFrame({"query": ["a wonderful moving film", "a dreadful dull mess"],
                  "relevant": ["r2,r5", "r0"]}).to_csv(folder / "qrels.csv", index=False)
    pd.DataFrame({"query": ["a wonderful film"] * 8, "passage": [r["review"] for r in rows[:8]],
                  "relevant": [int(r["stars"] == 5) for r in rows[:8]]}).to_csv(folder / "pairs.csv", index=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A classifier trained like the README's `train` commands (shrunk): runs/rt in a block that reads it only."""
    from bertkit.cli import main

    out = tmp_path_factory.mktemp("trained") / "rt"
    assert main(["train", "--model", "minilm", "--data", "rotten_tomatoes", "--output", str(out), *SHRINK["train"]]) == 0
    return out


@pytest.fixture(scope="module")
def block_dir(tmp_path_factory, request):
    folders: dict[int, Path] = {}

    def get(block: int) -> Path:
        if block not in folders:
            folder = folders[block] = tmp_path_factory.mktemp(f"readme_block{block}")
            write_inputs(folder)
            texts = [shown.text for shown in SHOWN if shown.block == block]
            written = {_value(bertkit_argv(split(variants(t)[0])[1])[0] or [], "--output") for t in texts}
            for name in ("runs/rt", "runs/cross"):  # read by this block, not written: the trained classifier
                if any(name in t for t in texts) and name not in written:  # (a two-label pair classifier reranks)
                    (folder / "runs").mkdir(exist_ok=True)
                    (folder / name).symlink_to(request.getfixturevalue("trained"), target_is_directory=True)
        return folders[block]

    return get


# -- the test -------------------------------------------------------------------------------------------
def test_the_readme_shows_commands():
    assert len([s for s in SHOWN if s.block >= 0]) >= 10, "README.md lost its command blocks, or this parser broke"


@pytest.mark.parametrize("shown", cases())
def test_readme_command(shown: Shown, block_dir, monkeypatch, capsys):
    """Parse every variant; run the cheap ones. One that is not run ends as a skip that says why (see -ra)."""
    not_run = []
    for text in variants(shown.text):
        env, words = split(text)
        argv, parse_only = bertkit_argv(words)
        if argv is None:
            not_run.append(run_other(shown, words, block_dir, monkeypatch))
            continue
        parse(argv, shown)
        parse_only = parse_only or next((why for test, why in PARSE_ONLY if test(argv)), None)
        if shown.block < 0:
            parse_only = "a syntax summary in running text"
        if parse_only:
            not_run.append(f"parsed, not run: {parse_only}")
            continue
        monkeypatch.chdir(block_dir(shown.block))
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        from bertkit.cli import main

        capsys.readouterr()
        code = main(argv + SHRINK.get(argv[0], []))
        out, err = capsys.readouterr()
        assert code == 0, f"README line {shown.line}: `{text}` exited {code}: {err.strip()[-500:]}"
        if shown.output:  # what the README shows it printing
            assert out.rstrip("\n").splitlines() == [line.strip() for line in shown.output], out
    if any(not_run):
        pytest.skip(f"README line {shown.line}: " + "; ".join(sorted({why for why in not_run if why})))


def run_other(shown: Shown, words: list[str], block_dir, monkeypatch) -> str | None:
    """Run a non-bertkit line as OTHER_COMMANDS says; returns why it was not run, if it was not."""
    line = " ".join(words)
    match = next(((how, why) for pattern, how, why in OTHER_COMMANDS if re.match(pattern, line)), None)
    assert match, (f"README line {shown.line} shows `{shown.text}`, which this test does not know: add it to "
                   f"OTHER_COMMANDS in tests/test_readme.py with how it is checked")
    how, why = match
    if how == "skip":
        return f"not run: {why}"
    folder = block_dir(shown.block)
    if words[:3] == ["bash", "dev.sh", "demo"]:
        from bertkit import demo

        monkeypatch.chdir(folder)
        assert demo.main(["--skip-training", "--output-dir", str(folder / "demo_output"), *words[3:]]) in (0, None)
    elif words[0] == "python":
        proc = subprocess.run([sys.executable, *words[1:]], cwd=folder, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"README line {shown.line}: `{shown.text}` failed: {proc.stderr[-500:]}"
    else:
        pytest.fail(f"OTHER_COMMANDS says run `{shown.text}`, but run_other() does not know how")
    return None


def options_of(parser) -> dict[str, set[str]]:
    """{command: its option strings} for every bertkit command; a command with verbs (`index build`) also holds
    its verbs' options."""
    import argparse

    out: dict[str, set[str]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out[name] = {o for a in sub._actions for o in a.option_strings}
                for verb, flags in options_of(sub).items():
                    out[f"{name} {verb}"] = flags
                    out[name] |= flags
    return out


def prose_flags(text: str | None = None) -> list[tuple[int, str | None, str]]:
    """(line, command or None, flag) for each `--flag` in a code span of running text; in a table row whose cell
    shows `bertkit COMMAND ...`, the flags in that cell belong to COMMAND. Spans that run a script (`python ...`)
    are skipped: their flags are the script's."""
    lines = (README.read_text(encoding="utf-8") if text is None else text).splitlines()
    found, in_block, prose = [], False, []
    for n, line in enumerate(lines, 1):
        if line.strip().startswith("```"):
            in_block = not in_block
        elif not in_block:
            prose.append((n, line))
    flag = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
    for n, line in prose:
        if line.lstrip().startswith("|"):
            for cell in line.split("|"):
                spans = re.findall(r"`([^`]+)`", cell)
                command = next((m.group(1) for sp in spans if (m := re.match(r"bertkit (\S+)", sp))), None)
                found += [(n, command, f) for sp in spans if not sp.startswith("bertkit ") for f in flag.findall(sp)]
    joined = "\n".join(line for _, line in prose if not line.lstrip().startswith("|"))
    starts = [n for n, line in prose if not line.lstrip().startswith("|")]
    for m in re.finditer(r"`([^`]+)`", joined):
        if not " ".join(m.group(1).split()).startswith(("bertkit ", "python ")):  # a script's flags are its own
            found += [(starts[joined.count("\n", 0, m.start())], None, f) for f in flag.findall(m.group(1))]
    return found


def test_flags_named_in_running_text_exist():
    """`--flag` spans in the prose and tables name real options (of the table row's command, where there is one)."""
    options = options_of(strict_parser())
    every = set().union(*options.values())
    found = prose_flags()
    assert len(found) >= 10, "README.md lost its flags in running text, or this parser broke"
    for line, command, flag in found:
        if command is not None:
            assert flag in options.get(command, ()), f"README line {line}: `bertkit {command}` has no {flag}"
        else:
            assert flag in every, f"README line {line}: no bertkit command has {flag}"


# -- the extraction itself --------------------------------------------------------------------------------
def test_extraction_joins_continuations_reads_console_output_and_expands_options():
    text = "\n".join([
        "Text with `bertkit models` and a wrapped `bertkit embed --input",
        "x.txt` span.",
        "```console",
        "$ bertkit tokenize \"Hi\"   # a comment",
        "[CLS] hi [SEP]",
        "```",
        "```bash",
        "# a comment line",
        "bertkit train --data a.csv \\",
        "              --output runs/x",
        "bertkit serve --model DIR [--api-key KEY | BERTKIT_API_KEY=KEY]",
        "```",
        "```python",
        "bertkit.load('minilm')",
        "```",
    ])
    found = shown_commands(text)
    assert [(s.line, s.text, s.block) for s in found] == [
        (4, 'bertkit tokenize "Hi"   # a comment', 0), (9, "bertkit train --data a.csv --output runs/x", 1),
        (11, "bertkit serve --model DIR [--api-key KEY | BERTKIT_API_KEY=KEY]", 1),
        (1, "bertkit models", -1), (1, "bertkit embed --input x.txt", -1)]
    assert found[0].output == ["[CLS] hi [SEP]"]
    assert split(found[0].text) == ({}, ["bertkit", "tokenize", "Hi"])
    assert [split(v) for v in variants(found[2].text)] == [
        ({}, ["bertkit", "serve", "--model", "runs/rt"]),
        ({}, ["bertkit", "serve", "--model", "runs/rt", "--api-key", "test-key"]),
        ({"BERTKIT_API_KEY": "test-key"}, ["bertkit", "serve", "--model", "runs/rt"])]
    assert variants('bertkit fill-mask "Paris is the [MASK]."') == ['bertkit fill-mask "Paris is the [MASK]."']


def test_prose_flags_belong_to_their_table_row_command():
    text = "| task | `bertkit embed TEXT...` or `--input FILE`, `--output x.npy / x.json` |\nUse `--json` and `--x-y`.\n"
    assert prose_flags(text) == [(1, "embed", "--input"), (1, "embed", "--output"), (2, None, "--json"),
                                 (2, None, "--x-y")]


@pytest.mark.parametrize("command", ["bertkit train --epochz 2", "bertkit train --epoch 2", "bertkit tokenise x"])
def test_a_renamed_flag_or_command_fails_to_parse(command):
    shown = Shown(1, command, 0)
    with pytest.raises(pytest.fail.Exception, match="does not parse"):  # an abbreviation of --epochs counts as renamed
        parse(split(command)[1][1:], shown)


def test_releases_the_docs_name_agree_with_the_version():
    """'X before 0.2' says 0.2 is out; 'removed in 0.3' promises a release: both must agree with __version__ (0.1.0:
    nothing came before 0.2, and a name deprecated now goes in the next release)."""
    import bertkit

    current = tuple(int(p) for p in bertkit.__version__.split(".")[:2])
    upcoming = (current[0], current[1] + 1)
    texts = {README: README.read_text(encoding="utf-8")}
    texts |= {p: p.read_text(encoding="utf-8") for p in (ROOT / "src" / "bertkit").rglob("*.py")}
    wrong = []
    for path, text in texts.items():
        for m in re.finditer(r"\b(before|since|removed in|goes in|dropped in)\s+(?:version\s+)?(\d+)\.(\d+)\b", text):
            named = (int(m.group(2)), int(m.group(3)))
            past = m.group(1) in ("before", "since")
            if (past and named > current) or (not past and named != upcoming):
                wrong.append(f"{path.relative_to(ROOT)}: {m.group(0)!r} (version {bertkit.__version__})")
    assert wrong == []
