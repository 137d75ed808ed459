"""Triton residual + LayerNorm / RMSNorm, bias + GELU and pooling against their reference twins."""

import pytest
import torch
import torch.nn.functional as F

from fastembed_rt.kernels import gelu, layer_norm, pool, rms_norm
from fastembed_rt.ops import POOL_MODES, reference

from .common import DEVICE, DTYPES, assert_within_twice_torch, cu_seqlens

SHAPES = [(0, 8), (1, 1), (3, 7), (37, 384), (5, 1000)]


def randn(*shape, dtype=torch.float32):
    return torch.randn(*shape, device=DEVICE).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows, width", SHAPES)
@pytest.mark.parametrize("with_residual", [False, True])
def test_layer_norm(rows, width, with_residual, dtype):
    torch.manual_seed(rows + width)
    x, residual = randn(rows, width, dtype=dtype), randn(rows, width, dtype=dtype) if with_residual else None
    weight, bias = randn(width, dtype=dtype), randn(width, dtype=dtype)
    ours = layer_norm(x, weight, bias, 1e-5, residual)
    exact = reference.layer_norm(x.double(), weight.double(), bias.double(), 1e-5,
                                 None if residual is None else residual.double())  # fmt: skip
    summed = x if residual is None else x + residual  # torch's own, in the same dtype
    assert ours.dtype == dtype and ours.shape == x.shape
    assert_within_twice_torch(ours, F.layer_norm(summed, (width,), weight, bias, 1e-5), exact, "layer_norm")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows, width", SHAPES)
@pytest.mark.parametrize("with_residual", [False, True])
def test_rms_norm_and_its_sum(rows, width, with_residual, dtype):
    torch.manual_seed(rows * width)
    x, residual = randn(rows, width, dtype=dtype), randn(rows, width, dtype=dtype) if with_residual else None
    weight = randn(width, dtype=dtype)
    ours, total = rms_norm(x, weight, 1e-6, residual, return_sum=True)
    exact, exact_total = reference.rms_norm(x.double(), weight.double(), 1e-6,
                                            None if residual is None else residual.double(), return_sum=True)  # fmt: skip
    summed = x if residual is None else x + residual
    assert_within_twice_torch(ours, F.rms_norm(summed, (width,), weight, 1e-6), exact, "rms_norm")
    assert_within_twice_torch(total, summed, exact_total, "rms_norm sum")
    torch.testing.assert_close(rms_norm(x, weight, 1e-6, residual), ours, atol=0, rtol=0)


def test_norms_check_their_arguments():
    x = randn(4, 8)
    with pytest.raises(ValueError, match="weight \\(and bias\\) must be \\[8\\]"):
        layer_norm(x, randn(7), randn(8), 1e-5)
    with pytest.raises(ValueError, match="residual must match x"):
        rms_norm(x, randn(8), 1e-6, randn(4, 7))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(0, 5), (1, 1), (3, 7), (33, 1536), (2, 3, 5)])
@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("with_bias", [False, True])
def test_bias_gelu(shape, approximate, with_bias, dtype):
    torch.manual_seed(sum(shape))
    x = randn(*shape, dtype=dtype) * 4
    bias = randn(shape[-1], dtype=dtype) if with_bias else None
    ours = gelu(x, bias, approximate)
    exact = reference.gelu(x.double(), None if bias is None else bias.double(), approximate)
    torch_own = F.gelu(x if bias is None else x + bias, approximate=approximate)
    assert ours.dtype == dtype and ours.shape == x.shape
    assert_within_twice_torch(ours, torch_own, exact, f"gelu {approximate}")


def test_gelu_at_extremes_and_bad_arguments():
    x = torch.tensor([-1e4, -30.0, 0.0, 30.0, 1e4], device=DEVICE)
    for approximate in ("none", "tanh"):
        torch.testing.assert_close(gelu(x, approximate=approximate), F.gelu(x, approximate=approximate))
    with pytest.raises(ValueError, match="approximate must be"):
        gelu(x, approximate="fast")
    with pytest.raises(ValueError, match="bias must be \\[5\\]"):
        gelu(x, torch.ones(4, device=DEVICE))


POOL_LENGTHS = [[5], [1, 7, 0, 129, 3], [16, 17, 33]]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", POOL_MODES)
@pytest.mark.parametrize("lengths", POOL_LENGTHS)
@pytest.mark.parametrize("hidden_size", [1, 13, 384])
def test_pool_every_mode(mode, lengths, hidden_size, dtype):
    torch.manual_seed(hidden_size + len(lengths))
    cu = cu_seqlens(lengths)
    hidden = randn(int(cu[-1]), hidden_size, dtype=dtype)
    skip = torch.tensor([(i * 3) % (n + 2) for i, n in enumerate(lengths)], dtype=torch.int32, device=DEVICE)
    for normalize in (False, True):
        for skips in (None, skip):
            ours = pool(hidden, cu, mode, normalize, skips)
            exact = reference.pool(hidden.double(), cu, mode, False, skips).double()
            if normalize:
                exact = F.normalize(exact, dim=1)
            assert ours.dtype == torch.float32 and ours.shape == (len(lengths), hidden_size)
            finite = torch.isfinite(exact)
            assert torch.equal(torch.isfinite(ours), finite), (mode, normalize)  # empty max pools to -inf
            tolerance = 1e-5 if dtype == torch.float32 else 1e-6  # inputs are exact in float32 sums
            torch.testing.assert_close(ours.double()[finite], exact[finite], atol=tolerance, rtol=tolerance)


@pytest.mark.parametrize("mode", ["mean", "cls", "weightedmean"])
def test_pool_matryoshka_truncation_in_the_kernel(mode):
    torch.manual_seed(5)
    cu = cu_seqlens([4, 1, 9])
    hidden = randn(14, 96)
    for dim in (1, 7, 64, 96):
        ours = pool(hidden, cu, mode, True, truncate_dim=dim)
        exact = F.normalize(reference.pool(hidden.double(), cu, mode)[:, :dim].double(), dim=1)
        torch.testing.assert_close(ours.double(), exact, atol=1e-6, rtol=1e-6)


def test_pool_edges_and_bad_arguments():
    assert pool(randn(0, 8), cu_seqlens([]), "mean").shape == (0, 8)
    hidden, cu = randn(5, 8), cu_seqlens([2, 3])
    with pytest.raises(ValueError, match="unknown pooling mode 'median'"):
        pool(hidden, cu, "median")
    with pytest.raises(ValueError, match="truncate_dim must be in \\[1, 8\\], got 9"):
        pool(hidden, cu, "mean", truncate_dim=9)
    with pytest.raises(ValueError, match="skip must be int32 \\[2\\]"):
        pool(hidden, cu, "mean", skip=torch.zeros(3, dtype=torch.int32, device=DEVICE))
    with pytest.raises(ValueError, match="skip must not be negative"):
        pool(hidden, cu, "mean", skip=torch.tensor([0, -1], dtype=torch.int32, device=DEVICE))
    with pytest.raises(ValueError, match="must rise from 0 to the token count 5"):
        pool(hidden, cu_seqlens([2, 2]), "mean")
