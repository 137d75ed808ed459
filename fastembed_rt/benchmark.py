"""`fastembed-rt bench`: every implementation of every op available on this device, timed on standard
shapes, checked against the reference, and set against ceilings measured in the same run.

Ceilings: memory bandwidth (a large tensor copy) for the memory-bound ops, and the GEMM throughput of the
op's precision (torch's own matmul on large square matrices) for the compute-bound ones.
"""

from __future__ import annotations

import csv
import datetime
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from . import _C, isa, ops
from .ops.dispatch import available

MIB = 1 << 20


@dataclass
class OpResult:
    op: str
    dtype: str
    implementation: str
    shape: str
    ms: float
    throughput: float  # GFLOP/s or GB/s
    unit: str
    ceiling_percent: float
    max_abs_error: float


def median_seconds(fn: Callable, repeats: int, min_seconds: float = 0.2) -> float:
    """Median over at least `repeats` calls (more for fast ops, up to min_seconds in all), after one warm-up."""
    fn()
    samples = []
    start = time.perf_counter()
    while len(samples) < repeats or (time.perf_counter() - start < min_seconds and len(samples) < 1000):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def measure_ceilings(device: torch.device, repeats: int = 5) -> dict[str, float]:
    """GB/s of a 24 MiB copy (the standard shapes' working-set scale, so cache-resident where theirs is), and
    GFLOP/s (GOP/s for int8) of 2048^3 GEMMs: the best of torch.matmul and oneDNN with a prepacked weight. On the
    CPU, what torch has no fast kernel for is bounded by what our kernels run instead: bfloat16 without oneDNN
    bfloat16 by the float32 GEMM (its weights are widened to float32 FMAs), int8 without VNNI by this machine's
    vpmaddubsw peak at the active ISA (_C.compute_ceilings; 2 ops per multiply-add)."""
    source = torch.empty(6 * MIB, dtype=torch.float32, device=device).fill_(1.0)
    target = torch.empty_like(source)
    ceilings = {"GB/s": 2 * source.numel() * 4 / median_seconds(lambda: target.copy_(source), repeats) / 1e9}
    n = 2048
    on_cpu = device.type == "cpu"
    for dtype in (torch.float32, torch.bfloat16):
        if on_cpu and dtype == torch.bfloat16 and not isa.onednn_bfloat16():
            ceilings["GEMM bfloat16"] = ceilings["GEMM float32"]
            continue
        a, b = torch.randn(n, n, device=device).to(dtype), torch.randn(n, n, device=device).to(dtype)
        best = median_seconds(lambda: a @ b, repeats)
        if on_cpu and ops.onednn_available():
            packed = torch.ops.mkldnn._reorder_linear_weight(b, n)
            best = min(best, median_seconds(lambda: torch.ops.mkldnn._linear_pointwise(a, packed, None, "none", [], ""), repeats))
        ceilings[f"GEMM {_name(dtype)}"] = 2 * n**3 / best / 1e9
    if on_cpu and not isa.int_mm_fast():
        ceilings["GEMM int8"] = 2 * _C.compute_ceilings(torch.get_num_threads(), 0.2)["int8_macs_per_s"] / 1e9
    else:
        a = torch.randint(-127, 128, (n, n), dtype=torch.int8, device=device)
        ceilings["GEMM int8"] = 2 * n**3 / median_seconds(lambda: torch._int_mm(a, a), repeats) / 1e9
    return ceilings


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


@dataclass
class Case:
    """One op on one standard shape: calls per implementation, the work it does, and what bounds it."""

    op: str
    dtype: torch.dtype
    shape: str
    call: Callable[[Callable], torch.Tensor]  # given an implementation's fn, runs the op once
    work: float  # FLOPs (compute-bound) or bytes moved (memory-bound)
    ceiling: str  # a key of measure_ceilings()


