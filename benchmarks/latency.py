"""How the benchmark scripts time several encode functions: throughput as the best of interleaved rounds, and
single-query latency."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def query_latency_ms(encoders: dict[str, Callable], query: str, repeats: int, warmup: int,
                     rounds: int = 5) -> dict[str, tuple[float, float]]:  # fmt: skip
    """{name: (p50, p99)} in milliseconds of encode(query) over `repeats` calls of each encoder, in `rounds` rounds
    in which every encoder makes `warmup` untimed calls, then repeats / rounds timed ones in a row. In a row: one
    call each in turn put a system's query behind another's thread pool, still spinning (fastembed_rt's float32
    query took 48 ms after ONNX Runtime's); in rounds: each meets the slow and fast minutes of a shared machine
    (the memory bandwidth a query's weights stream at moved 2x from minute to minute on the Xeon)."""
    samples: dict[str, list[float]] = {name: [] for name in encoders}
    for _ in range(rounds):
        for name, encode in encoders.items():
            for _ in range(warmup):
                encode(query)
            for _ in range(max(1, repeats // rounds)):
                start = time.perf_counter()
                encode(query)
                samples[name].append((time.perf_counter() - start) * 1000)
    return {name: (float(np.median(s)), float(np.percentile(s, 99))) for name, s in samples.items()}


def best_of_rounds(encoders: dict[str, Callable], texts: list[str], tokens: int, rounds: int) -> tuple[dict, dict]:
    """({name: best seconds}, {name: vectors}) of encode(texts) for every encoder, once per round, in turn: on a
    shared, noisy machine the systems then meet the same conditions, and each one's best round counts."""
    seconds, vectors = {name: float("inf") for name in encoders}, {}
    for _ in range(rounds):
        for name, encode in encoders.items():
            start = time.perf_counter()
            vectors[name] = encode(texts)
            seconds[name] = min(seconds[name], time.perf_counter() - start)
            print(f"  measured {name}: {tokens / seconds[name]:,.0f} tokens/s (best so far)", flush=True)
    return seconds, vectors
