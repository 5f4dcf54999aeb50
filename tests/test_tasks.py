"""Tasks are declared once: every front end (API, CLI, server, tables, corpus) derives from the declaration."""
from __future__ import annotations

import ast
import asyncio
import inspect
import json
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest
import torch

import bertkit
from bertkit import corpus
from bertkit.cli import build_parser, main
from bertkit.errors import BertkitError, OptionError
from bertkit.options import Options, option, specs
from bertkit.serve import Settings, create_app
from bertkit.tasks import Item, Task, get, register, tasks, unregister
from bertkit.tasks.tables import run_table


def _openapi(model) -> dict:
    return create_app(model, Settings(warmup=False)).openapi()


def _subcommands() -> dict:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices


def test_every_declared_task_has_a_method_a_command_an_endpoint_and_corpus_support(minilm, tmp_path):
    commands = _subcommands()
    schema = _openapi(minilm)
    assert {t.name for t in tasks()} >= {"tokenize", "embed", "fill-mask", "similarity", "predict"}
    for task in tasks():
        method = getattr(bertkit.Model, task.method)
        params = inspect.signature(method).parameters
        leading = task.leading or (task.input_name,)
        assert list(params)[1:1 + len(leading)] == list(leading) and "batch_tokens" in params, task.name
        for spec in specs(task.Options):  # each option is a parameter with its declared default
            assert spec.name in params and (spec.required or params[spec.name].default == spec.default), spec.name
        command = commands[task.name]
        flags = {o for a in command._actions for o in a.option_strings}
        positionals = {a.dest for a in command._actions if not a.option_strings}
        assert "--json" in flags and {s.flag for s in specs(task.Options) if s.cli and not s.positional} <= flags
        assert {s.name for s in specs(task.Options) if s.positional} <= positionals, task.name
        operation = schema["paths"][f"/v1/{task.name}"]["post"]
        body = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].split("/")[-1]
        fields = schema["components"]["schemas"][body]["properties"]
        assert task.input_name in fields and {s.name for s in specs(task.Options) if s.server} <= set(fields)
        assert "200" in operation["responses"] and "422" in operation["responses"]
        assert ("--output" in flags) == task.table, task.name  # table tasks write files and run corpus mode
    table_tasks = [t for t in tasks() if t.table]
    assert {t.name for t in table_tasks} >= {"embed", "predict"}
    source = tmp_path / "in.txt"
    source.write_text("one\ntwo words\n", encoding="utf-8")
    report = corpus.run_corpus(minilm, "embed", source, tmp_path / "out", shard_rows=1, progress=False)
    assert report["shards_written"] == 2
    with pytest.raises(BertkitError, match="use one of"):
        corpus.run_corpus(minilm, "similarity", source, tmp_path / "out2", progress=False)


# -- a task declared here, in the test, reaches every front end without editing another module --------
@dataclass(frozen=True)
class LoudnessOptions(Options):
    scale: float = option(1.0, "multiply the loudness by this", gt=0)
    unit: str = option("dB", "the unit printed next to the number", shared=False)


class Loudness(Task):
    """A toy task: the mean absolute value of each text's last hidden states, scaled."""

    name = "loudness"
    method = "loudness"
    summary = "How loud a text's hidden states are"
    Options = LoudnessOptions
    table = True
    example = {"texts": ["hello"]}
    Response = list[dict]

    def step(self, model, batch, items: list[Item], options: LoudnessOptions) -> list[float]:
        states = model.network(batch).float().abs()
        sums = states.new_zeros(batch.num_sequences).index_add_(0, batch.sequence_of_token, states.mean(dim=1))
        return (sums / batch.lengths.float() * options.scale).tolist()

    def present(self, model, prepared, results, options) -> list[float]:
        return [r[0] for r in prepared.per_input(results)]

    def payload(self, answer, prepared, options) -> list[dict]:
        return [{"text": t, "loudness": v, "unit": options.unit} for t, v in zip(prepared.texts, answer)]

    def columns(self, model, prepared, results, options) -> dict[str, list]:
        values = prepared.per_input(results)
        return {"loudness": [v[0] if v else None for v in values]}


@pytest.fixture()
def loudness():
    task = register(Loudness)
    yield task
    unregister(task.name)
    assert not hasattr(bertkit.Model, "loudness")


def _by_hand(model, text: str, scale: float) -> float:
    states = model.hidden_states([text])[0]
    return float(states.abs().mean(dim=1).mean()) * scale


