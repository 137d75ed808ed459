"""The C++ residual-add + LayerNorm / RMSNorm kernels against their reference twins."""

import pytest
import torch

from fastembed_rt import _C
from fastembed_rt.ops import cpu, reference

SHAPES = [(1, 1), (1, 384), (7, 3), (37, 383), (129, 1024), (0, 16), (2048, 17)]


def tensors(rows, cols, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, residual = (torch.randn(rows, cols, generator=g) * 3 + 1 for _ in range(2))
    weight, bias = torch.randn(cols, generator=g), torch.randn(cols, generator=g)
    return (t.to(dtype) for t in (x, residual, weight, bias))


@pytest.mark.parametrize("rows,cols", SHAPES, ids=str)
@pytest.mark.parametrize("with_residual", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_layer_norm_float32(rows, cols, with_residual, with_bias):
    x, residual, weight, bias = tensors(rows, cols, seed=rows + cols)
    residual, bias = (residual if with_residual else None), (bias if with_bias else None)
    got = cpu.layer_norm(x, weight, bias, 1e-5, residual)
    torch.testing.assert_close(got, reference.layer_norm(x, weight, bias, 1e-5, residual), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows,cols", SHAPES, ids=str)
@pytest.mark.parametrize("with_residual", [False, True])
def test_rms_norm_float32_with_sum(rows, cols, with_residual):
    x, residual, weight, _ = tensors(rows, cols, seed=rows * cols)
    residual = residual if with_residual else None
    got, total = cpu.rms_norm(x, weight, 1e-6, residual, return_sum=True)
    want, want_total = reference.rms_norm(x, weight, 1e-6, residual, return_sum=True)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(total, want_total, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(cpu.rms_norm(x, weight, 1e-6, residual), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows,cols", [(1, 1), (37, 383), (300, 1024)], ids=str)
@pytest.mark.parametrize("kind", ["layer_norm", "rms_norm"])
def test_bfloat16_within_one_rounding(rows, cols, kind):
    x, residual, weight, bias = tensors(rows, cols, dtype=torch.bfloat16, seed=3)
    if kind == "layer_norm":
        got, want = cpu.layer_norm(x, weight, bias, 1e-5, residual), reference.layer_norm(x, weight, bias, 1e-5, residual)
    else:
        got, want = cpu.rms_norm(x, weight, 1e-5, residual), reference.rms_norm(x, weight, 1e-5, residual)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want.float(), rtol=2**-7, atol=1e-2)


def test_three_dimensional_input_keeps_its_shape():
    x, residual, weight, bias = tensors(12, 8)
    got = cpu.layer_norm(x.view(3, 4, 8), weight, bias, 1e-5, residual.view(3, 4, 8))
    assert got.shape == (3, 4, 8)
    torch.testing.assert_close(got.view(12, 8), reference.layer_norm(x, weight, bias, 1e-5, residual))


@pytest.mark.parametrize("threads", [1, 2, 7])
def test_threads_agree(threads):
    x, residual, weight, bias = tensors(3000, 384, seed=9)
    args = (x.numpy(), residual.numpy(), weight.numpy(), bias.numpy(), 1e-12, 0)
    assert (_C.norm_rows(*args, num_threads=1) == _C.norm_rows(*args, num_threads=threads)).all()


def test_out_may_alias_input():
    x, residual, weight, bias = tensors(5, 33)
    want = reference.layer_norm(x, weight, bias, 1e-5, residual)
    xa = x.numpy()
    _C.norm_rows(xa, residual.numpy(), weight.numpy(), bias.numpy(), 1e-5, 0, out=xa)
    torch.testing.assert_close(x, want)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(weight=torch.ones(7)), "weight: expected a contiguous vector of 8 values"),
        (dict(residual=torch.ones(4, 7)), "residual: shape differs"),
        (dict(bias=torch.ones(8, dtype=torch.float64)), "bias: dtype differs"),
        (dict(x=torch.ones(4, 8, dtype=torch.float64)), "x: expected float32"),
        (dict(kind=2), "norm kind must be 0"),
        (dict(eps=-1.0), "eps must be >= 0"),
        (dict(x=torch.ones(4, 0), weight=torch.ones(0)), "at least one value"),
    ],
)
def test_binding_rejects_bad_input(kwargs, message):
    args = dict(x=torch.ones(4, 8), residual=None, weight=torch.ones(8), bias=None, eps=1e-5, kind=0)
    args.update(kwargs)
    arrays = {k: (v.numpy() if isinstance(v, torch.Tensor) else v) for k, v in args.items()}
    with pytest.raises((ValueError, TypeError), match=message):
        _C.norm_rows(**arrays)
