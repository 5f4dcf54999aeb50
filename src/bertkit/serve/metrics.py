"""Prometheus text-format metrics (counters, gauges, histograms) without a client library."""
from __future__ import annotations

import bisect
import threading
import time
from collections import deque
from typing import Callable, Iterable

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
TOKEN_BUCKETS = (16, 64, 256, 1024, 4096, 16384, 65536, 262144)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(x: float) -> str:
    if x == float("inf"):
        return "+Inf"
    return repr(float(x)) if not float(x).is_integer() else str(int(x))


class _Metric:
    kind = ""

    def __init__(self, name: str, help: str, labels: Iterable[str] = ()) -> None:
        self.name, self.help, self.label_names = name, help, tuple(labels)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        return tuple(str(labels.get(n, "")) for n in self.label_names)

    def render(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}", *self._samples()]

    def _samples(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help: str, labels: Iterable[str] = ()) -> None:
        super().__init__(name, help, labels)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def _samples(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{_labels(self.label_names, k)} {_number(v)}" for k, v in items]


class Gauge(_Metric):
    """A value read at scrape time from a callback, so it can never go stale."""

    kind = "gauge"

    def __init__(self, name: str, help: str, read: Callable[[], dict[tuple[str, ...], float] | float],
                 labels: Iterable[str] = ()) -> None:
        super().__init__(name, help, labels)
        self._read = read

    def _samples(self) -> list[str]:
        values = self._read()
        if not isinstance(values, dict):
            values = {(): values}
        return [f"{self.name}{_labels(self.label_names, k)} {_number(v)}" for k, v in sorted(values.items())]


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help: str, buckets: Iterable[float], labels: Iterable[str] = ()) -> None:
        super().__init__(name, help, labels)
        self.buckets = tuple(sorted(buckets))
        self._series: dict[tuple[str, ...], list] = {}  # key -> [per-bucket counts..., sum, count]

    def observe(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            s = self._series.setdefault(key, [0] * len(self.buckets) + [0.0, 0])
            i = bisect.bisect_left(self.buckets, value)  # `le` buckets: value <= bound
            if i < len(self.buckets):
                s[i] += 1
            s[-2] += value
            s[-1] += 1

    def count(self, **labels: str) -> int:
        s = self._series.get(self._key(labels))
        return s[-1] if s else 0

    def _samples(self) -> list[str]:
        out = []
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._series.items())
        for key, s in items:
            running = 0
            for bound, n in zip(self.buckets, s):
                running += n
                le = 'le="%s"' % _number(bound)
                out.append(f"{self.name}_bucket{_labels(self.label_names, key, le)} {running}")
            inf = 'le="+Inf"'
            out.append(f"{self.name}_bucket{_labels(self.label_names, key, inf)} {s[-1]}")
            out.append(f"{self.name}_sum{_labels(self.label_names, key)} {_number(s[-2])}")
            out.append(f"{self.name}_count{_labels(self.label_names, key)} {s[-1]}")
        return out


class Throughput:
    """Tokens per second of model time over a sliding window, for a gauge that reflects current load."""

    def __init__(self, window_s: float = 60.0) -> None:
        self.window_s = window_s
        self._events: deque[tuple[float, int, float]] = deque()
        self._lock = threading.Lock()

    def add(self, tokens: int, seconds: float) -> None:
        now = time.monotonic()
        with self._lock:
            self._events.append((now, tokens, seconds))
            self._trim(now)

    def rate(self) -> float:
        with self._lock:
            self._trim(time.monotonic())
            busy = sum(s for _, _, s in self._events)
            return sum(t for _, t, _ in self._events) / busy if busy > 0 else 0.0

    def _trim(self, now: float) -> None:
        while self._events and self._events[0][0] < now - self.window_s:
            self._events.popleft()


class Metrics:
    """Everything /metrics reports; the app and the batchers record into it."""

    def __init__(self, queue_depths: Callable[[], dict[str, int]] = dict, in_flight: Callable[[], int] = lambda: 0,
                 draining: Callable[[], bool] = lambda: False, connections: Callable[[], int] = lambda: 0,
                 serving: Callable[[], int] = lambda: 0) -> None:
        self.requests = Counter("bertkit_requests_total", "HTTP requests by endpoint and status code "
                                "(499: the client left before the answer).", ("endpoint", "status"))
        self.latency = Histogram("bertkit_request_duration_seconds", "HTTP request latency, first byte in to last byte out.",
                                 LATENCY_BUCKETS, ("endpoint",))
        self.batch_requests = Histogram("bertkit_batch_requests", "Requests merged into one model call.", SIZE_BUCKETS, ("task",))
        self.batch_size = Histogram("bertkit_batch_size", "Texts (or sentence pairs) per model call.", SIZE_BUCKETS, ("task",))
        self.batch_tokens = Histogram("bertkit_batch_tokens", "Tokens per model call.", TOKEN_BUCKETS, ("task",))
        self.batch_seconds = Histogram("bertkit_batch_duration_seconds", "Model time per call.", LATENCY_BUCKETS, ("task",))
        self.tokens = Counter("bertkit_tokens_total", "Tokens run through the model.", ("task",))
        self.texts = Counter("bertkit_texts_total", "Texts run through the model.", ("task",))
        self.model_seconds = Counter("bertkit_model_seconds_total", "Seconds the model thread spent computing.", ("task",))
        self.truncated = Counter("bertkit_truncated_texts_total", "Texts cut to the model's maximum length.", ("endpoint",))
        self._throughput = Throughput()
        self._started = time.time()
        self._gauges = [
            Gauge("bertkit_tokens_per_second", "Tokens per second of model time over the last 60 s.", self._throughput.rate),
            Gauge("bertkit_queue_depth", "Requests waiting to be batched, by task.",
                  lambda: {(k,): v for k, v in queue_depths().items()}, ("task",)),
            Gauge("bertkit_requests_in_flight", "HTTP requests being handled now.", in_flight),
            Gauge("bertkit_open_connections", "Open client connections, idle keep-alive ones included.", connections),
            Gauge("bertkit_connections_served", "Connections being served now (--max-connections caps them).", serving),
            Gauge("bertkit_draining", "1 while the server is shutting down.", lambda: float(draining())),
            Gauge("bertkit_start_time_seconds", "Unix time the server started.", lambda: self._started),
        ]

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self.requests.inc(endpoint=endpoint, status=str(status))
        self.latency.observe(seconds, endpoint=endpoint)

    def observe_batch(self, task: str, requests: int, items: int, tokens: int, seconds: float) -> None:
        self.batch_requests.observe(requests, task=task)
        self.batch_size.observe(items, task=task)
        self.batch_tokens.observe(tokens, task=task)
        self.batch_seconds.observe(seconds, task=task)
        self.tokens.inc(tokens, task=task)
        self.texts.inc(items, task=task)
        self.model_seconds.inc(seconds, task=task)
        self._throughput.add(tokens, seconds)

    def render(self) -> str:
        metrics = [self.requests, self.latency, self.batch_requests, self.batch_size, self.batch_tokens,
                   self.batch_seconds, self.tokens, self.texts, self.model_seconds, self.truncated, *self._gauges]
        return "\n".join(line for m in metrics for line in m.render()) + "\n"
