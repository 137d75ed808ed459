"""Bias + GELU in Triton (erf or tanh form): one read, one write, the math in float32.

Reference twin: fastembed_rt.ops.reference.gelu.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 1024


@triton.jit
def _bias_gelu_kernel(X, BIAS, OUT, n, width, HAS_BIAS: tl.constexpr, TANH: tl.constexpr, BLOCK: tl.constexpr):
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    ok = offsets < n
    x = tl.load(X + offsets, mask=ok, other=0.0).to(tl.float32)
    if HAS_BIAS:
        x += tl.load(BIAS + offsets % width, mask=ok, other=0.0).to(tl.float32)
    if TANH:
        inner = 0.7978845608028654 * (x + 0.044715 * x * x * x)
        # tanh(u) = 1 - 2 / (exp(2u) + 1), with exp kept finite: no NaN at either end
        y = 0.5 * x * (2.0 - 2.0 / (tl.exp(tl.minimum(2.0 * inner, 80.0)) + 1.0))
    else:
        y = 0.5 * x * (1.0 + tl.erf(x * 0.7071067811865476))
    tl.store(OUT + offsets, y.to(OUT.dtype.element_ty), mask=ok)


def gelu(x: torch.Tensor, bias: torch.Tensor | None = None, approximate: str = "none") -> torch.Tensor:
    """GELU(x + bias) with bias broadcast over the last dim; approximate "none" (erf) or "tanh"."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    width = x.shape[-1] if x.dim() else 1
    if bias is not None and bias.shape != (width,):
        raise ValueError(f"bias must be [{width}], got {tuple(bias.shape)}")
    x = x.contiguous()
    out = torch.empty_like(x)
    n = x.numel()
    if n:
        _bias_gelu_kernel[(triton.cdiv(n, BLOCK),)](
            x, bias if bias is not None else x, out, n, width,
            HAS_BIAS=bias is not None, TANH=approximate == "tanh", BLOCK=BLOCK,
        )  # fmt: skip
    return out
