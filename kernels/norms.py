"""Fused residual-add + LayerNorm / RMSNorm in Triton: each row is read once (x and residual), normalized in
float32 in registers, and written once (plus the sum, for pre-norm models that carry it as the next residual).

Reference twins: fastembed_rt.ops.reference.layer_norm and rms_norm.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _norm_kernel(X, R, W, B, OUT, SUM, stride_x, stride_r, stride_o, stride_s, width, eps,
                 RMS: tl.constexpr, HAS_RESIDUAL: tl.constexpr, HAS_BIAS: tl.constexpr, WRITE_SUM: tl.constexpr,
                 BLOCK: tl.constexpr):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    ok = cols < width
    x = tl.load(X + row * stride_x + cols, mask=ok, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        x += tl.load(R + row * stride_r + cols, mask=ok, other=0.0).to(tl.float32)
    if WRITE_SUM:
        tl.store(SUM + row * stride_s + cols, x.to(SUM.dtype.element_ty), mask=ok)
    if RMS:
        y = x * tl.rsqrt(tl.sum(x * x, 0) / width + eps)
    else:
        mean = tl.sum(x, 0) / width
        centered = tl.where(ok, x - mean, 0.0)
        y = centered * tl.rsqrt(tl.sum(centered * centered, 0) / width + eps)
    y = y * tl.load(W + cols, mask=ok, other=0.0).to(tl.float32)
    if HAS_BIAS:
        y += tl.load(B + cols, mask=ok, other=0.0).to(tl.float32)
    tl.store(OUT + row * stride_o + cols, y.to(OUT.dtype.element_ty), mask=ok)


def _rows(t: torch.Tensor, width: int) -> torch.Tensor:
    t = t.reshape(-1, width)
    return t if t.stride(1) == 1 else t.contiguous()


def _norm(x, weight, bias, eps, residual, rms: bool, return_sum: bool):
    width = x.shape[-1]
    if weight.shape != (width,) or (bias is not None and bias.shape != (width,)):
        raise ValueError(f"weight (and bias) must be [{width}], got {tuple(weight.shape)}")
    if residual is not None and residual.shape != x.shape:
        raise ValueError(f"residual must match x {tuple(x.shape)}, got {tuple(residual.shape)}")
    if width > 65536:
        raise ValueError(f"rows of {width} > 65,536 elements are not supported")
    rows = _rows(x, width)
    res = _rows(residual, width) if residual is not None else rows
    out = torch.empty_like(rows)
    total = torch.empty_like(rows) if return_sum else out
    if rows.shape[0]:
        _norm_kernel[(rows.shape[0],)](
            rows, res, weight, bias if bias is not None else weight, out, total,
            rows.stride(0), res.stride(0), out.stride(0), total.stride(0), width, float(eps),
            RMS=rms, HAS_RESIDUAL=residual is not None, HAS_BIAS=bias is not None, WRITE_SUM=return_sum,
            BLOCK=triton.next_power_of_2(width),
        )  # fmt: skip
    out = out.view(x.shape)
    return (out, total.view(x.shape)) if return_sum else out


def layer_norm(x, weight, bias, eps, residual=None):
    """LayerNorm(x + residual) over the last dim, in x's dtype (computed in float32)."""
    return _norm(x, weight, bias, eps, residual, rms=False, return_sum=False)


def rms_norm(x, weight, eps, residual=None, return_sum=False):
    """RMSNorm(x + residual) * weight; with return_sum also x + residual (in x's dtype)."""
    return _norm(x, weight, None, eps, residual, rms=True, return_sum=return_sum)
