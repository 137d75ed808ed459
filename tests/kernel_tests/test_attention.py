"""Triton varlen attention against the float64 reference, and against torch's own SDPA in the same dtype."""

import math

import pytest
import torch
import torch.nn.functional as F

from fastembed_rt.kernels import attention, varlen_attention
from fastembed_rt.ops import reference

from .common import DEVICE, DTYPES, assert_within_twice_torch, cu_seqlens


def torch_sdpa(q, k, v, cu, causal, bias=None):
    """torch's own attention in the inputs' dtype, one sequence at a time (padded-free)."""
    out = torch.empty_like(q)
    bounds = cu.tolist()
    for b, (start, end) in enumerate(zip(bounds[:-1], bounds[1:])):
        if end == start:
            continue
        qs, ks, vs = (t[start:end].transpose(0, 1)[None] for t in (q, k, v))
        mask = None if bias is None else bias(b, end - start, end - start).to(q.dtype)
        o = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask, is_causal=causal and mask is None,
                                           enable_gqa=True)  # fmt: skip
        out[start:end] = o[0].transpose(0, 1)
    return out


def alibi_reference(q, k, v, cu, slopes, causal):
    """float64 attention with -slope * |i + Lk - Lq - j| added (self-attention: Lk = Lq)."""
    q, k, v = q.double(), k.double(), v.double()
    out = torch.zeros_like(q)
    group = q.shape[1] // k.shape[1]
    bounds = cu.tolist()
    for b, (start, end) in enumerate(zip(bounds[:-1], bounds[1:])):
        n = end - start
        if n == 0:
            continue
        s = torch.einsum("ihd,jhd->hij", q[start:end], k[start:end].repeat_interleave(group, 1)) / math.sqrt(q.shape[2])
        pos = torch.arange(n, device=q.device)
        row_slopes = slopes[b] if slopes.dim() == 2 else slopes
        s = s - row_slopes.double()[:, None, None] * (pos[:, None] - pos[None, :]).abs()
        if causal:
            s = s.masked_fill(pos[None, :] > pos[:, None], float("-inf"))
        out[start:end] = torch.einsum("hij,jhd->ihd", s.softmax(-1), v[start:end].repeat_interleave(group, 1))
    return out


