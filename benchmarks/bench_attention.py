"""The CPU attention kernels against torch's scaled_dot_product_attention, one run.

    python benchmarks/bench_attention.py [--threads T] [--repeats R]

For each shape (sequences x tokens, heads x head size), non-causal: float32 through our kernel and SDPA, and
bfloat16 through every kernel of ours that runs on this CPU (`_C.attention_varlen(bf16_products=...)`: "amx",
"dot", "widened") and SDPA. Our kernels take the packed tokens (cu_seqlens); SDPA the same tokens as a padded
[B, H, L, D] batch of equal lengths, so it pays no padding here. Best of R calls each; prints ms and GFLOP/s
(4 L^2 H D per sequence).
"""

from __future__ import annotations

import argparse
import time

import fastembed_rt  # first: it sets the ISA cap before torch loads
import torch
import torch.nn.functional as F

from fastembed_rt import _C, isa
from fastembed_rt.ops import cpu

SHAPES = [(8, 512, 12, 32), (8, 256, 12, 32), (32, 128, 12, 32), (128, 32, 12, 32), (4, 512, 12, 64), (4, 512, 16, 128)]


def best_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3


def bf16_kernels(head_dim: int) -> list[str]:
    """The bfloat16 kernels that run here for this head size: those the binding does not refuse."""
    x = cpu._array(torch.zeros(1, 1, head_dim, dtype=torch.bfloat16))
    runnable = []
    for name in ("amx", "dot", "widened"):
        try:
            _C.attention_varlen(x, x, x, torch.tensor([0, 1], dtype=torch.int32).numpy(), 1.0, bf16_products=name)
        except ValueError:
            continue
        runnable.append(name)
    return runnable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"ISA {isa.active()}, {args.threads} threads; bfloat16 kernel of this CPU: {_C.bf16_attention_products()}")
    print(f"{'shape':>22} {'dtype':>9} {'system':>10} {'ms':>8} {'GFLOP/s':>8}")
    for seqs, length, heads, dim in SHAPES:
        tokens = seqs * length
        qkv = torch.randn(tokens, 3, heads, dim, generator=torch.Generator().manual_seed(0))
        cu = torch.arange(0, tokens + 1, length, dtype=torch.int32).numpy()
        flops = 4 * seqs * length * length * heads * dim
        shape = f"{seqs}x{length} {heads}x{dim}"
        for dtype, kernels in ((torch.float32, ["auto"]), (torch.bfloat16, bf16_kernels(dim))):
            x = qkv.to(dtype)
            arrays = [cpu._array(x[:, i]) for i in range(3)]
            padded = [x[:, i].reshape(seqs, length, heads, dim).transpose(1, 2) for i in range(3)]
            rows = [(f"ours {k}" if dtype == torch.bfloat16 else "ours",
                     lambda k=k: _C.attention_varlen(*arrays, cu, dim**-0.5, False, args.threads, bf16_products=k))
                    for k in kernels]  # fmt: skip
            rows.append(("sdpa", lambda: F.scaled_dot_product_attention(*padded)))
            for name, fn in rows:
                ms = best_ms(fn, args.repeats)
                print(f"{shape:>22} {str(dtype)[6:]:>9} {name:>10} {ms:8.2f} {flops / ms / 1e6:8.0f}")


if __name__ == "__main__":
    main()
