"""Exact top-k search on the CPU: fastembed_rt's C++ kernels against numpy, FAISS and usearch, one run.

    python -m pytest benchmarks/bench_similarity.py            # BENCH_N=100000 for a quick run

pytest-benchmark times each (corpus, implementation) pair: n x 1024-bit binary codes, n x 384 int8 and
the same as float32, 100 queries, k = 10, all threads. The summary at the end gives ms per query batch,
comparisons/s, the ratio of each peer to fastembed_rt, and the fraction of this machine's compute ceiling
for the instruction mix (VNNI int8 multiply-adds, float32 FMAs, xor+popcount bits; measured in the same
run by fastembed_rt._C.compute_ceilings). Rows are appended to benchmarks/results/similarity.csv.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from fastembed_rt import _C, quantize_embeddings
from results_csv import append_rows

N = int(os.environ.get("BENCH_N", 1_000_000))
QUERIES, K, DIM, BITS = 100, 10, 384, 1024
THREADS = os.cpu_count() or 1
# Work per query-corpus comparison, in the units of the matching ceiling.
WORK = {"binary": ("hamming_bits_per_s", BITS), "int8": ("int8_macs_per_s", DIM), "float32": ("fp32_fmas_per_s", DIM)}

CASES = [
    ("binary", "fastembed_rt"), ("binary", "faiss IndexBinaryFlat"),
    ("int8", "fastembed_rt"), ("int8", "faiss SQ8"), ("int8", "usearch exact"),
    ("float32", "fastembed_rt"), ("float32", "numpy"), ("float32", "faiss IndexFlatIP"),
]  # fmt: skip


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    floats = rng.standard_normal((N, DIM)).astype(np.float32)
    floats /= np.linalg.norm(floats, axis=1, keepdims=True)
    queries = floats[rng.integers(0, N, QUERIES)] + 0.01
    ranges = np.vstack([floats.min(0), floats.max(0)])
    return {
        "codes": rng.integers(0, 256, (N, BITS // 8), dtype=np.uint8),
        "query_codes": rng.integers(0, 256, (QUERIES, BITS // 8), dtype=np.uint8),
        "floats": floats,
        "queries": queries,
        "int8": quantize_embeddings(floats, "int8", ranges=ranges),
        "query_int8": quantize_embeddings(queries, "int8", ranges=ranges),
    }


def searcher(kind: str, impl: str, d: dict):
    """A no-argument search call with every index built beforehand, so that only search is timed."""
    if impl == "fastembed_rt":
        kernel = {"binary": _C.topk_hamming, "int8": _C.topk_dot_i8, "float32": _C.topk_dot_f32}[kind]
        q, c = {"binary": ("query_codes", "codes"), "int8": ("query_int8", "int8"), "float32": ("queries", "floats")}[kind]
        return lambda: kernel(d[q], d[c], K)
    if impl == "numpy":
        def numpy_topk():
            scores = d["queries"] @ d["floats"].T
            part = np.argpartition(-scores, K, axis=1)[:, :K]
            return np.take_along_axis(part, np.argsort(-np.take_along_axis(scores, part, 1), axis=1), 1)
        return numpy_topk
    if impl.startswith("faiss"):
        faiss = pytest.importorskip("faiss", reason="peer faiss-cpu is not installed")
        faiss.omp_set_num_threads(THREADS)
        if kind == "binary":
            index = faiss.IndexBinaryFlat(BITS)
            index.add(d["codes"])
            return lambda: index.search(d["query_codes"], K)
        if kind == "int8":
            index = faiss.IndexScalarQuantizer(DIM, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
            index.train(d["floats"][:100_000])
        else:
            index = faiss.IndexFlatIP(DIM)
        index.add(d["floats"])
        return lambda: index.search(d["queries"], K)
    usearch = pytest.importorskip("usearch.index", reason="peer usearch is not installed")
    return lambda: usearch.search(d["int8"], d["query_int8"], K, "ip", exact=True, threads=THREADS)


@pytest.fixture(scope="module")
def summary(summary_lines):
    """Collects each case's median time; at the end prints the comparison table and appends the CSV."""
    medians: dict[tuple[str, str], float] = {}
    yield medians
    ceilings = _C.compute_ceilings(THREADS) if "avx512" in _C.supported_isas() else None
    write = summary_lines.append
    write(f"\n{N:,} vectors, {QUERIES} queries, k={K}, {THREADS} threads, ISA {_C.supported_isas()[0]}")
    if ceilings:
        write("ceilings: " + ", ".join(f"{name} {ceilings[name]:.3g}" for name, _ in WORK.values()))
    write(f"{'corpus':<9}{'implementation':<24}{'ms/batch':>10}{'comparisons/s':>15}{'vs ours':>9}{'of ceiling':>12}")
    rows = []
    for (kind, impl), seconds in medians.items():
        comparisons = N * QUERIES / seconds
        ours = medians.get((kind, "fastembed_rt"))
        ratio = f"{seconds / ours:.2f}x" if ours and impl != "fastembed_rt" else ""
        unit, work = WORK[kind]
        fraction = f"{comparisons * work / ceilings[unit]:.1%}" if ceilings else "n/a"
        write(f"{kind:<9}{impl:<24}{seconds * 1000:>10.1f}{comparisons:>15.3g}{ratio:>9}{fraction:>12}")
        rows.append([kind, impl, round(seconds * 1000, 2), f"{comparisons:.4g}", ratio, fraction])
    append_rows(
        "similarity.csv",
        ["threads", "n", "queries", "k", "corpus", "implementation", "ms", "comparisons_per_s", "peer_over_ours",
         "fraction_of_ceiling"],
        [[THREADS, N, QUERIES, K, *row] for row in rows],
    )

@pytest.mark.parametrize("kind,impl", CASES, ids=[f"{k}-{i.replace(' ', '_')}" for k, i in CASES])
def test_search(benchmark, kind, impl, data, summary):
    search = searcher(kind, impl, data)
    benchmark.group = kind
    benchmark.pedantic(search, rounds=3, warmup_rounds=1)
    summary[(kind, impl)] = benchmark.stats.stats.median