CASES = [
    # lengths mixed in one batch, query heads, kv heads, head_dim, causal
    ([1, 7, 129, 513], 1, 1, 32, False),
    ([1, 7, 129, 513], 1, 1, 32, True),
    ([1, 7, 129], 12, 12, 80, False),
    ([7, 129, 1], 8, 2, 32, True),  # grouped queries, 4 per kv head (the interpreter is slow: few heads)
    ([3, 0, 17, 1], 2, 1, 13, False),  # an empty sequence, an odd head_dim
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lengths, heads, kv_heads, head_dim, causal", CASES)
def test_attention_matches_reference(lengths, heads, kv_heads, head_dim, causal, dtype):
    torch.manual_seed(len(lengths) * heads + head_dim)
    cu = cu_seqlens(lengths)
    tokens = int(cu[-1])
    q = torch.randn(tokens, heads, head_dim, dtype=dtype, device=DEVICE)
    k = torch.randn(tokens, kv_heads, head_dim, dtype=dtype, device=DEVICE)
    v = torch.randn(tokens, kv_heads, head_dim, dtype=dtype, device=DEVICE)
    ours = attention(q, k, v, cu, max(lengths), causal=causal)
    exact = reference.attention(q.double(), k.double(), v.double(), cu, max(lengths), causal=causal)
    assert ours.dtype == dtype and ours.shape == q.shape
    assert_within_twice_torch(ours, torch_sdpa(q, k, v, cu, causal), exact, f"{dtype} {lengths}")


@pytest.mark.parametrize("per_sequence", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_alibi_slopes(per_sequence, causal):
    torch.manual_seed(3)
    lengths, heads = [1, 7, 40], 4
    cu = cu_seqlens(lengths)
    q, k, v = (torch.randn(int(cu[-1]), heads, 32, dtype=torch.float16, device=DEVICE) for _ in range(3))
    slopes = torch.rand((len(lengths), heads) if per_sequence else (heads,), device=DEVICE)
    ours = varlen_attention(q, k, v, cu, cu, 40, 40, causal=causal, alibi_slopes=slopes)
    exact = alibi_reference(q, k, v, cu, slopes, causal)

    def bias(b, lq, lk):
        pos = torch.arange(lq, device=DEVICE)
        s = (slopes[b] if per_sequence else slopes)[:, None, None]
        mask = -s * (pos[:, None] - pos[None, :]).abs()
        return mask.masked_fill(pos[None, :] > pos[:, None], float("-inf")) if causal else mask

    assert_within_twice_torch(ours, torch_sdpa(q, k, v, cu, causal, bias), exact, "alibi")


def test_different_query_and_key_lengths_align_causal_masks_bottom_right():
    torch.manual_seed(4)
    q_lengths, k_lengths = [1, 3, 5], [4, 3, 9]
    cu_q, cu_k = cu_seqlens(q_lengths), cu_seqlens(k_lengths)
    q = torch.randn(int(cu_q[-1]), 2, 16, device=DEVICE)
    k, v = (torch.randn(int(cu_k[-1]), 2, 16, device=DEVICE) for _ in range(2))
    ours = varlen_attention(q, k, v, cu_q, cu_k, 5, 9, causal=True, softmax_scale=0.3)
    for b in range(3):
        qs, ks, vs = q[cu_q[b] : cu_q[b + 1]], k[cu_k[b] : cu_k[b + 1]], v[cu_k[b] : cu_k[b + 1]]
        lq, lk = len(qs), len(ks)
        s = torch.einsum("ihd,jhd->hij", qs.double(), ks.double()) * 0.3
        allowed = torch.arange(lk)[None, :] <= torch.arange(lq)[:, None] + (lk - lq)
        s = s.masked_fill(~allowed.to(DEVICE), float("-inf"))
        expected = torch.einsum("hij,jhd->ihd", s.softmax(-1), vs.double())
        torch.testing.assert_close(ours[cu_q[b] : cu_q[b + 1]].double(), expected, atol=1e-5, rtol=1e-5)


def test_empty_batch_and_bad_arguments():
    empty = torch.empty(0, 2, 32, device=DEVICE)
    assert attention(empty, empty, empty, cu_seqlens([]), 0).shape == (0, 2, 32)
    q = torch.randn(5, 2, 32, device=DEVICE)
    good = cu_seqlens([2, 3])
    with pytest.raises(ValueError, match="1-D int32"):
        attention(q, q, q, good.long(), 3)
    with pytest.raises(ValueError, match="must rise from 0 to the token count 5"):
        attention(q, q, q, cu_seqlens([2, 2]), 3)
    with pytest.raises(ValueError, match="max_seqlen 2 is shorter than the longest sequence \\(3\\)"):
        attention(q, q, q, good, 2)
    with pytest.raises(ValueError, match="dropout_p must be 0"):
        varlen_attention(q, q, q, good, good, 3, 3, dropout_p=0.1)
    with pytest.raises(ValueError, match="kv_heads"):
        attention(q, torch.randn(5, 3, 32, device=DEVICE), torch.randn(5, 3, 32, device=DEVICE), good, 3)
    with pytest.raises(ValueError, match="share one dtype"):
        attention(q, q.half(), q.half(), good, 3)
    with pytest.raises(ValueError, match="alibi_slopes must be float32"):
        varlen_attention(q, q, q, good, good, 3, 3, alibi_slopes=torch.ones(3, device=DEVICE))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("window, causal", [((3, 5), False), ((8, 0), True), ((0, 0), False), ((40, 40), False)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_sliding_window_and_relative_bias(window, causal, with_bias, dtype):
    torch.manual_seed(window[0] + window[1])
    lengths, heads = [1, 7, 129, 33], 4
    cu = cu_seqlens(lengths)
    q, k, v = (torch.randn(int(cu[-1]), heads, 32, dtype=dtype, device=DEVICE) for _ in range(3))
    table = torch.randn(heads, 2 * 130 + 1, device=DEVICE) if with_bias else None
    ours = attention(q, k, v, cu, 129, causal=causal, window=window, relative_bias=table)
    exact = reference.attention(q.double(), k.double(), v.double(), cu, 129, causal=causal, window=window,
                                relative_bias=None if table is None else table.double())  # fmt: skip

    def mask(b, lq, lk):
        pos = torch.arange(lq, device=DEVICE)
        offset = pos[None, :] - pos[:, None]
        hidden = (offset < -window[0]) | (offset > window[1]) | ((offset > 0) if causal else False)
        values = table[:, 130 + offset] if with_bias else torch.zeros(heads, lq, lk, device=DEVICE)
        return values.masked_fill(hidden, float("-inf"))

    assert_within_twice_torch(ours, torch_sdpa(q, k, v, cu, causal, mask), exact, f"window {window}")


def test_window_and_bias_arguments_are_checked():
    q, cu = torch.randn(5, 2, 32, device=DEVICE), cu_seqlens([2, 3])
    with pytest.raises(ValueError, match="window_size must hold sizes >= 0, or -1"):
        varlen_attention(q, q, q, cu, cu, 3, 3, window_size=(-2, 0))
    with pytest.raises(ValueError, match="relative_bias must be \\[2, 2R\\+1\\]"):
        varlen_attention(q, q, q, cu, cu, 3, 3, relative_bias=torch.zeros(2, 4, device=DEVICE))


def test_offsets_are_checked_again_after_an_in_place_change():
    q, cu = torch.randn(5, 2, 32, device=DEVICE), cu_seqlens([2, 3])
    attention(q, q, q, cu, 3)  # checked (and remembered) once
    cu[1] = 7
    with pytest.raises(ValueError, match="must rise from 0 to the token count 5"):
        attention(q, q, q, cu, 3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [False, True])
def test_key_lengths(causal, dtype):
    """ColBERT's query expansion: all tokens are queries, each sequence's first key_lengths tokens the keys."""
    torch.manual_seed(3)
    lengths, heads = [1, 7, 129, 32, 0], 4
    cu = cu_seqlens(lengths)
    q, k, v = (torch.randn(int(cu[-1]), heads, 32, dtype=dtype, device=DEVICE) for _ in range(3))
    keys = torch.tensor([1, 3, 100, 32, 0], dtype=torch.int32, device=DEVICE)
    ours = attention(q, k, v, cu, 129, causal=causal, key_lengths=keys)
    exact = reference.attention(q.double(), k.double(), v.double(), cu, 129, causal=causal, key_lengths=keys)

    def mask(b, lq, lk):
        pos = torch.arange(lq, device=DEVICE)
        hidden = (pos[None, :] >= int(keys[b])) | ((pos[None, :] > pos[:, None]) if causal else False)
        return torch.zeros(heads, lq, lk, device=DEVICE).masked_fill(hidden, float("-inf"))

    assert_within_twice_torch(ours, torch_sdpa(q, k, v, cu, False, mask), exact, "key lengths")
    with pytest.raises(ValueError, match="key_lengths\\[1\\]=8 must lie in \\[1, 7\\]"):
        attention(q, k, v, cu, 129, key_lengths=torch.tensor([1, 8, 1, 1, 0], dtype=torch.int32, device=DEVICE))
