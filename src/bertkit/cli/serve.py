"""`bertkit serve`: the HTTP server (the app lives in bertkit.serve; the flags are its Settings, wired here to uvicorn)."""
from __future__ import annotations

import argparse
import sys
import warnings

from bertkit.cli.common import add_model_args, emit, load_model, say
from bertkit.errors import BertkitError
from bertkit.options import add_flags, from_args


def register(sub: argparse._SubParsersAction) -> None:
    from bertkit.serve.settings import Settings  # no web framework needed to read the declarations
    from bertkit.tasks import tasks

    names = [t.name for t in tasks()]
    p = sub.add_parser("serve", help=f"serve {', '.join(names[:-1])} and {names[-1]} over HTTP",
                       description="Serve a model over HTTP: a playground page at /, the API docs at /docs, "
                                   "POST /v1/<task> for every task the model can serve, POST /v1/embeddings "
                                   "(OpenAI's shape). Every flag below is a field of bertkit.serve.Settings.")
    add_model_args(p)
    add_flags(p, Settings)
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.add_argument("--no-access-log", dest="access_log", action="store_false", help="do not log every request")
    p.add_argument("--json", action="store_true", help="print the start-up report (URL, pages, endpoints, limits) as "
                                                       "one JSON line on stdout once listening, instead of the text lines")
    p.set_defaults(func=serve)


def serve(args: argparse.Namespace) -> int:
    try:
        from bertkit.serve import create_app
        from bertkit.serve.runner import bind, run
        from bertkit.serve.settings import API_KEY_ENV, Settings, api_key_given
    except ImportError as e:
        raise BertkitError(f"serving needs fastapi and uvicorn ({e.name} is missing); pip install 'bertkit[serve]'") from None

    settings = from_args(Settings, args, api_key=api_key_given(args.api_key))  # every value checked, every flag named
    sock = bind(settings.host, settings.port)  # before loading: a taken port should fail at once, not after the weights
    model = load_model(args)
    # Truncation is reported in every response and counted in /metrics; a log line per batch would be noise.
    warnings.filterwarnings("ignore", message=r".*longer than \d+ tokens and were truncated")
    app = create_app(model, settings)
    report = startup_report(args.model, app.state.service, sock.getsockname()[:2])
    if args.json:
        args.compact = True  # one line: a script reads it while the server runs
        emit(args, report)
    else:
        print(startup_line(report), file=sys.stderr, flush=True)
    if not report["api_key"]:
        say("warning", f"no API key: anyone who can reach {report['url'].split('//')[1]} can use every endpoint; "
                       f"set ${API_KEY_ENV} (or --api-key) to require one")
    server = run(app, sock, settings, args.log_level, args.access_log)
    if not server.started:
        raise BertkitError("the server did not start; see the log above")
    return 0


def startup_report(model: str, service, address: tuple) -> dict:
    """What is served where: the base URL (scripts read the port from it), the pages, the endpoints, the batching,
    and whether a key is needed (what `bertkit serve --json` prints)."""
    from bertkit.serve.openai import PATH as EMBEDDINGS

    settings = service.settings
    host, port = address
    base = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    return {"model": model, "url": base, "playground": f"{base}/", "docs": f"{base}/docs", "limits": f"{base}/v1/model",
            "endpoints": [f"/v1/{name}" for name, ok in service.available().items() if ok] + [EMBEDDINGS],
            "batching": {"max_batch_tokens": service.max_batch_tokens, "max_wait_ms": settings.max_wait_ms}
            if settings.batching else None,
            "api_key": settings.api_key is not None}


def startup_line(report: dict) -> str:
    """The start-up report for a terminal: the base URL first, then the pages."""
    batching = report["batching"]
    batches = (f"batches of up to {batching['max_batch_tokens']} tokens, {batching['max_wait_ms']:g} ms wait"
             if batching else "batching off")
    return (f"bertkit serve: {report['model']} on {report['url']} ({batches}; API key "
            f"{'required' if report['api_key'] else 'OFF'})\n"
            f"  playground: {report['playground']}   API docs: {report['docs']}   limits: {report['limits']}")
