"""Test helpers: checkpoint builders, random id sequences, transformers' padded forward cut back to packed form,
float32 tolerances derived from the arithmetic, the server in-process and as a real process, and the command line's
commands with the arguments each needs.

Builders live here, not in conftest.py (which holds fixtures only), so test modules import them by name.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import torch

from bertkit.batching import Batch, pack
from bertkit.data import TextDataset

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


# -- checkpoint builders ------------------------------------------------------------------------------
def tiny_config(**overrides):
    from transformers import BertConfig

    settings = dict(vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=128, max_position_embeddings=512, type_vocab_size=2)
    settings.update(overrides)
    return BertConfig(**settings)


def write_tiny(kind: str, folder: Path, minilm_dir: Path, seed: int = 0, **config_overrides) -> Path:
    """A randomly initialised transformers checkpoint (`base`, `mlm` or `cls`) with the real tokenizer."""
    import transformers

    torch.manual_seed(seed)
    cls = {"base": transformers.BertModel, "mlm": transformers.BertForMaskedLM,
           "cls": transformers.BertForSequenceClassification}[kind]
    if kind == "cls":
        config_overrides.setdefault("id2label", {0: "negative", 1: "neutral", 2: "positive"})
        config_overrides.setdefault("label2id", {v: k for k, v in config_overrides["id2label"].items()})
    model = cls(tiny_config(**config_overrides)).eval()
    with torch.no_grad():  # random LayerNorm and bias values, so a swapped tensor cannot hide
        for name, p in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copy(minilm_dir / name, folder / name)
    return folder


# -- inputs -------------------------------------------------------------------------------------------
def random_sequences(lengths, seed=0, pair_split=None):
    """[CLS] random ids [SEP] sequences of exactly the given lengths (length 1 is a lone [CLS])."""
    g = torch.Generator().manual_seed(seed)
    ids, types = [], []
    for n in lengths:
        body = torch.randint(1000, 30000, (max(n - 2, 0),), generator=g).tolist()
        seq = ([101] + body + [102])[:n]
        ids.append(seq)
        if pair_split:  # second half is segment B
            cut = n // 2
            types.append([0] * cut + [1] * (n - cut))
        else:
            types.append([0] * n)
    return ids, types


def hf_padded_inputs(ids, types):
    L = max(len(s) for s in ids)
    x = torch.zeros(len(ids), L, dtype=torch.long)
    t = torch.zeros_like(x)
    m = torch.zeros_like(x)
    for i, (s, ty) in enumerate(zip(ids, types)):
        x[i, : len(s)] = torch.tensor(s)
        t[i, : len(s)] = torch.tensor(ty)
        m[i, : len(s)] = 1
    return dict(input_ids=x, token_type_ids=t, attention_mask=m)


def unpad(padded: torch.Tensor, ids) -> torch.Tensor:
    return torch.cat([padded[i, : len(s)] for i, s in enumerate(ids)])


def packed(ids, types) -> Batch:
    return pack(ids, types)


# -- float32 tolerances ---------------------------------------------------------------------------------
EPS32 = float(torch.finfo(torch.float32).eps)  # 2**-23 ~ 1.19e-7: one float32 ulp at 1.0
# The longest reduction in a forward pass: MiniLM's FFN width (1536; attention spans at most 512 positions), and
# for the tiny test checkpoints (FFN width 128) attention over up to 512 positions.
MINILM_TERMS = 1536
TINY_TERMS = 512


def fp32_tol(scale: float, terms: int, depth: int = 1) -> float:
    """How far two float32 evaluations of one formula can drift apart when only their order of summation differs.

    Rounding model: one float32 reduction over `terms` terms is off by about sqrt(terms) ulps of the largest
    magnitude it handles, `scale` (round-off errors add like a random walk); `depth` reductions in a row add up
    linearly (post-LN layers re-normalise, so errors add rather than multiply: measured on MiniLM, each layer adds
    about 1.5 ulps of the largest hidden value, against the sqrt(1536) ~ 39 allowed here). A wrong weight, a missing
    LayerNorm or a mask leak moves values by 1e-2 of their scale or more, far beyond this.
    """
    return depth * math.sqrt(terms) * EPS32 * float(scale)


def _as_float64(x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double()
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def assert_fp32_close(got, want, *, terms: int, depth: int = 1, scale: float | None = None, what: str = "") -> None:
    """max |got - want| <= fp32_tol(scale, terms, depth); scale defaults to max |want|."""
    got, want = _as_float64(got), _as_float64(want)
    assert got.shape == want.shape, f"{what} shapes differ: {tuple(got.shape)} vs {tuple(want.shape)}"
    if scale is None:
        scale = float(want.abs().max()) if want.numel() else 0.0
    tol = fp32_tol(scale, terms, depth)
    diff = float((got - want).abs().max()) if want.numel() else 0.0
    assert diff <= tol, (f"{what} max |diff| {diff:.3g} > tolerance {tol:.3g} "
                         f"= {depth} x sqrt({terms}) x eps32 x {scale:.3g}")


# -- the server, in-process ---------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def serving(model, **settings):
    """The app with its lifespan running (start-up warm-up unless `warmup=False`, shutdown drain) and an httpx
    client talking to it in-process (`client.app` is the app)."""
    import httpx

    from bertkit.serve import Settings, create_app

    app = create_app(model, Settings(**settings))
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bertkit",
                                     timeout=60) as client:
            client.app = app
            yield client


def serve_and(model, fn, **settings):
    """Start the app, await `fn(client)`, stop the app; returns what `fn` returned."""
    async def go():
        async with serving(model, **settings) as client:
            return await fn(client)

    return asyncio.run(go())


# -- the server as a real process ----------------------------------------------------------------------
class ServeProcess:
    """`bertkit serve` in a subprocess on a free loopback port, the one harness of every live-server test.

    The port is the server's own choice (--port 0), read from its start-up report: `--json`'s line on stdout, or
    (`json=False`) the text lines on stderr, which a test may then read in `log`. Threads collect both pipes (a
    full pipe would block the server). `start()` returns at once so several start-ups overlap; `ready()` waits
    until /healthz answers and returns the base URL. As a context manager it starts, waits and stops gracefully.
    """

    def __init__(self, model, *flags: str, env: dict | None = None, json: bool = True, log_level: str = "info") -> None:
        self.argv = [sys.executable, "-m", "bertkit", "serve", "--model", str(model), "--port", "0", "--device", "cpu",
                     "--no-access-log", "--log-level", log_level, *flags] + (["--json"] if json else [])
        self.env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        self.env.pop("BERTKIT_API_KEY", None)
        self.env.update(env or {})
        self.json = json
        self.log: list[str] = []  # stderr lines
        self.report: dict | None = None  # the start-up report (--json)
        self.url: str | None = None
        self.proc: subprocess.Popen | None = None
        self._said = threading.Event()  # the URL is known, or the process ended
        self._readers: list[threading.Thread] = []

    def start(self) -> "ServeProcess":
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=self.env)
        self._readers = [threading.Thread(target=self._read, args=(pipe, out), daemon=True)
                         for pipe, out in ((self.proc.stdout, True), (self.proc.stderr, False))]
        for reader in self._readers:
            reader.start()
        return self

    def _read(self, pipe, stdout: bool) -> None:
        for line in pipe:
            if stdout and self.json and self.report is None:
                self.report = json.loads(line)
                self.url = self.report["url"]
                self._said.set()
            elif not stdout:
                self.log.append(line)
                found = re.search(r"http://127\.0\.0\.1:\d+", line)  # the text start-up line names the chosen port
                if found and not self.json and self.url is None:
                    self.url = found.group(0)
                    self._said.set()
        self._said.set()  # the process ended: wake whoever waits

    def ready(self, timeout: float = 120) -> str:
        """Wait until the server answers /healthz; returns its base URL."""
        assert self._said.wait(timeout) and self.url and self.proc.poll() is None, \
            "bertkit serve did not start:\n" + "".join(self.log)
        deadline = time.monotonic() + timeout
        while True:  # the model loads and warms up after the report; uvicorn listens once that is done
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=5) as r:
                    if r.status == 200:
                        return self.url
            except OSError:
                pass
            assert time.monotonic() < deadline and self.proc.poll() is None, "".join(self.log)
            time.sleep(0.05)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def connect(self, timeout: float = 30) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def wait(self, timeout: float = 60) -> int:
        """The exit status, once the process and the pipe readers are done (so `log` is complete)."""
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(timeout)
        return code

    def stop(self, graceful: bool = True) -> None:
        """SIGTERM and wait (graceful), or kill: a graceful stop of several servers at once costs seconds."""
        if self.proc is None or self.proc.poll() is not None:
            return
        if graceful:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.wait(30)
                return
            except subprocess.TimeoutExpired:
                pass
        self.proc.kill()
        self.wait(30)

    def __enter__(self) -> "ServeProcess":
        self.start()
        try:
            self.ready()
        except BaseException:
            self.stop(graceful=False)
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_flags(**settings) -> list[str]:
    """Settings as `bertkit serve` flags: max_texts=6 -> ['--max-texts', '6']."""
    from bertkit.options import flag_name

    return [part for name, value in settings.items() for part in (flag_name(name), str(value))]


def http_call(url: str, body: dict | None = None, key: str | None = None, timeout: float = 60) -> tuple[int, dict]:
    """GET (no body) or POST JSON; (status, JSON answer), errors included."""
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method="POST" if body is not None else "GET")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (the socket's timeout bounds the wait)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def http_answer(raw: bytes) -> tuple[int, dict]:
    """(status, JSON body) of one raw HTTP/1.1 response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


