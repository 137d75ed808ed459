"""Exact top-k search on the CPU: fastembed_rt's C++ kernels against numpy, FAISS and usearch, one run.

    python benchmarks/bench_similarity.py [--n 1000000] [--queries 100] [--k 10]

Corpora: n x 1024-bit binary codes, n x 384 int8 and the same as float32. Prints ms per query batch,
comparisons/s and the ratio to each peer; appends rows to benchmarks/results/similarity.csv.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from fastembed_rt import _C

RESULTS = Path(__file__).resolve().parent / "results" / "similarity.csv"


def best_ms(fn, repeats: int) -> float:
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def numpy_topk(scores: np.ndarray, k: int) -> np.ndarray:
    part = np.argpartition(-scores, k, axis=1)[:, :k]
    return np.take_along_axis(part, np.argsort(-np.take_along_axis(scores, part, 1), axis=1), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    threads = os.cpu_count() or 1
    rng = np.random.default_rng(0)
    n, nq, k, dim = args.n, args.queries, args.k, 384
    rows = []

    def record(kind, impl, ms, reference_ms=None):
        rows.append((kind, impl, ms, n * nq / (ms / 1000)))

    codes = rng.integers(0, 256, (n, 128), dtype=np.uint8)
    qcodes = rng.integers(0, 256, (nq, 128), dtype=np.uint8)
    record("binary 1024-bit", "fastembed_rt", best_ms(lambda: _C.topk_hamming(qcodes, codes, k), args.repeats))
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
        binary = faiss.IndexBinaryFlat(1024)
        binary.add(codes)
        record("binary 1024-bit", "faiss IndexBinaryFlat", best_ms(lambda: binary.search(qcodes, k), args.repeats))
    except ImportError:
        faiss = None
    del codes

    floats = rng.standard_normal((n, dim)).astype(np.float32)
    floats /= np.linalg.norm(floats, axis=1, keepdims=True)
    queries = floats[rng.integers(0, n, nq)] + 0.01
    ranges = np.vstack([floats.min(0), floats.max(0)])
    steps = (ranges[1] - ranges[0]) / 255
    int8 = (np.clip(np.floor((floats - ranges[0]) / steps), 0, 255) - 128).astype(np.int8)
    q8 = (np.clip(np.floor((queries - ranges[0]) / steps), 0, 255) - 128).astype(np.int8)
    record("int8 384-d", "fastembed_rt", best_ms(lambda: _C.topk_dot_i8(q8, int8, k), args.repeats))
    if faiss is not None:
        sq8 = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        sq8.train(floats[:100_000])
        sq8.add(floats)
        record("int8 384-d", "faiss SQ8", best_ms(lambda: sq8.search(queries, k), args.repeats))
        del sq8
    try:
        from usearch.index import search as usearch_search

        record("int8 384-d", "usearch exact i8",
               best_ms(lambda: usearch_search(int8, q8, k, "ip", exact=True, threads=threads), args.repeats))  # fmt: skip
    except ImportError:
        pass
    record("float32 384-d", "fastembed_rt", best_ms(lambda: _C.topk_dot_f32(queries, floats, k), args.repeats))
    record("float32 384-d", "numpy matmul+argpartition", best_ms(lambda: numpy_topk(queries @ floats.T, k), args.repeats))
    if faiss is not None:
        flat = faiss.IndexFlatIP(dim)
        flat.add(floats)
        record("float32 384-d", "faiss IndexFlatIP", best_ms(lambda: flat.search(queries, k), args.repeats))

    print(f"{n:,} vectors, {nq} queries, k={k}, {threads} threads, ISA {_C.similarity_isas()[0]}")
    print(f"{'corpus':<17}{'implementation':<28}{'ms/batch':>10}{'comparisons/s':>15}{'ours is':>10}")
    ours = {kind: ms for kind, impl, ms, _ in rows if impl == "fastembed_rt"}
    for kind, impl, ms, rate in rows:
        ratio = "" if impl == "fastembed_rt" else f"{ms / ours[kind]:.2f}x"
        print(f"{kind:<17}{impl:<28}{ms:>10.1f}{rate:>15.3g}{ratio:>10}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    new_file = not RESULTS.exists()
    with open(RESULTS, "a", newline="") as f:
        writer = csv.writer(f)
        if new_file:
            writer.writerow(["date", "machine", "threads", "n", "queries", "k", "corpus", "implementation", "ms", "comparisons_per_s"])
        now = datetime.datetime.now().isoformat(timespec="seconds")
        for kind, impl, ms, rate in rows:
            writer.writerow([now, platform.machine(), threads, n, nq, k, kind, impl, round(ms, 2), f"{rate:.4g}"])


if __name__ == "__main__":
    main()
