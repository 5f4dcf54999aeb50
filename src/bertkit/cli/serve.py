"""`bertkit serve`: the HTTP server (the app lives in bertkit.serve; this only wires flags and uvicorn)."""
from __future__ import annotations

import argparse
import sys
import warnings

from bertkit.cli.common import add_model_args, load_model
from bertkit.errors import BertkitError


def register(sub: argparse._SubParsersAction) -> None:
    from bertkit.serve.settings import Settings  # no web framework needed to read the defaults

    d = Settings()
    p = sub.add_parser("serve", help="serve predict, embed, fill-mask, similarity and tokenize over HTTP")
    add_model_args(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    p.add_argument("--max-batch-tokens", type=int, default=None, help="token budget of a merged batch (default: by device)")
    p.add_argument("--max-wait-ms", type=float, default=d.max_wait_ms,
                   help=f"how long a request waits for others to batch with (default: {d.max_wait_ms:g})")
    p.add_argument("--no-batching", dest="batching", action="store_false", help="run every request on its own")
    p.add_argument("--max-texts", type=int, default=d.max_texts, help=f"texts per request (default: {d.max_texts})")
    p.add_argument("--max-chars", type=int, default=d.max_chars, help=f"characters per text (default: {d.max_chars})")
    p.add_argument("--max-body-bytes", type=int, default=d.max_body_bytes,
                   help=f"request body size in bytes (default: {d.max_body_bytes})")
    p.add_argument("--max-queue", type=int, default=d.max_queue,
                   help=f"waiting requests per task before answering 503 (default: {d.max_queue})")
    p.add_argument("--api-key", default=None, help="require this key (Authorization: Bearer KEY or X-API-Key); "
                   "default: $BERTKIT_API_KEY, else none. Prefer the variable: command lines are visible to other users")
    p.add_argument("--graceful-timeout", type=float, default=30.0,
                   help="on SIGTERM, seconds to let open requests finish (default: 30)")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    p.add_argument("--no-access-log", dest="access_log", action="store_false", help="do not log every request")
    p.set_defaults(func=serve)


def serve(args: argparse.Namespace) -> int:
    try:
        from bertkit.serve import Settings, create_app
        from bertkit.serve.runner import bind, run
    except ImportError as e:
        raise BertkitError(f"serving needs fastapi and uvicorn ({e.name} is missing); pip install 'bertkit[serve]'") from None

    settings = Settings(max_batch_tokens=args.max_batch_tokens, max_wait_ms=args.max_wait_ms, batching=args.batching,
                        max_texts=args.max_texts, max_chars=args.max_chars, max_body_bytes=args.max_body_bytes,
                        max_queue=args.max_queue, api_key=args.api_key or Settings.api_key_from_env())
    sock = bind(args.host, args.port)  # before loading: a taken port should fail at once, not after the weights load
    model = load_model(args)
    # Truncation is reported in every response and counted in /metrics; a log line per batch would be noise.
    warnings.filterwarnings("ignore", message=r".*longer than \d+ tokens and were truncated")
    app = create_app(model, settings)
    host, port = sock.getsockname()[:2]
    service = app.state.service
    batching = (f"batches of up to {service.max_batch_tokens} tokens, {settings.max_wait_ms:g} ms wait"
                if settings.batching else "batching off")
    print(f"bertkit serve: {args.model} on http://{host}:{port} ({batching}; API key "
          f"{'required' if settings.api_key else 'off'})", file=sys.stderr, flush=True)
    server = run(app, sock, args.log_level, args.access_log, args.graceful_timeout)
    if not server.started:
        raise BertkitError("the server did not start; see the log above")
    return 0
