"""Times every Triton kernel against torch's (and flash-attn's, where importable) on one GPU, and the whole
encoder against padded Hugging Face inference, all in one run; prints a table and writes a CSV.

    python3 benchmarks/gpu/bench_kernels.py --out $OUT        # on a CUDA machine (benchmarks/gpu/run.sh)
    python3 benchmarks/gpu/bench_kernels.py --smoke           # tiny shapes on the CPU interpreter: checks the script

Each kernel is timed with triton.testing.do_bench (median), on inputs rotated over enough copies to exceed
the L2 cache, and reported as TFLOP/s or GB/s and as a % of this card's roofline measured in the same run
(a device-to-device copy for memory bandwidth; the largest bf16 matmul and torch._int_mm for compute).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SMOKE = "--smoke" in sys.argv
if SMOKE:
    os.environ.setdefault("TRITON_INTERPRET", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import fastembed_rt  # noqa: E402
from fastembed_rt import kernels, ops  # noqa: E402
from fastembed_rt.testing import random_bert, synthetic_texts  # noqa: E402

DEVICE = torch.device("cpu" if SMOKE else "cuda")
L2_BYTES = 64 << 20 if SMOKE else 2 * torch.cuda.get_device_properties(0).L2_cache_size


@dataclass
class Row:
    name: str
    implementation: str
    shape: str
    ms: float
    rate: float  # TFLOP/s, TOP/s or GB/s
    unit: str
    roofline: float  # the same unit's ceiling measured in this run

    @property
    def percent(self) -> float:
        return 100.0 * self.rate / self.roofline if self.roofline else float("nan")


def bench_ms(fn, make_inputs, bytes_per_call: int) -> float:
    """Median ms of fn(*inputs), rotating over enough input sets that together they exceed twice L2."""
    copies = max(1, min(16, math.ceil(L2_BYTES / max(1, bytes_per_call))))
    sets = [make_inputs() for _ in range(copies)]
    state = {"i": 0}

    def call():
        fn(*sets[state["i"] % copies])
        state["i"] += 1

    if SMOKE:  # the interpreter: one warm call, one timed call, wall clock
        call()
        start = time.perf_counter()
        call()
        return (time.perf_counter() - start) * 1000
    import triton.testing

    return triton.testing.do_bench(call, warmup=25, rep=100, return_mode="median")


def timed_row(rows: list, name: str, implementation: str, shape: str, fn, make_inputs, nbytes: int, work: float,
              unit: str, roofline: float) -> None:
    """Times one implementation and appends its row; a baseline this torch cannot run is reported, not fatal."""
    try:
        ms = bench_ms(fn, make_inputs, nbytes)
    except Exception as e:
        if implementation.endswith("(ours)"):
            raise
        print(f"  {name} {implementation}: skipped ({type(e).__name__}: {str(e)[:160]})")
        return
    scale = 1e6 if unit == "GB/s" else 1e9
    rows.append(Row(name, implementation, shape, ms, work / ms / scale, unit, roofline))


def measure_roofline() -> dict[str, float]:
    """GB/s of a large copy (read + write), bf16 TFLOP/s of a large matmul, int8 TOP/s of torch._int_mm."""
    n = (1 << 20) if SMOKE else (1 << 30)
    src = torch.empty(n, dtype=torch.uint8, device=DEVICE)
    dst = torch.empty_like(src)
    copy_ms = bench_ms(lambda: dst.copy_(src), lambda: (), 0)
    size = 256 if SMOKE else 8192
    a = torch.randn(size, size, device=DEVICE, dtype=torch.bfloat16)
    mm_ms = bench_ms(lambda: a @ a, lambda: (), 0)
    i8 = torch.randint(-128, 128, (size, size), dtype=torch.int8, device=DEVICE)
    int_ms = bench_ms(lambda: torch._int_mm(i8, i8), lambda: (), 0)
    flops = 2 * size**3
    return {"GB/s": 2 * n / copy_ms / 1e6, "TFLOP/s": flops / mm_ms / 1e9, "TOP/s": flops / int_ms / 1e9}


def attention_rows(roof) -> list[Row]:
    rows = []
    batch, length = (2, 64) if SMOKE else (32, 512)
    configs = [(12, 64, False), (12, 64, True), (16, 128, False)] if not SMOKE else [(2, 64, False)]
    dtype = torch.float16 if SMOKE else torch.bfloat16
    for heads, head_dim, causal in configs:
        tokens = batch * length
        cu = torch.arange(0, tokens + 1, length, dtype=torch.int32, device=DEVICE)
        flops = 4 * batch * length * length * heads * head_dim // (2 if causal else 1)
        nbytes = 4 * tokens * heads * head_dim * 2

        def packed():
            return [torch.randn(tokens, heads, head_dim, device=DEVICE, dtype=dtype) for _ in range(3)]

        shape = f"{batch}x{length} tok, {heads}h x {head_dim}{' causal' if causal else ''}"
        candidates = {"triton (ours)": lambda q, k, v: kernels.attention(q, k, v, cu, length, causal=causal)}

        def sdpa_padded(q, k, v):  # sentence-transformers' layout: [B, H, L, D] (all 512 here, so no mask)
            q, k, v = (t.view(batch, length, heads, head_dim).transpose(1, 2) for t in (q, k, v))
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

        candidates["torch sdpa (padded)"] = sdpa_padded
        if not SMOKE:
            def sdpa_nested(q, k, v):  # varlen through nested (jagged) tensors
                q, k, v = (torch.nested.nested_tensor_from_jagged(t, cu.long()).transpose(1, 2) for t in (q, k, v))
                return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

            candidates["torch sdpa (nested)"] = sdpa_nested
            try:
                from flash_attn import flash_attn_varlen_func

                candidates["flash-attn"] = lambda q, k, v: flash_attn_varlen_func(q, k, v, cu, cu, length, length, causal=causal)
            except ImportError:
                pass
        for name, fn in candidates.items():
            timed_row(rows, "attention", name, shape, fn, packed, nbytes, flops, "TFLOP/s", roof["TFLOP/s"])
    return rows


def memory_bound_rows(roof) -> list[Row]:
    rows = []
    tokens, hidden = (256, 64) if SMOKE else (64 * 512, 1024)
    dtype = torch.float16 if SMOKE else torch.bfloat16
    length = 512 if not SMOKE else 64
    cu = torch.arange(0, tokens + 1, length, dtype=torch.int32, device=DEVICE)
    n_seq = tokens // length
    act = tokens * hidden * 2

    def x1():
        return (torch.randn(tokens, hidden, device=DEVICE, dtype=dtype),)

    def x2():
        return (torch.randn(tokens, hidden, device=DEVICE, dtype=dtype), torch.randn(tokens, hidden, device=DEVICE, dtype=dtype))

    w, b = torch.ones(hidden, device=DEVICE, dtype=dtype), torch.zeros(hidden, device=DEVICE, dtype=dtype)
    shape = f"{tokens}x{hidden}"
    cases = [
        ("pool mean + L2", act, x1, {
            "triton (ours)": lambda h: kernels.pool(h, cu, "mean", normalize=True),
            "torch": lambda h: F.normalize(h.view(n_seq, length, hidden).float().mean(1), dim=1),
        }),
        ("residual + layer_norm", 3 * act, x2, {
            "triton (ours)": lambda x, r: kernels.layer_norm(x, w, b, 1e-12, r),
            "torch": lambda x, r: F.layer_norm(x + r, (hidden,), w, b, 1e-12),
        }),
        ("residual + rms_norm", 4 * act, x2, {
            "triton (ours)": lambda x, r: kernels.rms_norm(x, w, 1e-6, r, return_sum=True),
            "torch": lambda x, r: (F.rms_norm(x + r, (hidden,), w, 1e-6), x + r),
        }),
        ("bias + gelu", 2 * act, x1, {
            "triton (ours)": lambda x: kernels.gelu(x, b),
            "torch": lambda x: F.gelu(x + b),
        }),
    ]  # fmt: skip
    for name, nbytes, make, impls in cases:
        for impl, fn in impls.items():
            timed_row(rows, name, impl, shape, fn, make, nbytes, nbytes, "GB/s", roof["GB/s"])
    return rows


def similarity_rows(roof) -> list[Row]:
    rows = []
    n, dim, nq, k = (4096, 64, 16, 10) if SMOKE else (1 << 20, 384, 1024, 10)
    g = torch.Generator(device=DEVICE).manual_seed(0)
    corpus = torch.randint(-128, 128, (n, dim), dtype=torch.int8, device=DEVICE, generator=g)
    queries = torch.randint(-128, 128, (nq, dim), dtype=torch.int8, device=DEVICE, generator=g)
    ops_count = 2 * nq * n * dim
    shape = f"{nq} queries x {n:,} x {dim}, k={k}"
    chunk = 1 << 17

    def int_mm_topk(q, c):  # the baseline: torch._int_mm score blocks + topk, merged
        best = []
        for start in range(0, c.shape[0], chunk):
            scores = torch._int_mm(q, c[start : start + chunk].t())
            values, ids = scores.topk(k, dim=1)
            best.append((values, ids + start))
        values, ids = torch.cat([v for v, _ in best], 1), torch.cat([i for _, i in best], 1)
        return values.topk(k, dim=1)

    for name, fn in {"triton (ours)": lambda q, c: kernels.int8_topk(q, c, k), "torch._int_mm + topk": int_mm_topk}.items():
        # The corpus (384 MB) is far larger than L2 already: no rotation needed.
        timed_row(rows, "int8 similarity top-k", name, shape, fn, lambda: (queries, corpus), 0, ops_count, "TOP/s", roof["TOP/s"])
    packed = torch.randint(0, 256, (n, dim // 8), dtype=torch.uint8, device=DEVICE, generator=g)
    qbits = torch.randint(0, 256, (nq, dim // 8), dtype=torch.uint8, device=DEVICE, generator=g)
    timed_row(rows, "hamming top-k", "triton (ours)", shape, lambda q, c: kernels.hamming_topk(q, c, k),
              lambda: (qbits, packed), 0, n * dim // 8, "GB/s", roof["GB/s"])
    return rows


def splade_rows(roof) -> list[Row]:
    """SPLADE's vocabulary projection + log1p(relu) + max pooling: the fused kernel against the logits route
    (a bf16 GEMM to [tokens, vocab], then the activation and a per-sequence max, as sentence-transformers does)."""
    rows = []
    tokens, hidden, vocab, length = (256, 64, 1000, 64) if SMOKE else (16384, 768, 30522, 128)
    dtype = torch.float16 if SMOKE else torch.bfloat16
    g = torch.Generator(device=DEVICE).manual_seed(0)
    layer = ops.Linear((torch.randn(vocab, hidden, device=DEVICE, generator=g) / hidden**0.5).to(dtype),
                       (torch.randn(vocab, device=DEVICE, generator=g) - 2).to(dtype))  # fmt: skip
    cu = torch.arange(0, tokens + 1, length, dtype=torch.int32, device=DEVICE)
    shape = f"{tokens} tok x {hidden} -> {vocab} terms"

    def logits_route(x, cu):
        weights = torch.log1p(torch.relu(F.linear(x, layer.weight, layer.bias).float()))
        return weights.view(-1, length, vocab).amax(1)

    def make():
        return torch.randn(tokens, hidden, device=DEVICE, dtype=dtype, generator=g), cu

    for name, fn in {"triton (ours)": lambda x, cu: kernels.splade_pool(x, cu, layer), "GEMM + log1p + max": logits_route}.items():
        timed_row(rows, "splade pool", name, shape, fn, make, tokens * hidden * 2, 2 * tokens * hidden * vocab, "TFLOP/s",
                  roof["TFLOP/s"])  # fmt: skip
    return rows


def maxsim_rows(roof) -> list[Row]:
    """MaxSim of 32-token queries against packed documents: the Triton kernel against a padded bmm + max + sum."""
    rows = []
    docs, length, dim = (8, 40, 32) if SMOKE else (1000, 300, 128)
    dtype = torch.float16 if SMOKE else torch.bfloat16
    g = torch.Generator(device=DEVICE).manual_seed(0)
    query_cu = torch.tensor([0, 32], dtype=torch.int32, device=DEVICE)
    doc_cu = torch.arange(0, docs * length + 1, length, dtype=torch.int32, device=DEVICE)
    shape = f"32 x {docs} docs x {length} tok x {dim}"

    def make():
        q = F.normalize(torch.randn(32, dim, device=DEVICE, generator=g), dim=1).to(dtype)
        return q, F.normalize(torch.randn(docs * length, dim, device=DEVICE, generator=g), dim=1).to(dtype)

    def padded(q, d):  # PyLate's torch route: every document's [32 x tokens] scores, then max and sum
        return torch.einsum("sh,bth->bst", q, d.view(docs, length, dim)).amax(-1).float().sum(-1)

    for name, fn in {"triton (ours)": lambda q, d: kernels.maxsim(q, query_cu, d, doc_cu), "einsum + max + sum": padded}.items():
        timed_row(rows, "maxsim", name, shape, fn, make, docs * length * dim * 2, 2 * 32 * docs * length * dim, "TFLOP/s",
                  roof["TFLOP/s"])  # fmt: skip
    return rows


def encoder_rows(roof) -> list[Row]:
    """BERT-base shape, bf16, 512-token sequences, random weights: tokens/s of fastembed_rt (packed, Triton
    kernels) against sentence-transformers-style padded Hugging Face inference with mean pooling."""
    from transformers import BertModel, PreTrainedTokenizerFast

    size = dict(hidden=64, layers=2, heads=2, intermediate=128, max_positions=128) if SMOKE else {}
    count, words = (8, 140) if SMOKE else (256, 600)
    directory = random_bert(tempfile.mkdtemp(), **size)
    texts = synthetic_texts(count, words, words, 30522)  # truncated to max length: 512 tokens each
    dtype = torch.float16 if SMOKE else torch.bfloat16
    ours = fastembed_rt.load(directory, device=DEVICE, dtype=dtype)
    tokens = sum(ours.count_tokens(texts))
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(directory / "tokenizer.json"), pad_token="[PAD]")
    hf = BertModel.from_pretrained(directory, dtype=dtype, attn_implementation="sdpa").to(DEVICE).eval()
    max_length = ours.max_seq_length

    def hf_encode(batch_size=32):
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                batch = tokenizer(texts[i : i + batch_size], padding=True, truncation=True, max_length=max_length,
                                  return_tensors="pt").to(DEVICE)  # fmt: skip
                hidden = hf(**batch).last_hidden_state
                mask = batch["attention_mask"][..., None].to(hidden.dtype)
                out.append(F.normalize(((hidden * mask).sum(1) / mask.sum(1)).float(), dim=1))
        return torch.cat(out).cpu()

    def ours_encode():
        return torch.from_numpy(ours.encode(texts, batch_tokens=32 * max_length))

    rows, outputs = [], {}
    for name, fn in {"fastembed_rt (ours)": ours_encode, "HF padded + mean pool": hf_encode}.items():
        outputs[name] = fn()  # warm-up
        if not SMOKE:
            torch.cuda.synchronize()
        start = time.perf_counter()
        repeats = 1 if SMOKE else 3
        for _ in range(repeats):
            fn()
        if not SMOKE:
            torch.cuda.synchronize()
        ms = (time.perf_counter() - start) * 1000 / repeats
        rows.append(Row("encoder bert-base e2e", name, f"{count}x{tokens // count} tok", ms, tokens / ms * 1000, "tokens/s", 0))
    a, b = outputs.values()
    print(f"  encoder: min cosine ours vs HF = {F.cosine_similarity(a, b).min().item():.5f}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.environ.get("OUT", "."), help="folder for gpu_kernels.csv")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU under TRITON_INTERPRET=1")
    args = parser.parse_args()
    name = "cpu (interpreter smoke run)" if SMOKE else torch.cuda.get_device_name(0)
    print(f"device: {name}; torch {torch.__version__}; fastembed_rt {fastembed_rt.__version__}")
    roof = measure_roofline()
    print("roofline: " + ", ".join(f"{v:,.1f} {k}" for k, v in roof.items()))
    rows = []
    for section in (attention_rows, memory_bound_rows, similarity_rows, splade_rows, maxsim_rows, encoder_rows):
        rows += section(roof)
        print(f"  {section.__name__} done", flush=True)
    print(f"\n{'kernel':24}{'implementation':24}{'shape':36}{'ms':>9}{'rate':>12} {'unit':9}{'% roof':>7}")
    for r in rows:
        print(f"{r.name:24}{r.implementation:24}{r.shape:36}{r.ms:>9.3f}{r.rate:>12,.1f} {r.unit:9}{r.percent:>7.1f}")
    encoder = {r.implementation: r.rate for r in rows if r.name.startswith("encoder")}
    if len(encoder) == 2:
        ours, hf = encoder.values()
        print(f"encoder speed-up over padded HF: {ours / hf:.2f}x")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "gpu_kernels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["device", "torch", "kernel", "implementation", "shape", "ms", "rate", "unit", "percent_of_roofline"])
        for r in rows:
            writer.writerow([name, torch.__version__, r.name, r.implementation, r.shape, round(r.ms, 4), round(r.rate, 2), r.unit,
                             round(r.percent, 1)])  # fmt: skip
    print(f"wrote {out / 'gpu_kernels.csv'}")


if __name__ == "__main__":
    main()
