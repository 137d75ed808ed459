"""Fused pooling of packed hidden states in Triton: one program per sequence pools its tokens (mean, cls,
last token, max, weighted mean, mean / sqrt(length)), keeps only the first `truncate_dim` dimensions
(Matryoshka), and L2-normalizes them, all in one kernel with a float32 result.

Reference twin: fastembed_rt.ops.reference.pool (semantics of skipped prompt tokens and empty sequences
included), followed by truncation and F.normalize.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .launch import check_packed

MODES = {"mean": 0, "cls": 1, "lasttoken": 2, "max": 3, "weightedmean": 4, "mean_sqrt_len_tokens": 5}
BLOCK_TOKENS = 16


@triton.jit
def _pool_kernel(H, CU, SKIP, OUT, stride_h, stride_o, dim, eps,
                 MODE: tl.constexpr, HAS_SKIP: tl.constexpr, NORMALIZE: tl.constexpr,
                 BLOCK_T: tl.constexpr, BLOCK_H: tl.constexpr):  # fmt: skip
    seq = tl.program_id(0)
    start = tl.load(CU + seq)
    length = tl.load(CU + seq + 1) - start
    skip = 0
    if HAS_SKIP:
        skip = tl.minimum(tl.load(SKIP + seq), length)
    valid = length - skip
    first = start + skip  # the first token that takes part
    tokens = tl.arange(0, BLOCK_T)
    squares = tl.zeros([BLOCK_H], tl.float32)
    for h0 in range(0, dim, BLOCK_H):
        cols = h0 + tl.arange(0, BLOCK_H)
        col_ok = cols < dim
        if MODE == 1:  # cls: the first token that takes part, else the sequence's first, else zeros
            row = tl.where(valid > 0, first, start).to(tl.int64)
            acc = tl.load(H + row * stride_h + cols, mask=col_ok & (cols * 0 + length > 0), other=0.0).to(tl.float32)
        elif MODE == 2:  # last token, zeros when none takes part
            row = (start + length - 1).to(tl.int64)
            acc = tl.load(H + row * stride_h + cols, mask=col_ok & (cols * 0 + valid > 0), other=0.0).to(tl.float32)
        elif MODE == 3:  # max, -inf when no token takes part (as sentence-transformers' masked max)
            acc = tl.full([BLOCK_H], float("-inf"), tl.float32)
            for t0 in range(0, valid, BLOCK_T):
                rows = (first + t0 + tokens).to(tl.int64)
                ok = (t0 + tokens < valid)[:, None] & col_ok[None, :]
                x = tl.load(H + rows[:, None] * stride_h + cols[None, :], mask=ok, other=float("-inf")).to(tl.float32)
                acc = tl.maximum(acc, tl.max(x, 0))
        else:  # mean-like: weights 1, or the 1-based position in the whole sequence (weighted mean)
            acc = tl.zeros([BLOCK_H], tl.float32)
            for t0 in range(0, valid, BLOCK_T):
                rows = (first + t0 + tokens).to(tl.int64)
                token_ok = t0 + tokens < valid
                x = tl.load(H + rows[:, None] * stride_h + cols[None, :], mask=token_ok[:, None] & col_ok[None, :],
                            other=0.0).to(tl.float32)  # fmt: skip
                if MODE == 4:
                    x = x * (skip + t0 + tokens + 1).to(tl.float32)[:, None]
                acc += tl.sum(x, 0)
            if MODE == 4:  # sum of positions skip+1 .. length
                total = (length * (length + 1) - skip * (skip + 1)).to(tl.float32) * 0.5
            else:
                total = valid.to(tl.float32)
            total = tl.maximum(total, 1e-9)
            if MODE == 5:
                total = tl.sqrt(total)
            acc = acc / total
        tl.store(OUT + seq.to(tl.int64) * stride_o + cols, acc, mask=col_ok)
        squares += tl.where(col_ok, acc * acc, 0.0)
    if NORMALIZE:
        scale = 1.0 / tl.maximum(tl.sqrt(tl.sum(squares, 0)), eps)
        for h0 in range(0, dim, BLOCK_H):
            cols = h0 + tl.arange(0, BLOCK_H)
            col_ok = cols < dim
            out = OUT + seq.to(tl.int64) * stride_o + cols
            tl.store(out, tl.load(out, mask=col_ok) * scale, mask=col_ok)


def pool(hidden: torch.Tensor, cu_seqlens: torch.Tensor, mode: str, normalize: bool = False,
         skip: torch.Tensor | None = None, truncate_dim: int | None = None) -> torch.Tensor:  # fmt: skip
    """float32 [num_seqs, truncate_dim or H]: `mode` pooling of each packed sequence, leaving out its first
    skip[i] tokens, truncated (Matryoshka), then L2-normalized when asked (over the kept dimensions)."""
    if mode not in MODES:
        raise ValueError(f"unknown pooling mode {mode!r}; supported: {', '.join(MODES)}")
    if hidden.dim() != 2:
        raise ValueError(f"hidden must be [tokens, hidden], got {tuple(hidden.shape)}")
    batch = check_packed(cu_seqlens, hidden.shape[0], "cu_seqlens", hidden.device)
    dim = hidden.shape[1] if truncate_dim is None else truncate_dim
    if not 1 <= dim <= hidden.shape[1]:
        raise ValueError(f"truncate_dim must be in [1, {hidden.shape[1]}], got {truncate_dim}")
    if skip is not None and (skip.shape != (batch,) or skip.dtype != torch.int32 or skip.device != hidden.device):
        raise ValueError(f"skip must be int32 [{batch}] on {hidden.device}, got {skip.dtype} {tuple(skip.shape)}")
    if skip is not None and batch and int(skip.min()) < 0:
        raise ValueError("skip must not be negative")
    if hidden.stride(1) != 1:
        hidden = hidden.contiguous()
    out = torch.empty((batch, dim), dtype=torch.float32, device=hidden.device)
    if batch:
        _pool_kernel[(batch,)](
            hidden, cu_seqlens, skip if skip is not None else cu_seqlens, out, hidden.stride(0), out.stride(0), dim, 1e-12,
            MODE=MODES[mode], HAS_SKIP=skip is not None, NORMALIZE=bool(normalize),
            BLOCK_T=BLOCK_TOKENS, BLOCK_H=min(1024, triton.next_power_of_2(dim)),
        )  # fmt: skip
    return out
