"""Triton SPLADE projection + activation + pooling against its reference twin, on awkward shapes: empty
sequences, length 1 and 513 (several token blocks), vocabularies and hidden sizes that are no multiple of the
tiles; float32 and float16 weights (bfloat16 on the GPU)."""

import pytest
import torch

from fastembed_rt import ops
from fastembed_rt.kernels import splade_pool
from fastembed_rt.ops import reference

from .common import DEVICE, DTYPES, cu_seqlens


@pytest.mark.parametrize("lengths", [[0], [1], [3, 0, 5], [513, 1]], ids=str)
@pytest.mark.parametrize("hidden, vocab", [(1, 1), (20, 37), (48, 130)], ids=str)
@pytest.mark.parametrize("pooling, activation", [("max", "relu"), ("sum", "relu"), ("max", "log1p_relu"), ("sum", "log1p_relu")])
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_reference(lengths, hidden, vocab, pooling, activation, dtype):
    g = torch.Generator().manual_seed(sum(lengths) + hidden * vocab)
    x = torch.randn(sum(lengths), hidden, generator=g)
    weight, bias = torch.randn(vocab, hidden, generator=g) / hidden**0.5, torch.randn(vocab, generator=g) - 0.5
    layer = ops.Linear(weight.to(DEVICE, dtype), bias.to(DEVICE, dtype))
    cu = cu_seqlens(lengths)
    got = splade_pool(x.to(DEVICE), cu, layer, pooling, activation)
    # the oracle: float64 on the weights and inputs as the kernel reads them
    exact_layer = ops.Linear(layer.weight.double().cpu(), layer.bias.double().cpu())
    want = reference.splade_pool(x.to(dtype).double(), cu.cpu(), exact_layer, pooling, activation).double()
    assert got.shape == (len(lengths), vocab) and got.dtype == torch.float32
    scale = max(lengths) if pooling == "sum" else 1
    tolerance = (1e-5 if dtype == torch.float32 else 2e-2) * scale
    torch.testing.assert_close(got.cpu().double(), want, rtol=1e-3 if dtype != torch.float32 else 1e-5, atol=tolerance)


def test_refuses_int8_and_bad_shapes():
    layer = ops.Linear(torch.randn(10, 4, device=DEVICE))
    with pytest.raises(ValueError, match="hidden must be"):
        splade_pool(torch.randn(3, 5, device=DEVICE), cu_seqlens([3]), layer)
    with pytest.raises(ValueError, match="cu_seqlens must rise"):
        splade_pool(torch.randn(3, 4, device=DEVICE), cu_seqlens([2]), layer)
    with pytest.raises(ValueError, match="takes float weights"):
        splade_pool(torch.randn(3, 4, device=DEVICE), cu_seqlens([3]), ops.Linear(torch.randn(10, 4), int8=True))