# -- the command line -------------------------------------------------------------------------------------------
# What each command needs besides the flag under test ({mlm}, {cls}, {csv}, {run}: a test's tiny models and files),
# so each case takes a moment.
COMMAND_BASE = {
    "tokenize": ["a bank", "--model", "{mlm}"],
    "fill-mask": ["a [MASK] bank", "--model", "{mlm}"],
    "embed": ["a bank", "--model", "{mlm}"],
    "similarity": ["a bank", "the bank", "--word", "bank", "--matrix", "--model", "{mlm}"],
    "predict": ["a bank", "--model", "{cls}"],
    "rerank": ["a bank", "--query", "bank?", "--model", "{cls}"],
    "info": ["{mlm}"],
    "train": ["--model", "{mlm}", "--data", "{csv}", "--output", "{run}", "--max-steps", "1", "--no-progress"],
    "evaluate": ["--model", "{cls}", "--data", "{csv}"],
    "serve": ["--port", "0", "--model", "{mlm}"],
}
POSITIONAL_TEXTS = {"a bank", "the bank", "a [MASK] bank"}


def cli_commands() -> dict:
    """Every `bertkit` sub-command's parser, by name, as bertkit.cli builds them."""
    import argparse

    from bertkit.cli import build_parser

    return next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices


