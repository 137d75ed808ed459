"""Single-query latency of an encode function, as the benchmark scripts measure it."""

from __future__ import annotations

import time

import numpy as np


def query_latency_ms(encode, query: str, repeats: int, warmup: int) -> tuple[float, float]:
    """(p50, p99) in milliseconds of encode(query), after `warmup` untimed calls."""
    for _ in range(warmup):
        encode(query)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        encode(query)
        samples.append((time.perf_counter() - start) * 1000)
    return float(np.median(samples)), float(np.percentile(samples, 99))
