"""SPLADE's vocabulary projection, activation and pooling in one Triton kernel: each program takes one sequence
and one tile of vocabulary columns, runs the sequence's tokens through the projection a block at a time
(tl.dot over the hidden dimension), applies log1p(relu(.)) (twice for "log1p_relu") and reduces over the tokens
in registers (max or sum). Only [num_seqs, vocab] is written, never the [tokens, vocab] logits.

Reference twin: fastembed_rt.ops.reference.splade_pool.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .launch import check_packed, interpreting

POOLINGS = {"max": 0, "sum": 1}
ACTIVATIONS = {"relu": 1, "log1p_relu": 2}  # how many times log1p is applied to relu(logit)


@triton.jit
def _splade_kernel(X, W, B, CU, OUT, stride_x, stride_w, stride_o, vocab, hidden,
                   HAS_BIAS: tl.constexpr, SUM: tl.constexpr, LOG1P_TIMES: tl.constexpr, PRECISION: tl.constexpr,
                   BLOCK_T: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_K: tl.constexpr):  # fmt: skip
    seq = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_V + tl.arange(0, BLOCK_V)
    col_ok = cols < vocab
    start = tl.load(CU + seq)
    length = tl.load(CU + seq + 1) - start
    tokens = tl.arange(0, BLOCK_T)
    dims = tl.arange(0, BLOCK_K)
    bias = tl.zeros([BLOCK_V], tl.float32)
    if HAS_BIAS:
        bias = tl.load(B + cols, mask=col_ok, other=0.0).to(tl.float32)
    # max pooling keeps the largest logit (relu's floor is the starting 0; log1p, increasing, comes last);
    # sum pooling adds each token's activated weight.
    pooled = tl.zeros([BLOCK_V], tl.float32)
    for t0 in range(0, length, BLOCK_T):
        rows = (start + t0 + tokens).to(tl.int64)
        row_ok = t0 + tokens < length
        logits = tl.zeros([BLOCK_T, BLOCK_V], tl.float32)
        for k0 in range(0, hidden, BLOCK_K):
            k_ok = k0 + dims < hidden
            x = tl.load(X + rows[:, None] * stride_x + (k0 + dims)[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0)
            w = tl.load(W + cols.to(tl.int64)[None, :] * stride_w + (k0 + dims)[:, None], mask=k_ok[:, None] & col_ok[None, :],
                        other=0.0)  # fmt: skip
            logits += tl.dot(x, w, input_precision=PRECISION)
        logits = tl.where(row_ok[:, None], tl.maximum(logits + bias[None, :], 0.0), 0.0)
        if SUM:
            for _ in tl.static_range(LOG1P_TIMES):
                logits = tl.log(1.0 + logits)
            pooled += tl.sum(logits, 0)
        else:
            pooled = tl.maximum(pooled, tl.max(logits, 0))
    if not SUM:
        for _ in tl.static_range(LOG1P_TIMES):
            pooled = tl.log(1.0 + pooled)
    tl.store(OUT + seq.to(tl.int64) * stride_o + cols, pooled, mask=col_ok)


def splade_pool(hidden: torch.Tensor, cu_seqlens: torch.Tensor, layer, pooling: str = "max",
                activation: str = "relu") -> torch.Tensor:  # fmt: skip
    """float32 [num_seqs, vocab]: per packed sequence, the pooling over its tokens of the activated vocabulary
    projection `layer` (an ops.Linear with float weights [vocab, H]) of hidden [T, H]."""
    if pooling not in POOLINGS or activation not in ACTIVATIONS:
        raise ValueError(f"unknown SPLADE pooling {pooling!r} or activation {activation!r}")
    if layer.int8:
        raise ValueError("the Triton SPLADE kernel takes float weights, not int8")
    if hidden.dim() != 2 or hidden.shape[1] != layer.in_features:
        raise ValueError(f"hidden must be [tokens, {layer.in_features}], got {tuple(hidden.shape)}")
    batch = check_packed(cu_seqlens, hidden.shape[0], "cu_seqlens", hidden.device)
    weight = layer.weight
    hidden = hidden.to(weight.dtype).contiguous()
    vocab = weight.shape[0]
    out = torch.empty((batch, vocab), dtype=torch.float32, device=hidden.device)
    if batch == 0:
        return out
    # The interpreter runs each tile as numpy calls: few, large tiles are faster there.
    block_t, block_v, block_k = (32, 64, 32) if interpreting() else (64, 128, 64)
    grid = (batch, triton.cdiv(vocab, block_v))
    bias = layer.bias
    _splade_kernel[grid](
        hidden, weight, bias if bias is not None else weight, cu_seqlens, out, hidden.stride(0), weight.stride(0),
        out.stride(0), vocab, hidden.shape[1], HAS_BIAS=bias is not None, SUM=pooling == "sum",
        LOG1P_TIMES=ACTIVATIONS[activation], PRECISION="ieee" if weight.dtype == torch.float32 else "tf32",
        BLOCK_T=block_t, BLOCK_V=block_v, BLOCK_K=block_k,
    )  # fmt: skip
    return out
