"""Dynamic micro-batching: concurrent requests of one task merged into token-budget batches on one model thread."""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Hashable, Sequence

import torch

# run(items, options) -> one result per item, in order. It is called on the model thread only.
RunFn = Callable[[list, Any], Sequence[Any]]
# on_batch(task, requests, items, tokens, seconds), called on the event loop after every model call.
BatchObserver = Callable[[str, int, int, int, float], None]


class Overloaded(Exception):
    """The queue is full; the client should retry later (HTTP 503)."""


class Closed(Exception):
    """The batcher has shut down and takes no more work (HTTP 503)."""


class Worker:
    """The one thread that touches the model: torch never runs two batches at once and the event loop never blocks."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bertkit-model")

    async def call(self, fn: Callable, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._pool, partial(_inference, fn, *args))

    def close(self) -> None:
        self._pool.shutdown(wait=True)


def _inference(fn: Callable, *args: Any) -> Any:
    # inference_mode is thread-local, so it has to be entered on the worker thread itself.
    with torch.inference_mode():
        return fn(*args)


@dataclass(eq=False)
class Job:
    items: list
    options: Any
    key: Hashable  # jobs merge only when their keys (the options that shape a batch) are equal
    tokens: int
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)


class Batcher:
    """One task's queue and the coroutine that drains it.

    The coroutine waits for the first job, then keeps collecting until the queued jobs fill
    `max_tokens` or the oldest has waited `max_wait_s`; it concatenates their items, calls `run`
    once per distinct set of options and hands each job its own slice of the results. With
    `enabled=False` every job runs alone, in arrival order.
    """

    def __init__(
        self,
        name: str,
        run: RunFn,
        worker: Worker,
        max_tokens: int,
        max_wait_s: float,
        enabled: bool = True,
        max_queue: int = 1024,
        on_batch: BatchObserver | None = None,
    ) -> None:
        self.name = name
        self._run = run
        self._worker = worker
        self.max_tokens = max_tokens
        self.max_wait_s = max_wait_s
        self.enabled = enabled
        self.max_queue = max_queue
        self._on_batch = on_batch
        self._queue: list[Job] = []
        self._wake = asyncio.Event()
        self._flush = False  # set while draining: stop waiting for company, run what is queued
        self._closed = False
        self._task: asyncio.Task | None = None

    @property
    def depth(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is not None and self._task.get_loop() is loop and not self._task.done():
            return
        # First use, or a new event loop (a test client that runs each request in its own): start over here.
        self._wake = asyncio.Event()
        self._task = loop.create_task(self._loop(), name=f"batcher-{self.name}")

    async def submit(self, items: list, options: Any, tokens: int, key: Any = None) -> list:
        """Queue one request and wait for its own results (exceptions come back to this caller only).

        Requests merge only when their `key` is equal (default: the options themselves, a dict)."""
        if self._closed:
            raise Closed(f"the {self.name} queue is shut down")
        if len(self._queue) >= self.max_queue:
            raise Overloaded(f"the {self.name} queue holds {len(self._queue)} requests; retry shortly")
        self.start()
        job = Job(list(items), options, _freeze(options if key is None else key), tokens,
                  asyncio.get_running_loop().create_future())
        self._queue.append(job)
        self._wake.set()
        return await job.future

    def flush(self) -> None:
        """Run queued work at once instead of waiting to fill batches (used while draining)."""
        self._flush = True
        self._wake.set()

    async def close(self) -> None:
        """Finish every queued job, then stop; later submissions raise Closed."""
        self._closed = True
        self.flush()
        if self._task is not None and self._task.get_loop() is asyncio.get_running_loop():
            await self._task

    # -- the batching loop -----------------------------------------------------------------------
    async def _loop(self) -> None:
        while True:
            if not self._queue:
                if self._closed:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if self.enabled:
                await self._gather()
            jobs = self._take()
            try:
                await self._run_jobs(jobs)
            except BaseException as e:  # never leave a caller hanging, whatever happened
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(e if isinstance(e, Exception) else RuntimeError("batch cancelled"))
                if not isinstance(e, Exception):
                    raise

    async def _gather(self) -> None:
        deadline = self._queue[0].arrived + self.max_wait_s
        while not self._flush and sum(j.tokens for j in self._queue) < self.max_tokens:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), left)
            except asyncio.TimeoutError:
                return

    def _take(self) -> list[Job]:
        """Jobs from the front of the queue up to the token budget (always at least one)."""
        if not self.enabled:
            return [self._queue.pop(0)]
        taken, tokens = [], 0
        while self._queue and (not taken or tokens + self._queue[0].tokens <= self.max_tokens):
            job = self._queue.pop(0)
            tokens += job.tokens
            taken.append(job)
        return taken

    async def _run_jobs(self, jobs: list[Job]) -> None:
        groups: dict[Hashable, list[Job]] = {}
        for job in jobs:
            if not job.future.done():  # a caller that went away needs no compute
                groups.setdefault(job.key, []).append(job)
        for group in groups.values():
            try:
                await self._call(group)
            except Exception as e:
                if len(group) == 1:
                    _fail(group[0], e)
                    continue
                # One bad request must not fail its neighbours: find it by running each alone.
                for job in group:
                    try:
                        await self._call([job])
                    except Exception as e:
                        _fail(job, e)

    async def _call(self, jobs: list[Job]) -> None:
        items = [item for job in jobs for item in job.items]
        start = time.perf_counter()
        try:
            results = await self._worker.call(self._run, items, jobs[0].options)
        finally:
            if self._on_batch is not None:
                self._on_batch(self.name, len(jobs), len(items), sum(j.tokens for j in jobs), time.perf_counter() - start)
        if len(results) != len(items):
            raise RuntimeError(f"{self.name}: the model returned {len(results)} results for {len(items)} inputs")
        offset = 0
        for job in jobs:
            n = len(job.items)
            if not job.future.done():
                job.future.set_result(list(results[offset: offset + n]))
            offset += n


def _fail(job: Job, error: Exception) -> None:
    if not job.future.done():
        job.future.set_exception(error)


def _freeze(value: Any) -> Hashable:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value
