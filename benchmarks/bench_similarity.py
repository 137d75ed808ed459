"""Exact top-k search on the CPU: fastembed_rt's C++ kernels against numpy, FAISS, usearch and NumKong, one run.

    python -m pytest benchmarks/bench_similarity.py                           # BENCH_N=100000 for a quick run
    FASTEMBED_RT_ISA=avx2 python -m pytest benchmarks/bench_similarity.py     # the AVX2 paths, peers capped too

For each corpus (n x 1024-bit binary codes, n x 384 int8 and the same as float32; 100 queries, k = 10, all
threads) pytest-benchmark runs rounds in which every implementation searches once, in turn, so that all of
them share the machine's slow and fast minutes; each one's best round counts. The summary gives ms per batch,
comparisons/s, the ratio of each peer to fastembed_rt, and the fraction of this machine's compute ceiling
for the instruction mix at the active ISA (int8 and float32 multiply-adds, xor + popcount bits; measured in
the same run by fastembed_rt._C.compute_ceilings). Rows are appended to benchmarks/results/similarity.csv
with the ISA.

Under FASTEMBED_RT_ISA=avx2 the peers that can be capped are: FAISS loads its AVX2 build (FAISS_OPT_LEVEL),
OpenBLAS (FAISS's and numpy's) runs Haswell's kernels (OPENBLAS_CORETYPE), NumKong drops its AVX-512
capabilities. usearch picks its own kernels and cannot be capped. NumKong's rows score every pair into a
[queries x corpus] matrix (with cdist, and with its packed GEMM-style kernel on all threads), then take the
top k with numpy's argpartition. A peer that is not installed is left out of the table.
"""

from __future__ import annotations

import os

if os.environ.get("FASTEMBED_RT_ISA", "").strip().lower() == "avx2":  # before numpy and the peers load their BLAS
    os.environ.setdefault("FAISS_OPT_LEVEL", "avx2")
    os.environ.setdefault("OPENBLAS_CORETYPE", "Haswell")

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from fastembed_rt import _C, isa, quantize_embeddings
from results_csv import append_rows

N = int(os.environ.get("BENCH_N", 1_000_000))
QUERIES, K, DIM, BITS = 100, 10, 384, 1024
THREADS = os.cpu_count() or 1
ISA = isa.active()
# Work per query-corpus comparison, in the units of the matching ceiling.
WORK = {"binary": ("hamming_bits_per_s", BITS), "int8": ("int8_macs_per_s", DIM), "float32": ("fp32_fmas_per_s", DIM)}

ROUNDS = int(os.environ.get("BENCH_ROUNDS", 5))
IMPLEMENTATIONS = {
    "binary": ["fastembed_rt", "faiss IndexBinaryFlat", "numkong cdist", "numkong packed"],
    "int8": ["fastembed_rt", "faiss SQ8", "usearch exact", "numkong cdist", "numkong packed"],
    "float32": ["fastembed_rt", "numpy", "faiss IndexFlatIP"],
}
INPUTS = {"binary": ("query_codes", "codes"), "int8": ("query_int8", "int8"), "float32": ("queries", "floats")}


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


def top_k(scores: np.ndarray, smallest: bool) -> np.ndarray:
    """Ids of the k best per row of a full score matrix, best first."""
    keys = scores if smallest else -scores.astype(np.int64 if scores.dtype.kind in "iu" else scores.dtype)
    part = np.argpartition(keys, K, axis=1)[:, :K]
    return np.take_along_axis(part, np.argsort(np.take_along_axis(keys, part, 1), axis=1), 1)