def standard_cases(device: torch.device) -> list[Case]:
    """all-MiniLM-L6-v2 / BERT-base shapes: 4,096 packed tokens, hidden 384, 12 heads of 32, FFN 1,536."""
    g = torch.Generator(device="cpu").manual_seed(0)

    def randn(*shape, dtype=torch.float32):
        return torch.randn(*shape, generator=g).to(device, dtype)

    tokens, hidden, heads, head_dim, ffn = 4096, 384, 12, 32, 1536
    lengths = [128] * 32
    cu = torch.tensor([0] + [sum(lengths[: i + 1]) for i in range(len(lengths))], dtype=torch.int32, device=device)
    cases = []
    for dtype in (torch.float32, torch.bfloat16):
        size = torch.finfo(dtype).bits // 8
        q, k, v = (randn(tokens, heads, head_dim, dtype=dtype) for _ in range(3))
        for causal in (False, True):
            flops = 4 * sum(n * n for n in lengths) * heads * head_dim / (2 if causal else 1)
            cases.append(Case("attention", dtype, f"32x128 tokens, {heads}x{head_dim}{' causal' if causal else ''}",
                              lambda fn, causal=causal, q=q, k=k, v=v: fn(q, k, v, cu, 128, None, causal),
                              flops, f"GEMM {_name(dtype)}"))  # fmt: skip
        x, residual = randn(tokens, hidden, dtype=dtype), randn(tokens, hidden, dtype=dtype)
        weight, bias = randn(hidden, dtype=dtype), randn(hidden, dtype=dtype)
        moved = 3 * tokens * hidden * size
        cases.append(Case("layer_norm", dtype, f"{tokens}x{hidden} + residual",
                          lambda fn, x=x, r=residual, w=weight, b=bias: fn(x, w, b, 1e-12, r), moved, "GB/s"))  # fmt: skip
        cases.append(Case("rms_norm", dtype, f"{tokens}x{hidden} + residual",
                          lambda fn, x=x, r=residual, w=weight: fn(x, w, 1e-6, r, False), moved, "GB/s"))  # fmt: skip
        up, up_bias = randn(tokens, ffn, dtype=dtype), randn(ffn, dtype=dtype)
        cases.append(Case("gelu", dtype, f"{tokens}x{ffn} + bias", lambda fn, x=up, b=up_bias: fn(x, b, "none"),
                          2 * tokens * ffn * size, "GB/s"))  # fmt: skip
        layer = ops.Linear(randn(ffn, hidden, dtype=dtype) / hidden**0.5, randn(ffn, dtype=dtype))
        cases.append(Case("linear", dtype, f"{tokens}x{hidden} -> {ffn}, GELU",
                          lambda fn, layer=layer, x=x: fn(layer, x, "gelu"), 2 * tokens * hidden * ffn, f"GEMM {_name(dtype)}"))  # fmt: skip
        cases.append(Case("pool", dtype, f"{tokens}x{hidden}, 32 seqs, mean + L2",
                          lambda fn, x=x: fn(x, cu, "mean", True, None), tokens * hidden * size, "GB/s"))  # fmt: skip
    x = randn(tokens, hidden)
    up = ops.Linear(randn(ffn, hidden) / hidden**0.5, randn(ffn), int8=True, seven_bit=True)  # as in models/bert.py
    down = ops.Linear(randn(hidden, ffn) / ffn**0.5, randn(hidden), int8=True, asymmetric_input=True)
    cases.append(Case("int8_linear", torch.float32, f"{tokens}x{hidden} -> {ffn}, GELU",
                      lambda fn: fn(x, up, "gelu"), 2 * tokens * hidden * ffn, "GEMM int8"))  # fmt: skip
    cases.append(Case("int8_feed_forward", torch.float32, f"{tokens}x{hidden} -> {ffn} -> {hidden}, GELU",
                      lambda fn: fn(x, up, down, "gelu"), 4 * tokens * hidden * ffn, "GEMM int8"))  # fmt: skip
    # SPLADE's vocabulary projection + log1p(relu) + max pooling (BERT's 30,522 terms), 8 sequences of 128 tokens
    vocab, terms_x = 30522, randn(1024, hidden)
    head = ops.Linear(randn(vocab, hidden) / hidden**0.5, randn(vocab) - 2, panels_only=True)
    cu_8 = cu[:9]
    cases.append(Case("splade_pool", torch.float32, f"1024x{hidden} -> {vocab} terms, 8 seqs, max",
                      lambda fn: fn(terms_x, cu_8, head, "max", "relu"), 2 * 1024 * hidden * vocab, "GEMM float32"))  # fmt: skip
    # MaxSim (late interaction): one 32-token query against 100 documents of 300 tokens, 128 dims
    query = F.normalize(randn(32, 128), dim=1)
    documents = F.normalize(randn(30000, 128), dim=1)
    query_cu = torch.tensor([0, 32], dtype=torch.int32, device=device)
    doc_cu = torch.arange(0, 30001, 300, dtype=torch.int32, device=device)
    cases.append(Case("maxsim", torch.float32, "32-token query x 100 docs x 300 tokens, 128 dims",
                      lambda fn: fn(query, query_cu, documents, doc_cu, False), 2 * 32 * 30000 * 128, "GEMM float32"))  # fmt: skip
    return cases


