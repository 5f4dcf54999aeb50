"""`bertkit serve`: the HTTP server (the app lives in bertkit.serve; the flags are its Settings, wired here to uvicorn)."""
from __future__ import annotations

import argparse
import sys
import warnings

from bertkit.cli.common import add_model_args, load_model
from bertkit.errors import BertkitError
from bertkit.options import add_flags, from_args


def register(sub: argparse._SubParsersAction) -> None:
    from bertkit.serve.settings import Settings  # no web framework needed to read the declarations

    p = sub.add_parser("serve", help="serve predict, embed, fill-mask, similarity and tokenize over HTTP",
                       description="Serve a model over HTTP: a playground page at /, the API docs at /docs, "
                                   "POST /v1/<task>. Every flag below is a field of bertkit.serve.Settings.")
    add_model_args(p)
    add_flags(p, Settings)
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.add_argument("--no-access-log", dest="access_log", action="store_false", help="do not log every request")
    p.set_defaults(func=serve)


def serve(args: argparse.Namespace) -> int:
    try:
        from bertkit.serve import create_app
        from bertkit.serve.runner import bind, run
        from bertkit.serve.settings import Settings, api_key_given
    except ImportError as e:
        raise BertkitError(f"serving needs fastapi and uvicorn ({e.name} is missing); pip install 'bertkit[serve]'") from None

    settings = from_args(Settings, args, api_key=api_key_given(args.api_key))  # every value checked, every flag named
    sock = bind(settings.host, settings.port)  # before loading: a taken port should fail at once, not after the weights
    model = load_model(args)
    # Truncation is reported in every response and counted in /metrics; a log line per batch would be noise.
    warnings.filterwarnings("ignore", message=r".*longer than \d+ tokens and were truncated")
    app = create_app(model, settings)
    print(startup_line(args.model, app.state.service, sock.getsockname()[:2]), file=sys.stderr, flush=True)
    server = run(app, sock, settings, args.log_level, args.access_log)
    if not server.started:
        raise BertkitError("the server did not start; see the log above")
    return 0


def startup_line(model: str, service, address: tuple) -> str:
    """What is served where: the base URL first (scripts read the port from it), the pages, and whether a key is needed."""
    from bertkit.serve.settings import API_KEY_ENV

    settings = service.settings
    host, port = address
    base = f"http://{f'[{host}]' if ':' in host else host}:{port}"
    batching = (f"batches of up to {service.max_batch_tokens} tokens, {settings.max_wait_ms:g} ms wait"
                if settings.batching else "batching off")
    line = (f"bertkit serve: {model} on {base} ({batching}; API key {'required' if settings.api_key else 'OFF'})\n"
            f"  playground: {base}/   API docs: {base}/docs   limits: {base}/v1/model")
    if settings.api_key is None:
        line += (f"\nwarning: no API key: anyone who can reach {host}:{port} can use every endpoint; "
                 f"set ${API_KEY_ENV} (or --api-key) to require one")
    return line
