"""Prometheus metrics, written in its text exposition format (no client library needed).

Observed from the event loop and from the batcher's threads, so every update takes a lock."""

from __future__ import annotations

import bisect
import threading

# Seconds: 100 µs to 10 s, for request, queue, tokenization and inference times.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TEXT_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
TOKEN_BUCKETS = (16, 64, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    pairs = [f'{n}="{v}"' for n, v in zip(names, values)]
    if extra:
        pairs.append(extra)
    return "{" + ",".join(pairs) + "}" if pairs else ""


class _Metric:
    kind = ""

    def __init__(self, name: str, help: str, labels: tuple[str, ...] = ()):
        self.name, self.help, self.label_names = name, help, labels
        self._lock = threading.Lock()

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name, help, labels=()):
        super().__init__(name, help, labels)
        self._values: dict[tuple[str, ...], float] = {} if labels else {(): 0.0}

    def inc(self, amount: float = 1.0, *labels: str) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        with self._lock:
            return self._values.get(labels, 0.0)

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [f"{self.name}{_labels(self.label_names, k)} {v:g}" for k, v in items]


class Gauge(_Metric):
    """A value read when rendered (queue depth, requests in flight)."""

    kind = "gauge"

    def __init__(self, name, help, read):
        super().__init__(name, help)
        self._read = read

    def render(self) -> list[str]:
        return self.header() + [f"{self.name} {self._read():g}"]


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name, help, buckets, labels=()):
        super().__init__(name, help, labels)
        self.buckets = tuple(buckets)
        self._series: dict[tuple[str, ...], list] = {}  # labels -> [bucket counts..., +Inf count, sum]

    def observe(self, value: float, *labels: str) -> None:
        with self._lock:
            series = self._series.get(labels)
            if series is None:
                series = self._series[labels] = [0] * (len(self.buckets) + 1) + [0.0]
            series[bisect.bisect_left(self.buckets, value)] += 1
            series[-1] += value

    def count(self, *labels: str) -> int:
        with self._lock:
            series = self._series.get(labels)
            return sum(series[:-1]) if series else 0

    def render(self) -> list[str]:
        lines = self.header()
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._series.items())
        for labels, series in items:
            cumulative = 0
            for bound, n in zip((*self.buckets, "+Inf"), series[:-1]):
                cumulative += n
                le = f'le="{bound if isinstance(bound, str) else format(bound, "g")}"'
                lines.append(f"{self.name}_bucket{_labels(self.label_names, labels, le)} {cumulative}")
            lines.append(f"{self.name}_sum{_labels(self.label_names, labels)} {series[-1]:g}")
            lines.append(f"{self.name}_count{_labels(self.label_names, labels)} {cumulative}")
        return lines


class Metrics:
    """Everything the server reports at GET /metrics."""

    def __init__(self):
        p = "fastembed_rt_"
        self.requests = Counter(p + "requests_total", "HTTP requests by route and status code.", ("route", "status"))
        self.request_seconds = Histogram(p + "request_duration_seconds", "Whole request time by route.", LATENCY_BUCKETS, ("route",))
        self.queue_seconds = Histogram(p + "queue_duration_seconds", "Time a request's texts waited for a batch.", LATENCY_BUCKETS)
        self.tokenize_seconds = Histogram(p + "tokenization_duration_seconds", "Time to tokenize a request.", LATENCY_BUCKETS)
        self.inference_seconds = Histogram(p + "inference_duration_seconds", "Model time of a batch (forward and pooling).", LATENCY_BUCKETS)
        self.batch_texts = Histogram(p + "batch_size_texts", "Texts per model batch.", TEXT_BUCKETS)
        self.batch_tokens = Histogram(p + "batch_size_tokens", "Packed tokens per model batch.", TOKEN_BUCKETS)
        self.embedded_texts = Counter(p + "embedded_texts_total", "Texts run through the model.")
        self.cancelled_texts = Counter(p + "cancelled_texts_total", "Texts dropped before their batch because the client went away.")
        self._all = [self.requests, self.request_seconds, self.queue_seconds, self.tokenize_seconds,
                     self.inference_seconds, self.batch_texts, self.batch_tokens, self.embedded_texts,
                     self.cancelled_texts]  # fmt: skip

    def add_gauge(self, name: str, help: str, read) -> None:
        self._all.append(Gauge("fastembed_rt_" + name, help, read))

    def render(self) -> str:
        return "\n".join(line for metric in self._all for line in metric.render()) + "\n"