def numkong_searcher(kind: str, impl: str, queries: np.ndarray, corpus: np.ndarray):
    nk = pytest.importorskip("numkong", reason="peer numkong is not installed")
    if ISA == "avx2":
        for capability, present in nk.get_capabilities().items():
            if present and capability not in ("serial", "haswell"):
                nk.disable_capability(capability)
    smallest = kind == "binary"
    if impl == "numkong cdist":
        options = {"metric": "hamming", "dtype": "uint1"} if kind == "binary" else {"metric": "dot"}
        return lambda: top_k(np.asarray(nk.cdist(queries, corpus, **options)), smallest)
    packed = nk.hammings_pack(corpus) if kind == "binary" else nk.dots_pack(corpus)
    score = nk.hammings_packed if kind == "binary" else nk.dots_packed
    bounds = np.linspace(0, len(queries), THREADS + 1).astype(int)

    def part(first: int, last: int) -> np.ndarray:  # each thread scores and selects its own queries
        return top_k(np.asarray(score(queries[first:last], packed)), smallest)

    pool = ThreadPoolExecutor(THREADS)
    return lambda: np.vstack(list(pool.map(part, bounds[:-1], bounds[1:])))


def searcher(kind: str, impl: str, d: dict):
    """A no-argument search call with every index built beforehand, so that only search is timed."""
    queries, corpus = (d[name] for name in INPUTS[kind])
    if impl == "fastembed_rt":
        kernel = {"binary": _C.topk_hamming, "int8": _C.topk_dot_i8, "float32": _C.topk_dot_f32}[kind]
        return lambda: kernel(queries, corpus, K)
    if impl == "numpy":
        return lambda: top_k(queries @ corpus.T, smallest=False)
    if impl.startswith("numkong"):
        return numkong_searcher(kind, impl, queries, corpus)
    if impl.startswith("faiss"):
        faiss = pytest.importorskip("faiss", reason="peer faiss-cpu is not installed")
        faiss.omp_set_num_threads(THREADS)
        if kind == "binary":
            index = faiss.IndexBinaryFlat(BITS)
            index.add(corpus)
            return lambda: index.search(queries, K)
        if kind == "int8":
            index = faiss.IndexScalarQuantizer(DIM, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
            index.train(d["floats"][:100_000])
        else:
            index = faiss.IndexFlatIP(DIM)
        index.add(d["floats"])
        return lambda: index.search(d["queries"], K)
    usearch = pytest.importorskip("usearch.index", reason="peer usearch is not installed")
    return lambda: usearch.search(corpus, queries, K, "ip", exact=True, threads=THREADS)


@pytest.fixture(scope="module")
def summary(summary_lines):
    """Collects each case's best time; at the end prints the comparison table and appends the CSV."""
    best: dict[tuple[str, str], float] = {}
    yield best
    ceilings = _C.compute_ceilings(THREADS) if ISA != "scalar" else None  # no ceiling loops below AVX2
    write = summary_lines.append
    write(f"\n{N:,} vectors, {QUERIES} queries, k={K}, {THREADS} threads, ISA {ISA}")
    if ceilings:
        write("ceilings: " + ", ".join(f"{name} {ceilings[name]:.3g}" for name, _ in WORK.values()))
    write(f"{'corpus':<9}{'implementation':<24}{'ms/batch':>10}{'comparisons/s':>15}{'vs ours':>9}{'of ceiling':>12}")
    rows = []
    for (kind, impl), seconds in best.items():
        comparisons = N * QUERIES / seconds
        ours = best.get((kind, "fastembed_rt"))
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


@pytest.mark.parametrize("kind", list(IMPLEMENTATIONS))
def test_search(benchmark, kind, data, summary):
    searches = {}
    for impl in IMPLEMENTATIONS[kind]:
        try:
            searches[impl] = searcher(kind, impl, data)
        except pytest.skip.Exception:  # a peer that is not installed
            continue
        summary[(kind, impl)] = float("inf")

    def one_round():
        for impl, search in searches.items():
            start = time.perf_counter()
            search()
            summary[(kind, impl)] = min(summary[(kind, impl)], time.perf_counter() - start)

    benchmark.group = kind
    benchmark.pedantic(one_round, rounds=ROUNDS, warmup_rounds=1)
