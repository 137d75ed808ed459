"""The reference ops themselves, against torch's own implementations on padded batches."""

import pytest
import torch
import torch.nn.functional as F

from fastembed_rt.ops import reference


def pad(x, lengths):
    out = x.new_zeros(len(lengths), max(lengths), *x.shape[1:])
    start = 0
    for i, n in enumerate(lengths):
        out[i, :n] = x[start : start + n]
        start += n
    return out


@pytest.mark.parametrize("lengths", [[1], [1, 7, 129, 3], [5, 0, 2]], ids=str)
@pytest.mark.parametrize("heads,kv_heads,head_dim", [(1, 1, 32), (4, 4, 17), (8, 2, 16)])
@pytest.mark.parametrize("causal", [False, True])
def test_attention_matches_sdpa(lengths, heads, kv_heads, head_dim, causal):
    g = torch.Generator().manual_seed(0)
    total = sum(lengths)
    q = torch.randn(total, heads, head_dim, generator=g, dtype=torch.float64)
    k = torch.randn(total, kv_heads, head_dim, generator=g, dtype=torch.float64)
    v = torch.randn(total, kv_heads, head_dim, generator=g, dtype=torch.float64)
    cu = torch.tensor([0] + list(torch.tensor(lengths).cumsum(0)), dtype=torch.int32)
    got = reference.attention(q, k, v, cu, max(lengths), scale=0.3, causal=causal)
    start = 0
    for n in lengths:
        if n == 0:
            continue
        qs, ks, vs = (t[start : start + n].transpose(0, 1) for t in (q, k, v))
        want = F.scaled_dot_product_attention(qs, ks, vs, is_causal=causal, scale=0.3, enable_gqa=True)
        torch.testing.assert_close(got[start : start + n], want.transpose(0, 1), rtol=1e-10, atol=1e-10)
        start += n


def test_layer_norm_with_residual_and_gelu_with_bias():
    g = torch.Generator().manual_seed(1)
    x, r = torch.randn(7, 13, generator=g), torch.randn(7, 13, generator=g)
    w, b = torch.randn(13, generator=g), torch.randn(13, generator=g)
    torch.testing.assert_close(reference.layer_norm(x, w, b, 1e-5, residual=r), F.layer_norm(x + r, (13,), w, b, 1e-5))
    torch.testing.assert_close(reference.gelu(x, b, "tanh"), F.gelu(x + b, approximate="tanh"))


def test_pool_matches_padded_sentence_transformers_math():
    g = torch.Generator().manual_seed(2)
    lengths = [3, 1, 6]
    hidden = torch.randn(sum(lengths), 5, generator=g)
    cu = torch.tensor([0, 3, 4, 10], dtype=torch.int32)
    padded = pad(hidden, lengths)
    mask = (torch.arange(6)[None, :] < torch.tensor(lengths)[:, None]).float()[..., None]
    torch.testing.assert_close(reference.pool(hidden, cu, "mean"), (padded * mask).sum(1) / mask.sum(1))
    weights = mask * torch.arange(1, 7).float()[None, :, None]
    torch.testing.assert_close(reference.pool(hidden, cu, "weightedmean"), (padded * weights).sum(1) / weights.sum(1))
    torch.testing.assert_close(reference.pool(hidden, cu, "max"), padded.masked_fill(mask == 0, -1e9).max(1).values)


@pytest.mark.parametrize("m,n,k", [(0, 3, 5), (1, 1, 1), (7, 5, 4099), (33, 17, 384)])
def test_int8_matmul_is_exact(m, n, k):
    """The float64 GEMM behind the int8 references gives int64 matmul's sums, at the extremes of int8 too."""
    g = torch.Generator().manual_seed(k)
    a = torch.randint(-128, 128, (m, k), generator=g, dtype=torch.int8)
    b = torch.randint(-128, 128, (n, k), generator=g, dtype=torch.int8)
    a[:, : k // 2], b[:, : k // 2] = -128, -128  # the largest products, all of one sign
    got = reference.int8_matmul(a, b)
    assert got.dtype == torch.int32 and torch.equal(got.long(), a.long() @ b.long().t())