# -- labelled text for training tests ---------------------------------------------------------------------------
POS = ["great", "wonderful", "excellent", "superb", "delightful", "brilliant"]
NEG = ["terrible", "awful", "boring", "dreadful", "poor", "horrible"]
FILLER = ["the", "movie", "film", "plot", "actor", "was", "really", "quite", "story", "scene", "and", "a"]
# Length-sorted batches (not the default, random ones): they step faster on a CPU, and these settings were set on them
# (with random batches the tiny model at lr 5e-3 does not leave chance within 3 epochs of sentiment_rows).
FAST = dict(lr=5e-3, batch_size=16, max_length=32, warmup_ratio=0.1, seed=0, bucket_size=64)


def sentiment_rows(n: int, seed: int = 0, names=("neg", "pos")) -> list[tuple[str, str]]:
    """Texts whose label is given away by one keyword among filler words; every text is distinct."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = rng.random() < 0.5
        words = [rng.choice(FILLER) for _ in range(rng.randint(3, 9))]
        words.insert(rng.randrange(len(words) + 1), rng.choice(POS if label else NEG))
        rows.append((" ".join(words) + f" {seed}x{i}", names[int(label)]))
    return rows


def dataset(rows, names=("neg", "pos")) -> TextDataset:
    return TextDataset([t for t, _ in rows], [names.index(y) for _, y in rows], list(names), source="synthetic")


# -- a command paused mid-write, in its own process ------------------------------------------------------
_PAUSED = """
import importlib, sys
from bertkit.cli import main
module, attr = sys.argv[1].split(":")
owner = importlib.import_module(module)
*path, name = attr.split(".")
for step in path:
    owner = getattr(owner, step)
real, first = getattr(owner, name), [True]
def paused(*args, **kwargs):
    if first[0]:  # the first call: say so, and wait for the test to let it go on
        first[0] = False
        print("paused", flush=True)
        sys.stdin.readline()
    return real(*args, **kwargs)
setattr(owner, name, paused)
sys.exit(main(sys.argv[2:]))
"""


class PausedCommand:
    """`bertkit ARGS` in a child process that stops at the first call of `where` ("module:Owner.function") until
    `resume()`: a handshake over its pipes, no sleeping. `with PausedCommand(...) as child:` waits for the pause."""

    def __init__(self, where: str, *args: str) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), OMP_NUM_THREADS="1")
        self.process = subprocess.Popen([sys.executable, "-c", _PAUSED, where, *args], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def __enter__(self) -> "PausedCommand":
        line = self.process.stdout.readline()
        if line.strip() != "paused":
            self.process.kill()
            raise AssertionError(f"the command ended before pausing: {line}{self.process.stderr.read()[-2000:]}")
        return self

    def resume(self, timeout: float = 300) -> tuple[int, str, str]:
        """Let it go on; its exit status, the rest of its stdout, and its stderr."""
        out, err = self.process.communicate("\n", timeout=timeout)
        return self.process.returncode, out, err

    def __exit__(self, *exc) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


# -- commands run in-process, and what they leave behind -----------------------------------------------------
def cli(capsys, *args) -> tuple[int, str, str]:
    """`bertkit ARGS` in this process: (exit status, stdout, stderr)."""
    from bertkit.cli import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def model_args(model_dir) -> list[str]:
    return ["--model", str(model_dir), "--device", "cpu", "--no-progress"]


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def snapshot(folder) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# -- CLI answers ----------------------------------------------------------------------------------------
def without_precision(payload):
    """A CLI --json answer less the `precision` key the CLI adds (the server says it in a header instead)."""
    if isinstance(payload, dict):
        return {k: v for k, v in payload.items() if k != "precision"}
    if isinstance(payload, list):
        return [without_precision(row) if isinstance(row, dict) else row for row in payload]
    return payload


def kill_after_first_checkpoint(argv: list[str]) -> None:
    """Run `python -m bertkit ARGV` and SIGKILL it right after it announces its first checkpoint (a real crash
    mid-run, between two checkpoints); asserts it really died by the signal."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-m", "bertkit", *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if "checkpoint saved" in line:
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
