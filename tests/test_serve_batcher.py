"""The micro-batcher alone, with a fake model: merging by token budget and wait, splitting, isolation, draining."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

from bertkit.serve.batcher import Batcher, Closed, Overloaded, Worker


class FakeModel:
    """Records every call; 'boom' in an input fails the whole call, as a bad text fails a real batch."""

    def __init__(self, delay: float = 0.0):
        self.calls: list[tuple[list, dict]] = []
        self.threads: set[str] = set()
        self.delay = delay

    def __call__(self, items: list, options: dict) -> list:
        self.calls.append((list(items), dict(options)))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        if any("boom" in str(i) for i in items):
            raise ValueError("boom in the batch")
        return [f"{options.get('tag', '')}{i}!" for i in items]


def run(coro):
    return asyncio.run(coro)


def make(fake, **kw) -> tuple[Batcher, Worker, list]:
    worker = Worker()
    batches = []
    kw.setdefault("max_tokens", 1000)
    kw.setdefault("max_wait_s", 0.05)
    b = Batcher("t", fake, worker, on_batch=lambda *a: batches.append(a), **kw)
    return b, worker, batches


def test_concurrent_requests_merge_into_one_call_and_each_gets_its_own_results():
    fake = FakeModel()

    async def main():
        b, worker, batches = make(fake)
        jobs = [b.submit([f"r{r}t{i}" for i in range(r + 1)], {}, tokens=10) for r in range(6)]
        out = await asyncio.gather(*jobs)
        await b.close()
        worker.close()
        return out, batches

    out, batches = run(main())
    assert out == [[f"r{r}t{i}!" for i in range(r + 1)] for r in range(6)]
    assert len(fake.calls) == 1 and len(fake.calls[0][0]) == 21
    assert batches[0][1:4] == (6, 21, 60)  # requests, items, tokens
    assert fake.threads == {"bertkit-model_0"}  # the model only ever runs on its one thread


def test_token_budget_splits_batches_and_keeps_arrival_order():
    fake = FakeModel()

    async def main():
        b, worker, _ = make(fake, max_tokens=25)
        out = await asyncio.gather(*[b.submit([i], {}, tokens=10) for i in range(5)])
        await b.close()
        worker.close()
        return out

    assert run(main()) == [["0!"], ["1!"], ["2!"], ["3!"], ["4!"]]
    assert [c[0] for c in fake.calls] == [[0, 1], [2, 3], [4]]


def test_an_oversized_request_runs_alone():
    fake = FakeModel()

    async def main():
        b, worker, _ = make(fake, max_tokens=25)
        out = await asyncio.gather(b.submit(["big"], {}, tokens=100), b.submit(["small"], {}, tokens=1))
        await b.close()
        worker.close()
        return out

    assert run(main()) == [["big!"], ["small!"]]
    assert [c[0] for c in fake.calls] == [["big"], ["small"]]


def test_the_wait_bounds_latency_of_a_lone_request():
    fake = FakeModel()

    async def main():
        b, worker, _ = make(fake, max_wait_s=0.2)
        start = time.monotonic()
        out = await b.submit(["x"], {}, tokens=1)
        took = time.monotonic() - start
        await b.close()
        worker.close()
        return out, took

    out, took = run(main())
    assert out == ["x!"] and 0.15 <= took < 2.0


def test_a_full_budget_does_not_wait():
    fake = FakeModel()

    async def main():
        b, worker, _ = make(fake, max_tokens=10, max_wait_s=5.0)
        start = time.monotonic()
        await b.submit(["x"], {}, tokens=10)
        took = time.monotonic() - start
        await b.close()
        worker.close()
        return took

    assert run(main()) < 1.0


def test_different_options_never_share_a_call():
    fake = FakeModel()

    async def main():
        b, worker, _ = make(fake)
        out = await asyncio.gather(b.submit(["a"], {"tag": "A"}, 1), b.submit(["b"], {"tag": "B"}, 1),
                                   b.submit(["c"], {"tag": "A"}, 1))
        await b.close()
        worker.close()
        return out

    assert run(main()) == [["Aa!"], ["Bb!"], ["Ac!"]]
    assert sorted(c[0] for c in fake.calls) == [["a", "c"], ["b"]]


def test_a_failing_request_fails_alone_and_its_neighbours_succeed():
    fake = FakeModel()

    async def main():
        b, worker, _ = make(fake)
        out = await asyncio.gather(b.submit(["ok1"], {}, 1), b.submit(["boom"], {}, 1), b.submit(["ok2", "ok3"], {}, 2),
                                   return_exceptions=True)
        await b.close()
        worker.close()
        return out

    ok1, bad, ok2 = run(main())
    assert ok1 == ["ok1!"] and ok2 == ["ok2!", "ok3!"]
    assert isinstance(bad, ValueError)
    assert len(fake.calls) == 4  # the merged call, then each request alone


def test_wrong_result_count_is_an_error_not_a_shifted_answer():
    async def main():
        b, worker, _ = make(lambda items, o: items[:-1])
        out = await asyncio.gather(b.submit(["a"], {}, 1), b.submit(["b", "c"], {}, 1), return_exceptions=True)
        await b.close()
        worker.close()
        return out

    for result in run(main()):
        assert isinstance(result, RuntimeError)


def test_no_batching_runs_each_request_alone_in_order():
    fake = FakeModel()

    async def main():
        b, worker, _ = make(fake, enabled=False)
        out = await asyncio.gather(*[b.submit([i], {}, 1) for i in range(4)])
        await b.close()
        worker.close()
        return out

    assert run(main()) == [["0!"], ["1!"], ["2!"], ["3!"]]
    assert [c[0] for c in fake.calls] == [[0], [1], [2], [3]]


def test_full_queue_answers_overloaded_and_closed_batcher_refuses():
    fake = FakeModel(delay=0.3)

    async def main():
        b, worker, _ = make(fake, max_queue=2, max_wait_s=0.0)
        first = asyncio.ensure_future(b.submit(["a"], {}, 1))
        await asyncio.sleep(0.05)  # "a" is running; the next two fill the queue
        queued = [asyncio.ensure_future(b.submit([x], {}, 1)) for x in "bc"]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded):
            await b.submit(["d"], {}, 1)
        results = await asyncio.gather(first, *queued)
        await b.close()
        with pytest.raises(Closed):
            await b.submit(["e"], {}, 1)
        worker.close()
        return results

    assert run(main()) == [["a!"], ["b!"], ["c!"]]


def test_close_runs_everything_queued_without_waiting_out_the_timer():
    fake = FakeModel()

    async def main():
        b, worker, _ = make(fake, max_wait_s=30.0)
        pending = [asyncio.ensure_future(b.submit([i], {}, 1)) for i in range(3)]
        await asyncio.sleep(0.05)
        start = time.monotonic()
        await b.close()
        took = time.monotonic() - start
        worker.close()
        return [p.result() for p in pending], took

    results, took = run(main())
    assert results == [["0!"], ["1!"], ["2!"]] and took < 5.0


def test_a_cancelled_caller_costs_no_compute():
    fake = FakeModel(delay=0.2)

    async def main():
        b, worker, _ = make(fake, max_wait_s=0.0)
        first = asyncio.ensure_future(b.submit(["a"], {}, 1))
        await asyncio.sleep(0.05)
        gone = asyncio.ensure_future(b.submit(["gone"], {}, 1))
        await asyncio.sleep(0.01)
        gone.cancel()
        await first
        await b.close()
        worker.close()

    run(main())
    assert [c[0] for c in fake.calls] == [["a"]]
