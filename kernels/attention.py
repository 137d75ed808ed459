"""Fused attention over packed variable-length sequences, FlashAttention-2 style, in Triton.

One program owns a block of queries of one sequence and one head. It walks that sequence's keys block by
block with an online softmax (running max and denominator, base-2 exponentials), so the score matrix never
leaves registers: no padding, no mask tensor, no [L, L] buffer in global memory. Arguments follow flash-attn's
`flash_attn_varlen_func`, so flash-attn, where installed, is a drop-in alternative.

Reference twin: fastembed_rt.ops.reference.attention.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .launch import block_sizes, check_packed, launch_options

HEAD_DIMS = (32, 64, 80, 96, 128)  # what the GPU path is tuned and tested for; any head_dim <= 256 runs


@triton.jit
def _attention_kernel(
    Q, K, V, O, cu_q, cu_k, slopes, bias, key_lengths,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_ot, stride_oh,
    scale_log2, group, slope_batch_stride, left, right, bias_radius,
    HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    CAUSAL: tl.constexpr, ALIBI: tl.constexpr, WINDOW: tl.constexpr, BIAS: tl.constexpr, KEY_LENGTHS: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    m_block = tl.program_id(0)
    seq = tl.program_id(1)
    head = tl.program_id(2)
    q_start = tl.load(cu_q + seq)
    q_len = tl.load(cu_q + seq + 1) - q_start
    k_start = tl.load(cu_k + seq)
    k_len = tl.load(cu_k + seq + 1) - k_start
    if m_block * BLOCK_M < q_len:
        kv_head = head // group
        rows = m_block * BLOCK_M + tl.arange(0, BLOCK_M)
        dims = tl.arange(0, BLOCK_D)
        cols = tl.arange(0, BLOCK_N)
        row_ok = rows < q_len
        dim_ok = dims < HEAD_DIM
        q = tl.load(Q + (q_start + rows)[:, None] * stride_qt + head * stride_qh + dims[None, :],
                    mask=row_ok[:, None] & dim_ok[None, :], other=0.0)  # fmt: skip
        # Causal masks align the last query with the last key (flash-attn's bottom-right convention).
        shift = k_len - q_len
        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
        if ALIBI:
            slope = tl.load(slopes + seq * slope_batch_stride + head) * 1.4426950408889634
        begin = 0
        end = k_len
        seen = k_len  # keys past this one are attended by no query
        if KEY_LENGTHS:
            seen = tl.load(key_lengths + seq)
            end = seen
        if CAUSAL:
            end = tl.minimum(end, (m_block + 1) * BLOCK_M + shift)
        if WINDOW:  # only the key blocks that some query of this block can see
            begin = tl.maximum(0, m_block * BLOCK_M + shift - left) // BLOCK_N * BLOCK_N
            end = tl.minimum(end, (m_block + 1) * BLOCK_M + shift + right)
        for n0 in range(begin, end, BLOCK_N):
            keys = n0 + cols
            key_ok = keys < seen
            k = tl.load(K + (k_start + keys)[:, None] * stride_kt + kv_head * stride_kh + dims[None, :],
                        mask=key_ok[:, None] & dim_ok[None, :], other=0.0)  # fmt: skip
            s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale_log2
            offset = keys[None, :] - (rows[:, None] + shift)  # key position minus the query's
            if ALIBI:
                s -= slope * tl.abs(offset.to(tl.float32))
            if BIAS:
                table = bias + head * (2 * bias_radius + 1) + bias_radius
                s += tl.load(table + tl.minimum(tl.maximum(offset, -bias_radius), bias_radius)) * 1.4426950408889634
            ok = key_ok[None, :]
            if CAUSAL:
                ok = ok & (offset <= 0)
            if WINDOW:
                ok = ok & (offset >= -left) & (offset <= right)
            s = tl.where(ok, s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, 1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # rows with no key yet
            p = tl.exp2(s - m_safe[:, None])
            alpha = tl.exp2(m_i - m_safe)
            l_i = l_i * alpha + tl.sum(p, 1)
            v = tl.load(V + (k_start + keys)[:, None] * stride_vt + kv_head * stride_vh + dims[None, :],
                        mask=key_ok[:, None] & dim_ok[None, :], other=0.0)  # fmt: skip
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
            m_i = m_new
        out = acc / tl.where(l_i == 0.0, 1.0, l_i)[:, None]  # a query with no key at all gets zeros
        tl.store(O + (q_start + rows)[:, None] * stride_ot + head * stride_oh + dims[None, :],
                 out.to(O.dtype.element_ty), mask=row_ok[:, None] & dim_ok[None, :])  # fmt: skip


def varlen_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    cu_seqlens_k: torch.Tensor,
    max_seqlen_q: int,
    max_seqlen_k: int,
    dropout_p: float = 0.0,
    softmax_scale: float | None = None,
    causal: bool = False,
    window_size: tuple[int, int] = (-1, -1),
    alibi_slopes: torch.Tensor | None = None,
    relative_bias: torch.Tensor | None = None,
    key_lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """flash_attn_varlen_func's contract: q [Tq, Hq, D], k and v [Tk, Hkv, D] (Hq % Hkv == 0), int32
    cu_seqlens, fp16 / bf16 (fp32 too) with fp32 accumulation; alibi_slopes fp32 [Hq] or [B, Hq] adds
    -slope * |i + Lk - Lq - j|; window_size=(left, right) keeps keys i' - left <= j <= i' + right (i' = i + Lk - Lq;
    -1: no limit). Beyond flash-attn: relative_bias [Hq, 2R+1] adds bias[h, R + j - i'] to each score (MPNet);
    key_lengths int32 [B] keeps only the first key_lengths[s] keys of sequence s (ColBERT's query expansion).
    Returns [Tq, Hq, D] in q's dtype. Inference only: dropout_p must be 0."""
    if dropout_p:
        raise ValueError("varlen_attention is for inference: dropout_p must be 0")
    if q.dim() != 3 or k.dim() != 3 or v.dim() != 3:
        raise ValueError(f"q, k, v must be [tokens, heads, head_dim], got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    tokens_q, heads, head_dim = q.shape
    if k.shape != v.shape or k.shape[2] != head_dim or heads % k.shape[1]:
        raise ValueError(f"k and v must be [tokens, kv_heads, {head_dim}] with {heads} % kv_heads == 0, got {tuple(k.shape)}, {tuple(v.shape)}")
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise ValueError(f"q, k, v must share one dtype of float16, bfloat16, float32; got {q.dtype}, {k.dtype}, {v.dtype}")
    if head_dim > 256:
        raise ValueError(f"head_dim {head_dim} > 256 is not supported")
    batch = check_packed(cu_seqlens_q, tokens_q, "cu_seqlens_q", q.device, int(max_seqlen_q))
    if check_packed(cu_seqlens_k, k.shape[0], "cu_seqlens_k", q.device, int(max_seqlen_k)) != batch:
        raise ValueError("cu_seqlens_q and cu_seqlens_k must describe the same number of sequences")
    if alibi_slopes is not None:
        if alibi_slopes.dtype != torch.float32 or alibi_slopes.shape not in ((heads,), (batch, heads)):
            raise ValueError(f"alibi_slopes must be float32 [{heads}] or [{batch}, {heads}], got {alibi_slopes.dtype} {tuple(alibi_slopes.shape)}")
        alibi_slopes = alibi_slopes.contiguous()
    left, right = (int(w) for w in window_size)
    if left < -1 or right < -1:
        raise ValueError(f"window_size must hold sizes >= 0, or -1 for no limit; got {window_size}")
    if relative_bias is not None:
        if (relative_bias.dim() != 2 or relative_bias.shape[0] != heads or relative_bias.shape[1] % 2 != 1
                or relative_bias.shape[1] // 2 < max(int(max_seqlen_q), int(max_seqlen_k)) - 1):
            raise ValueError(f"relative_bias must be [{heads}, 2R+1] with R >= the longest sequence - 1, "
                             f"got {tuple(relative_bias.shape)}")
        relative_bias = relative_bias.to(device=q.device, dtype=torch.float32).contiguous()
    if key_lengths is not None:
        key_lengths = check_key_lengths(key_lengths, cu_seqlens_k, q.device)
    q, k, v = (t if t.stride(2) == 1 else t.contiguous() for t in (q, k, v))
    out = torch.empty_like(q)
    if tokens_q == 0 or batch == 0:
        return out
    scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(head_dim)
    block_m, block_n = block_sizes(q.device, head_dim)
    grid = (triton.cdiv(max(int(max_seqlen_q), 1), block_m), batch, heads)
    _attention_kernel[grid](
        q, k, v, out, cu_seqlens_q, cu_seqlens_k, alibi_slopes if alibi_slopes is not None else q,
        relative_bias if relative_bias is not None else q, key_lengths if key_lengths is not None else cu_seqlens_q,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), out.stride(0), out.stride(1),
        scale * 1.4426950408889634, heads // k.shape[1],
        heads if alibi_slopes is not None and alibi_slopes.dim() == 2 else 0,
        left if left >= 0 else int(max_seqlen_k), right if right >= 0 else int(max_seqlen_k),
        relative_bias.shape[1] // 2 if relative_bias is not None else 0,
        HEAD_DIM=head_dim, BLOCK_D=max(16, triton.next_power_of_2(head_dim)), BLOCK_M=block_m, BLOCK_N=block_n,
        CAUSAL=bool(causal), ALIBI=alibi_slopes is not None, WINDOW=left >= 0 or right >= 0, BIAS=relative_bias is not None,
        KEY_LENGTHS=key_lengths is not None,
        # float32 stays float32 (Triton would otherwise round it to TF32 on tensor cores)
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32", **launch_options(q.device, head_dim),
    )  # fmt: skip
    return out


def check_key_lengths(key_lengths: torch.Tensor, cu_seqlens: torch.Tensor, device) -> torch.Tensor:
    """key_lengths as int32 on `device`, after checking each lies in [1, its sequence's length] (0 for an empty one)."""
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).to(device)
    key_lengths = key_lengths.to(device=device, dtype=torch.int32)
    if key_lengths.shape != lengths.shape:
        raise ValueError(f"key_lengths must hold one count per sequence ({lengths.numel()}), got {tuple(key_lengths.shape)}")
    bad = ((key_lengths > lengths) | (key_lengths < (lengths > 0).int())).nonzero()
    if bad.numel():
        s = int(bad[0])
        raise ValueError(f"key_lengths[{s}]={int(key_lengths[s])} must lie in [1, {int(lengths[s])}], the sequence's length")
    return key_lengths.contiguous()


def attention(q, k, v, cu_seqlens, max_seqlen, scale=None, causal=False, window=None, relative_bias=None, key_lengths=None):
    """The op layer's attention (self-attention: one cu_seqlens for queries and keys)."""
    return varlen_attention(q, k, v, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, softmax_scale=scale, causal=causal,
                            window_size=window if window is not None else (-1, -1), relative_bias=relative_bias,
                            key_lengths=key_lengths)  # fmt: skip