def run_op_benchmarks(device: torch.device, ceilings: dict[str, float], repeats: int = 10,
                      only: set[str] | None = None) -> list[OpResult]:  # fmt: skip
    results = []
    for case in standard_cases(device):
        if only and case.op not in only:
            continue
        impls = available(case.op, device, case.dtype)
        reference = next(impl for impl in impls if impl.name == ops.REFERENCE)
        with torch.inference_mode():
            want = case.call(reference.fn).float()
            for impl in impls:
                got = case.call(impl.fn).float()
                error = float((got - want).abs().max()) if got.numel() else 0.0
                seconds = median_seconds(lambda impl=impl: case.call(impl.fn), repeats)
                rate = case.work / seconds / 1e9
                unit = "GB/s" if case.ceiling == "GB/s" else ("GOP/s" if "int8" in case.ceiling else "GFLOP/s")
                results.append(OpResult(case.op, _name(case.dtype), impl.name, case.shape, seconds * 1e3, rate, unit,
                                        100 * rate / ceilings[case.ceiling], error))  # fmt: skip
    return results


def append_csv(path: Path, header: list[str], rows: list[list]) -> None:
    """Appends rows to a CSV file, each prefixed with the date and the ISA our kernels ran with; a new file gets
    the header. A file from before the isa column gets it, as 'unrecorded' in its old rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        with open(path, newline="", encoding="utf-8") as f:
            old = list(csv.reader(f))
        if old and "isa" not in old[0]:
            with open(path, "w", newline="", encoding="utf-8") as f:
                csv.writer(f).writerows([old[0][:1] + ["isa"] + old[0][1:]] + [r[:1] + ["unrecorded"] + r[1:] for r in old[1:]])
    new_file = not path.exists()
    now = datetime.datetime.now().isoformat(timespec="seconds")
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        if new_file:
            writer.writerow(["date", "isa", *header])
        writer.writerows([now, isa.active(), *row] for row in rows)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({torch.get_num_threads()} threads)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def format_table(results: list[OpResult]) -> str:
    lines = [f"{'op':<18}{'dtype':<10}{'impl':<11}{'shape':<36}{'ms':>9}{'rate':>16}{'% ceil':>8}{'max err':>10}"]
    for r in results:
        lines.append(f"{r.op:<18}{r.dtype:<10}{r.implementation:<11}{r.shape:<36}{r.ms:>9.3f}"
                     f"{r.throughput:>9.1f} {r.unit:<6}{r.ceiling_percent:>8.1f}{r.max_abs_error:>10.1e}")  # fmt: skip
    return "\n".join(lines)


def e2e(texts: list[str], threads: int, model: str = "all-MiniLM-L6-v2", revision: str | None = None) -> dict:
    """A whole model (default: the bundled all-MiniLM-L6-v2), fastembed_rt at each precision against
    sentence-transformers on the same files."""
    import fastembed_rt
    from fastembed_rt.engine import load_embedder

    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ValueError("bench --e2e compares against sentence-transformers: pip install sentence-transformers") from None
    torch.set_num_threads(threads)
    ours = load_embedder(model, device="cpu", revision=revision)
    theirs = SentenceTransformer(str(ours.spec.path), device="cpu")
    tokens = sum(ours.count_tokens(texts))
    systems = {"sentence-transformers float32": lambda t: theirs.encode(t, batch_size=32, normalize_embeddings=True)}
    for dtype in ("float32", "bfloat16", "int8"):
        systems[f"fastembed_rt {dtype}"] = fastembed_rt.load(ours.spec.path, device="cpu", dtype=dtype).encode
    rows = {}
    for name, encode in systems.items():
        encode(texts[:32])
        seconds = median_seconds(lambda encode=encode: encode(texts), 1, min_seconds=0)
        query = median_seconds(lambda encode=encode: encode("how do I reset my password"), 30)
        rows[name] = {"tokens_per_s": tokens / seconds, "texts_per_s": len(texts) / seconds, "query_ms": query * 1e3}
    base = rows["sentence-transformers float32"]["tokens_per_s"]
    for row in rows.values():
        row["ratio"] = row["tokens_per_s"] / base
    return {"texts": len(texts), "tokens": tokens, "threads": threads, "rows": rows}