def test_a_task_declared_in_a_test_is_reachable_from_the_api_the_cli_the_server_and_files(loudness, minilm, capsys,
                                                                                            tmp_path):
    texts = ["a quiet text", "A LOUDER ONE, WITH MORE WORDS IN IT"]
    want = [_by_hand(minilm, t, 2.0) for t in texts]
    # Python: a method with the declared signature
    assert str(inspect.signature(minilm.loudness)) == "(texts, scale: float = 1.0, unit: str = 'dB', batch_tokens: int | None = None)"
    assert minilm.loudness(texts, scale=2.0) == pytest.approx(want, rel=1e-5)
    with pytest.raises(OptionError, match="scale must be more than 0"):
        minilm.loudness(texts, scale=0.0)
    # CLI: a command with the declared flags and --json
    assert main(["loudness", *texts, "--scale", "2", "--unit", "phon", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["loudness"] for r in out] == pytest.approx(want, rel=1e-5) and out[0]["unit"] == "phon"
    assert main(["loudness", "x", "--scale", "-1"]) == 2
    assert "--scale must be more than 0" in capsys.readouterr().err
    # table files: every row kept, a blank one flagged
    source = tmp_path / "in.csv"
    pd.DataFrame({"id": [1, 2, 3], "text": [texts[0], " ", texts[1]]}).to_csv(source, index=False)
    assert main(["loudness", "--input", str(source), "--output", str(tmp_path / "out.jsonl"), "--scale", "2"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["1", "2", "3"] and rows[1]["error"] == "empty text" and rows[1]["loudness"] is None
    assert [rows[0]["loudness"], rows[2]["loudness"]] == pytest.approx(want, rel=1e-5)

    # server: an endpoint with a published schema, answering what the CLI prints
    async def go():
        app = create_app(minilm, Settings(warmup=False))
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
                return (await c.post("/v1/loudness", json={"texts": texts, "scale": 2.0, "unit": "phon"}),
                        await c.post("/v1/loudness", json={"texts": texts, "scale": -1.0}),
                        app.openapi())

    ok, bad, schema = asyncio.run(go())
    assert ok.status_code == 200 and [r["loudness"] for r in ok.json()] == pytest.approx(want, rel=1e-5)
    assert bad.status_code == 422 and "scale" in bad.json()["error"]["message"]
    assert schema["components"]["schemas"]["LoudnessRequest"]["properties"]["scale"]["exclusiveMinimum"] == 0


def test_requests_that_differ_only_in_unshared_options_share_batches(loudness, minilm):
    async def go():
        app = create_app(minilm, Settings(warmup=False, max_wait_ms=200))
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
                bodies = [{"texts": [f"text {i}"], "unit": f"u{i}"} for i in range(4)]
                answers = await asyncio.gather(*[c.post("/v1/loudness", json=b) for b in bodies])
                return answers, app.state.service.metrics.batch_requests.count(task="loudness")

    answers, calls = asyncio.run(go())
    assert all(a.status_code == 200 for a in answers) and [a.json()[0]["unit"] for a in answers] == ["u0", "u1", "u2", "u3"]
    assert calls == 1  # `unit` is not shared: one model batch served all four


def test_a_declaration_is_checked_when_registered(minilm):
    class Nameless(Task):
        Options = LoudnessOptions

    with pytest.raises(TypeError, match="must declare name"):
        register(Nameless)

    class Clash(Loudness):
        name = "clash"
        method = "embed"  # another task's method

    with pytest.raises(ValueError, match="already task 'embed'"):
        register(Clash)
    assert get("fill_mask") is get("fill-mask")


def test_table_runs_keep_every_row_in_order_and_flag_bad_ones(minilm):
    frame = pd.DataFrame({"text": ["fine", None, "\u200b\u200b", "   ", 3, "also fine"], "id": range(6)})
    table, _, _ = run_table(get("embed"), minilm, frame)
    assert table["id"].tolist() == list(range(6))
    assert table["error"].tolist() == [None, "missing text", "text has no tokens (only characters the tokenizer drops)",
                                       "empty text", "text is an int, not a string", None]
    assert table["embedding"][1] is None and torch.allclose(torch.tensor(table["embedding"][5]),
                                                            torch.tensor(minilm.embed(["also fine"])[0]), atol=1e-6)


# -- the contract: declared on Task, read by name, listed in the README ------------------------------------------
SRC = Path(bertkit.__file__).parent
# Facts Task derives from the declaration for the front ends: not hooks a task declares.
DERIVED = ("option_names", "shared_options", "available", "require_head", "undeclared")


def test_no_front_end_asks_a_task_whether_it_has_something():
    """Everything a front end reads is declared on Task with a default; getattr/hasattr on a task anywhere but
    tasks/base.py means a hook went undeclared."""
    probes = []
    for path in sorted(SRC.rglob("*.py")):
        if path == SRC / "tasks" / "base.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
                    and node.args and "task" in ast.unparse(node.args[0]).lower()):
                probes.append(f"{path.relative_to(SRC)}:{node.lineno}: {ast.unparse(node)}")
    assert probes == []


def test_the_scan_finds_a_probe():
    found = [ast.unparse(n) for n in ast.walk(ast.parse("x = getattr(task, 'plot', None)\ny = hasattr(self.task, 'm')"))
             if isinstance(n, ast.Call) and "task" in ast.unparse(n.args[0]).lower()]
    assert found == ["getattr(task, 'plot', None)", "hasattr(self.task, 'm')"]


def test_every_hook_has_a_default_and_the_readme_lists_the_contract():
    contract = [n for n in [*Task.__annotations__, *vars(Task)] if not n.startswith("_") and n not in DERIVED]
    contract = list(dict.fromkeys(contract))
    required = [n for n in Task.__annotations__ if not hasattr(Task, n)]
    assert set(required) == {"name", "method", "summary", "Options"}  # every other hook has its default
    readme = (SRC.parents[1] / "README.md").read_text(encoding="utf-8")
    architecture = readme.split("## Architecture", 1)[1].split("\n## ", 1)[0]
    assert [n for n in contract if f"`{n}`" not in architecture] == []


def test_a_task_declares_its_abilities_and_the_front_ends_follow():
    similarity, search, embed, predict = get("similarity"), get("search"), get("embed"), get("predict")
    assert similarity.plots and not embed.plots and not Task().plots
    assert search.names_its_model and not embed.names_its_model
    assert embed.output_formats == (".npy", ".parquet", ".json") and predict.output_formats == Task.output_formats
    assert set(similarity.methods) == {"word_embedding", "word_similarity", "similarity_matrix"} and embed.methods == {}
    commands = _subcommands()
    flags = {name: {o for a in p._actions for o in a.option_strings} for name, p in commands.items()}
    assert [t.name for t in tasks() if "--plot" in flags[t.name]] == [t.name for t in tasks() if t.plots]
    model = {t.name: next(a for a in commands[t.name]._actions if a.dest == "model") for t in tasks()}
    assert not model["search"].required and model["search"].default is None and model["embed"].default == "minilm"
