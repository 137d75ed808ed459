"""Single-query latency of several encode functions, as the benchmark scripts measure it."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def query_latency_ms(encoders: dict[str, Callable], query: str, repeats: int, warmup: int) -> dict[str, tuple[float, float]]:
    """{name: (p50, p99)} in milliseconds of encode(query), after `warmup` untimed calls of each. Every repeat calls
    each encoder once, in turn, so that all of them meet the same moments of a shared, noisy machine (its memory
    bandwidth, which a query's weight stream is bound by, moved by 2x from minute to minute on the Xeon)."""
    for encode in encoders.values():
        for _ in range(warmup):
            encode(query)
    samples: dict[str, list[float]] = {name: [] for name in encoders}
    for _ in range(repeats):
        for name, encode in encoders.items():
            start = time.perf_counter()
            encode(query)
            samples[name].append((time.perf_counter() - start) * 1000)
    return {name: (float(np.median(s)), float(np.percentile(s, 99))) for name, s in samples.items()}
