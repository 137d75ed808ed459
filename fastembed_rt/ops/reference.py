"""The pure-PyTorch oracle: one clear implementation of every op, written for reading, not speed.

Every kernel is tested against these. Tensors use the packed layout: tokens of all sequences
concatenated along dim 0, with int32 `cu_seqlens` marking where each sequence starts and ends.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

POOL_MODES = ("cls", "mean", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")


def attention(q, k, v, cu_seqlens, max_seqlen, scale=None, causal=False):
    """Softmax attention within each packed sequence. q: [T, Hq, D]; k, v: [T, Hkv, D], Hq % Hkv == 0."""
    del max_seqlen  # the reference walks sequences one by one and needs no bound
    heads, head_dim = q.shape[1], q.shape[2]
    group = heads // k.shape[1]
    scale = 1.0 / math.sqrt(head_dim) if scale is None else scale
    compute = torch.promote_types(q.dtype, torch.float32)  # half precision is upcast, float64 kept
    out = torch.empty_like(q)
    bounds = cu_seqlens.tolist()
    for start, end in zip(bounds[:-1], bounds[1:]):
        if end == start:
            continue
        qs = q[start:end].transpose(0, 1).to(compute)  # [H, L, D]
        ks = k[start:end].transpose(0, 1).to(compute).repeat_interleave(group, dim=0)
        vs = v[start:end].transpose(0, 1).to(compute).repeat_interleave(group, dim=0)
        scores = torch.matmul(qs, ks.transpose(1, 2)) * scale
        if causal:
            length = end - start
            future = torch.ones(length, length, dtype=torch.bool, device=q.device).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
        out[start:end] = torch.matmul(torch.softmax(scores, dim=-1), vs).transpose(0, 1).to(q.dtype)
    return out


def layer_norm(x, weight, bias, eps, residual=None):
    """LayerNorm(x + residual) over the last dim, computed in at least float32."""
    if residual is not None:
        x = x + residual
    compute = torch.promote_types(x.dtype, torch.float32)
    return F.layer_norm(x.to(compute), (x.shape[-1],), weight.to(compute), bias.to(compute), eps).to(x.dtype)


def gelu(x, bias=None, approximate="none"):
    """GELU(x + bias); approximate="tanh" for gelu_new / gelu_pytorch_tanh checkpoints."""
    if bias is not None:
        x = x + bias
    return F.gelu(x, approximate=approximate)


def pool(hidden, cu_seqlens, mode, normalize=False, skip=None):
    """One vector per packed sequence, as sentence-transformers' Pooling computes it.

    `skip[i]` leading tokens of sequence i (a prompt) are left out. Weighted mean weights a token by
    its 1-based position in the whole sequence. An all-skipped sequence pools to zeros, except max
    (-inf) and cls (its first token), matching sentence-transformers' masked arithmetic.
    """
    if mode not in POOL_MODES:
        raise ValueError(f"unknown pooling mode {mode!r}; supported: {', '.join(POOL_MODES)}")
    bounds = cu_seqlens.tolist()
    skips = [0] * (len(bounds) - 1) if skip is None else skip.tolist()
    zeros = torch.zeros(hidden.shape[1], dtype=torch.float32, device=hidden.device)
    rows = []
    for start, end, n_skip in zip(bounds[:-1], bounds[1:], skips):
        seq = hidden[start:end].float()
        valid = seq[min(n_skip, end - start):]
        if mode == "cls":
            row = valid[0] if len(valid) else (seq[0] if len(seq) else zeros)
        elif mode == "lasttoken":
            row = valid[-1] if len(valid) else zeros
        elif mode == "max":
            row = valid.max(dim=0).values if len(valid) else torch.full_like(zeros, float("-inf"))
        else:
            positions = torch.arange(end - start - len(valid) + 1, end - start + 1, device=hidden.device)
            weights = positions.float() if mode == "weightedmean" else torch.ones(len(valid), device=hidden.device)
            total = weights.sum().clamp(min=1e-9)
            row = (valid * weights[:, None]).sum(dim=0) / (total.sqrt() if mode == "mean_sqrt_len_tokens" else total)
        rows.append(row)
    out = torch.stack(rows) if rows else hidden.new_zeros((0, hidden.shape[1]), dtype=torch.float32)
    return F.normalize(out, p=2, dim=1) if normalize else out
