"""The served tasks: prepare a request once, refuse it if it costs too much, queue its sequences for batching, present the answer."""
from __future__ import annotations

import asyncio
import typing
from typing import TYPE_CHECKING, Any, Callable

from bertkit.errors import OptionError, OverBudget
from bertkit.serve.batcher import Batcher, Closed, Overloaded, Worker
from bertkit.serve.errors import ServeError
from bertkit.serve.metrics import Metrics
from bertkit.serve.settings import Settings
from bertkit.index import check_model, open_index
from bertkit.tasks.base import Item, Prepared, Task, make_options, prepare, run_items
from bertkit.windows import SAVED, Strategy

if TYPE_CHECKING:
    from bertkit.model import Model


class Service:
    """One loaded model behind per-task batchers and a single model thread; owns readiness and draining."""

    def __init__(self, model: "Model", settings: Settings | None = None, tasks: list[Task] | None = None) -> None:
        from bertkit.tasks import tasks as registered

        self.model = model
        self.settings = settings or Settings()
        self.tasks = {t.name: t for t in (tasks if tasks is not None else registered())}
        if self.settings.index:  # an index another model built is refused at start, not at the first search
            check_model(open_index(self.settings.index).manifest, model)  # (and the model's fingerprint is taken once)
        self.max_batch_tokens = self.settings.max_batch_tokens or model.default_batch_tokens
        # The default budget lets any request of plain texts through: only what multiplies sequences can exceed it.
        self.max_request_tokens = self.settings.max_request_tokens or self.settings.max_texts * model.max_length
        self.worker = Worker()
        self.ready = False
        self.draining = False
        self.in_flight = 0  # requests in the gate, refused ones included
        self.serving = 0  # requests the gate has taken on and not yet answered (what --max-connections caps)
        self.paths: set[str] = set()  # the app's routes, so metrics can name known endpoints (set by create_app)
        self.connections: Callable[[], int] = lambda: 0  # open connections, told by the runner (none in-process)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.metrics = Metrics(self.queue_depths, lambda: self.in_flight, lambda: self.draining, lambda: self.connections(),
                               lambda: self.serving)
        self.batchers = {
            task.name: Batcher(task.name, self._runner(task), self.worker, self.max_batch_tokens,
                               self.settings.max_wait_ms / 1000, self.settings.batching, self.settings.max_queue,
                               self.metrics.observe_batch)
            for task in self.tasks.values() if task.uses_network
        }

    # -- lifecycle --------------------------------------------------------------------------------
    async def startup(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.settings.warmup:  # the first forward pass is slow; pay for it before saying ready
            await self.worker.call(self.model.hidden_states, ["warm up"])
        self.ready = True

    def request_drain(self) -> None:
        """Start draining from a signal handler or another thread; the work itself runs on the event loop."""
        self.draining = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.begin_drain)

    def begin_drain(self) -> None:
        """Stop being ready, refuse new requests, and run queued work at once instead of waiting to fill batches."""
        self.draining = True
        for b in self.batchers.values():
            b.flush()

    async def shutdown(self) -> None:
        self.begin_drain()
        for b in self.batchers.values():
            await b.close()
        self.worker.close()

    def queue_depths(self) -> dict[str, int]:
        return {name: b.depth for name, b in self.batchers.items()}

    # -- what this model can do -------------------------------------------------------------------
    def available(self) -> dict[str, bool]:
        return {name: task.available(self.model) and task.server_options(self.settings) is not None
                for name, task in self.tasks.items()}

    def require(self, task: Task) -> None:
        if self.available()[task.name]:
            return
        serves = ", ".join(f"/v1/{t}" for t, ok in self.available().items() if ok)
        if not task.available(self.model):
            raise ServeError(400, "unsupported_task",
                             f"the loaded model ({self.model.source or self.model.folder}) has no {task.head.what}, so "
                             f"/v1/{task.name} cannot be served; it serves {serves}. Start the server with a model "
                             "that has one.")
        raise ServeError(400, "unsupported_task", f"/v1/{task.name} is off: start the server with {task.server_needs}; "
                                                  f"it serves {serves}")

    def options(self, task: Task, given: dict) -> Any:
        """A request's options: what it gave, what the server fixes (search: the index), within the server's caps."""
        given = {k: v for k, v in given.items() if k in task.option_names}
        cap = self.settings.max_windows
        if "max_windows" in task.option_names:
            if given.get("max_windows") is not None and given["max_windows"] > cap:
                raise OptionError("max_windows", f"may be at most {cap} on this server ({self.settings.flag('max_windows')})")
            given["max_windows"] = given.get("max_windows") or cap
        return make_options(task, given | (task.server_options(self.settings) or {}))

    def info(self) -> dict:
        from bertkit.tasks.embed import embed_max_length

        m, sentence = self.model, self.model.sentence_config
        return {
            "model": m.source, "folder": str(m.folder) if m.folder else None, "device": str(m.device),
            "precision": m.precision,
            "parameters": m.num_parameters(), "heads": list(m.network.heads), "labels": list(m.labels),
            "max_length": m.max_length, "sentence_transformers": sentence or None, "config": m.config.to_dict(),
            "endpoints": {f"/v1/{t}": ok for t, ok in self.available().items()},
            "limits": self.settings.public() | {"max_batch_tokens": self.max_batch_tokens,
                                                "max_request_tokens": self.max_request_tokens},
            "embedding": {"dim": m.config.hidden_size, "max_length": embed_max_length(m),
                          "pooling": sentence.get("pooling", "mean"), "normalize": bool(sentence.get("normalize", False))},
            "long_documents": {"strategies": list(typing.get_args(Strategy)), "max_windows": self.settings.max_windows,
                               "aggregations": {t.name: list(t.aggregations) for t in self.tasks.values()
                                                if t.aggregations},
                               "saved": m.config.extra.get(SAVED)},
            "search": open_index(self.settings.index).info() if self.settings.index else None,
        }

    # -- one request ------------------------------------------------------------------------------
    async def handle(self, task: Task, body: Any) -> Any:
        """Answer one request body of POST /v1/<task> with the task's payload (what `--json` prints)."""
        given = {name: getattr(body, name) for name in task.option_names if hasattr(body, name)}
        pairs = getattr(body, task.pair_name) if task.pair_name else None
        answer, prepared, options = await self.run(task, given, getattr(body, task.input_name), pairs, body.truncate)
        return await asyncio.to_thread(task.payload, answer, prepared, options)

    async def run(self, task: Task, given: dict, texts: list, pairs: list | None = None, truncate: bool = True,
                  **wording: str) -> tuple[Any, Prepared, Any]:
        """One request: options checked, texts tokenized once (off the event loop), its cost checked before any
        work, its sequences batched with other requests'; returns (the task's answer, the prepared request, options).
        `wording` names the input field and the remedy in a too-long error (an adapter's request has its own names)."""
        self.require(task)
        options = self.options(task, given)
        # Tokenizing a request of many long texts takes milliseconds: off the event loop, and only once.
        try:
            prepared = await asyncio.to_thread(prepare, task, self.model, texts, pairs, options, None,
                                               self.max_request_tokens)
        except OverBudget as e:  # found while planning the sequences, before they take memory
            raise self._over_budget(e.tokens, e.budget) from None
        except OptionError as e:
            if e.param == "max_windows" and given.get("max_windows") is None:  # the server's cap, not the request's
                raise ServeError(422, "limit_exceeded", e.named(self.settings.flag("max_windows"))) from None
            raise
        self._check_truncation(task, prepared, prepared.limit, truncate, **wording)
        self._check_cost(task, prepared, options)
        results = await self._submit(task, prepared, options) if task.uses_network and prepared.items else []
        answer = await asyncio.to_thread(task.present, self.model, prepared, results, options)
        return answer, prepared, options

    def _check_truncation(self, task: Task, prepared: Prepared, limit: int, truncate: bool, field: str | None = None,
                          remedy: str = "send \"truncate\": true to have it cut and flagged") -> None:
        cut = prepared.truncated
        over = [i for i, n in enumerate(cut) if n]
        if over and not truncate:
            i = over[0]
            raise ServeError(422, "text_too_long",
                             f"{field or task.input_name}[{i}] has {len(prepared.encodings[i]) + cut[i]} tokens but "
                             f"{limit} fit" + (f" ({len(over)} texts are too long)" if len(over) > 1 else "")
                             + f"; shorten it, or {remedy}, or \"long\": \"chunk\" to read all of it")
        if over:
            self.metrics.truncated.inc(len(over), endpoint=f"/v1/{task.name}")

    def _check_cost(self, task: Task, prepared: Prepared, options: Any) -> None:
        """Refuse a request whose model work or answer is over this server's limits, before any batch runs."""
        if prepared.tokens > self.max_request_tokens:
            raise self._over_budget(prepared.tokens, self.max_request_tokens)
        size, cap = task.answer_size(self.model, prepared, options), self.settings.max_answer_bytes
        if size > cap:
            raise ServeError(422, "limit_exceeded",
                             f"the answer would take about {size:,} bytes, over this server's limit of {cap:,} "
                             f"({self.settings.flag('max_answer_bytes')}); ask for less in one request "
                             f"({task.smaller_answer})")

    def _over_budget(self, tokens: int, budget: int) -> ServeError:
        return ServeError(422, "limit_exceeded",
                          f"this request would run {tokens:,} tokens or more, over this server's limit of {budget:,} "
                          f"per request ({self.settings.flag('max_request_tokens')}); send fewer or shorter texts "
                          "(or fewer multi-piece targets, or a larger chunk stride)")

    async def _submit(self, task: Task, prepared: Prepared, options: Any) -> list:
        try:
            return await self.batchers[task.name].submit(prepared.items, options, prepared.tokens,
                                                         key=task.shared_options(options))
        except Overloaded as e:
            raise ServeError(503, "overloaded", str(e), {"Retry-After": "1"}) from None
        except Closed as e:
            raise ServeError(503, "shutting_down", str(e)) from None

    def _runner(self, task: Task):
        """What the model thread runs for a merged batch of several requests' sequences."""
        def run(items: list[Item], options: Any) -> list:
            return run_items(task, self.model, items, options, self.max_batch_tokens)

        return run

