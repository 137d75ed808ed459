"""The C++ fused bias + GELU kernel against its reference twin."""

import pytest
import torch

from fastembed_rt import _C
from fastembed_rt.ops import cpu, reference


@pytest.mark.parametrize("rows,cols", [(1, 1), (3, 17), (64, 1536), (0, 5), (5, 1031)], ids=str)
@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("with_bias", [False, True])
def test_float32(rows, cols, approximate, with_bias):
    g = torch.Generator().manual_seed(rows + cols)
    x = torch.randn(rows, cols, generator=g) * 4
    bias = torch.randn(cols, generator=g) if with_bias else None
    got = cpu.gelu(x, bias, approximate)
    torch.testing.assert_close(got, reference.gelu(x, bias, approximate), rtol=1e-5, atol=2e-6)


def test_erf_gelu_on_a_dense_grid():
    """Every float32 GELU input that matters, 1e-4 apart: the rational erf fit has no bad corner (its clamp at 3.95
    included), at the absolute error its comment states."""
    x = torch.linspace(-8, 8, 160_001).reshape(1, -1)
    got = cpu.gelu(x, None, "none")
    err = (got.double() - torch.nn.functional.gelu(x.double())).abs() / x.double().abs().clamp(min=1)
    assert err.max() < 4e-7 / 2 + 1e-7


def test_extreme_inputs_stay_finite_and_exact_at_the_tails():
    x = torch.tensor([[-1e30, -100.0, -12.0, -5.0, 0.0, 5.0, 12.0, 100.0, 1e30]])
    for approximate in ("none", "tanh"):
        got = cpu.gelu(x, None, approximate)
        torch.testing.assert_close(got, reference.gelu(x, None, approximate), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_bfloat16(approximate):
    x = (torch.randn(33, 257) * 3).bfloat16()
    bias = torch.randn(257).bfloat16()
    got = cpu.gelu(x, bias, approximate)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), reference.gelu(x, bias, approximate).float(), rtol=2**-7, atol=1e-2)


def test_binding_rejects_bad_input():
    x = torch.ones(3, 4).numpy()
    with pytest.raises(ValueError, match="activation must be 0"):
        _C.bias_activation(x, None, 3)
    with pytest.raises(ValueError, match="bias: expected a contiguous vector of 4 values"):
        _C.bias_activation(x, torch.ones(5).numpy(), 1)
    with pytest.raises(ValueError, match="out: shape differs"):
        _C.bias_activation(x, None, 1, out=torch.ones(4, 3).numpy())
