"""Auth: a key given empty is an error, never "no key"; only giving none serves without one, and the start-up says so loudly."""
from __future__ import annotations

import asyncio

import httpx
import pytest

pytest.importorskip("fastapi")

import bertkit  # noqa: E402
from bertkit.cli import main  # noqa: E402
from bertkit.errors import OptionError  # noqa: E402
from bertkit.serve import Settings, create_app, runner  # noqa: E402
from bertkit.serve.settings import API_KEY_ENV  # noqa: E402

KEY = "auth-key"


class Started:
    started = True


@pytest.fixture
def started(monkeypatch):
    """`bertkit serve` in-process up to the point uvicorn would run: what settings it was given."""
    seen = {}

    def run(app, sock, settings, log_level="info", access_log=True):
        seen["settings"] = settings
        sock.close()
        return Started()

    monkeypatch.setattr(runner, "run", run)
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    return seen


def serve(monkeypatch, model_dir, flag: str | None, env: str | None) -> int:
    """`bertkit serve` with `--api-key FLAG` and BERTKIT_API_KEY=ENV, each only where not None; its exit code."""
    if env is not None:
        monkeypatch.setenv(API_KEY_ENV, env)
    return main(["serve", "--model", str(model_dir), "--port", "0"] + (["--api-key", flag] if flag is not None else []))


@pytest.mark.parametrize("flag, env, says", [
    (None, "", "is empty"),  # BERTKIT_API_KEY= bertkit serve
    ("", None, "is empty"),  # --api-key ""
    (" ", None, "is empty"),
    ("", KEY, "is empty"),  # an explicit empty flag is not overruled by the variable either
    (" key ", None, "spaces"),
    ("clé", None, "printable ASCII"),
    ("a\tb", None, "printable ASCII"),
])
def test_a_key_given_empty_or_unsendable_stops_the_start_in_one_line(capsys, monkeypatch, started, tiny_mlm_dir,
                                                                      flag, env, says):
    assert serve(monkeypatch, tiny_mlm_dir, flag, env) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --api-key ") and says in err and err.count("\n") == 1, err
    assert "settings" not in started


@pytest.mark.parametrize("flag, env, key", [
    (None, None, None),  # neither: the only way to serve without a key
    (None, KEY, KEY),
    (KEY, "other", KEY),  # the flag wins over the variable
])
def test_only_no_key_at_all_means_off_and_the_start_up_line_says_so(capsys, monkeypatch, started, tiny_mlm_dir,
                                                                     flag, env, key):
    assert serve(monkeypatch, tiny_mlm_dir, flag, env) == 0
    err = capsys.readouterr().err
    assert started["settings"].api_key == key
    first = err.splitlines()[0]
    assert first.startswith("bertkit serve: ") and ("API key required" if key else "API key OFF") in first
    assert ("warning: no API key" in err) == (key is None)
    assert KEY not in err  # the key itself is never printed


def test_an_empty_or_wrong_credential_is_401(tiny_mlm_dir):
    model = bertkit.load(tiny_mlm_dir, device="cpu")

    async def go():
        app = create_app(model, Settings(api_key=KEY, warmup=False))
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
                return [(await c.get("/v1/model", headers=h)).status_code for h in (
                    {"Authorization": "Bearer "}, {"X-API-Key": ""}, {"Authorization": "Bearer"},
                    {"Authorization": f"Basic {KEY}"}, {"X-API-Key": KEY + " x"}, {"X-API-Key": KEY})]

    assert asyncio.run(go()) == [401, 401, 401, 401, 401, 200]


def test_the_python_api_refuses_an_empty_key_naming_the_parameter():
    with pytest.raises(OptionError, match="^api_key is empty"):
        Settings(api_key="")
    assert Settings(api_key=None).public()["api_key"] is False and Settings(api_key=KEY).public()["api_key"] is True
