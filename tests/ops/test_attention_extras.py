"""Sliding windows and relative position bias in the C++ attention kernel, against the float64 reference."""

import pytest
import torch

from fastembed_rt import _C, ops
from fastembed_rt.ops import cpu, reference

from .test_attention import qkv

LENGTH_SETS = [[1], [1, 7, 129, 3], [5, 0, 2], [16, 17, 15, 33], [200, 1]]
WINDOWS = [(0, 0), (3, 5), (8, 8), (16, 0), (1, 40), (64, 64)]


def oracle(q, k, v, cu, scale, causal, window=None, bias=None):
    return reference.attention(q.double(), k.double(), v.double(), cu, 0, scale, causal, window,
                               None if bias is None else bias.double())  # fmt: skip


@pytest.mark.parametrize("lengths", LENGTH_SETS, ids=str)
@pytest.mark.parametrize("window", WINDOWS, ids=str)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("heads,kv_heads,head_dim", [(4, 4, 17), (8, 2, 32), (2, 1, 64)], ids=str)
def test_sliding_window(lengths, window, causal, heads, kv_heads, head_dim):
    q, k, v, cu = qkv(lengths, heads, kv_heads, head_dim, seed=sum(lengths) + window[0])
    got = cpu.attention(q, k, v, cu, max(lengths), 0.3, causal, window)
    torch.testing.assert_close(got.double(), oracle(q, k, v, cu, 0.3, causal, window), rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("window", [(300, 208), (508, 0), (0, 600)], ids=str)
@pytest.mark.parametrize("causal", [False, True])
def test_windows_across_key_blocks(window, causal):
    """The kernel takes keys in blocks of 512, with the softmax carried across blocks: windows that end, start
    or span a block boundary, in sequences of three blocks and of one block and a key."""
    q, k, v, cu = qkv([1100, 513], 2, 1, 32, seed=window[0])
    got = cpu.attention(q, k, v, cu, 1100, 0.3, causal, window)
    torch.testing.assert_close(got.double(), oracle(q, k, v, cu, 0.3, causal, window), rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("lengths", LENGTH_SETS, ids=str)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("window", [None, (5, 5)], ids=str)
def test_relative_position_bias(lengths, causal, window):
    heads, radius = 6, max(lengths) + 3  # a table wider than needed is fine
    q, k, v, cu = qkv(lengths, heads, heads, 32, seed=len(lengths))
    bias = torch.randn(heads, 2 * radius + 1, generator=torch.Generator().manual_seed(5)) * 2
    got = cpu.attention(q, k, v, cu, max(lengths), 0.2, causal, window, bias)
    torch.testing.assert_close(got.double(), oracle(q, k, v, cu, 0.2, causal, window, bias), rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("window,bias", [((4, 4), False), (None, True)], ids=["window", "bias"])
def test_bfloat16_with_extras_within_twice_torchs_own_error(window, bias):
    q, k, v, cu = qkv([1, 7, 129, 40], 8, 2, 64, dtype=torch.bfloat16, seed=3)
    table = torch.randn(8, 2 * 128 + 1, generator=torch.Generator().manual_seed(1)) if bias else None
    want = oracle(q, k, v, cu, 0.125, False, window, table)
    got = cpu.attention(q, k, v, cu, 129, 0.125, False, window, table)
    torch_own = reference.attention(q.float(), k.float(), v.float(), cu, 0, 0.125, False, window, table).bfloat16()
    assert (got.double() - want).abs().max() <= 2 * (torch_own.double() - want).abs().max() + 1e-6


def test_op_layer_drops_windows_wider_than_every_sequence_and_routes_extras_to_cpp():
    q, k, v, cu = qkv([5, 9], 2, 2, 16)
    full = ops.attention(q, k, v, cu, 9)
    torch.testing.assert_close(ops.attention(q, k, v, cu, 9, window=(8, 8)), full)  # (8, 8) covers length 9
    narrow = ops.attention(q, k, v, cu, 9, window=(2, 2))
    torch.testing.assert_close(narrow.double(), oracle(q, k, v, cu, 16**-0.5, False, (2, 2)), rtol=1e-5, atol=2e-5)


def test_binding_checks_windows_and_bias():
    q, k, v, cu = qkv([5, 9], 2, 2, 16)
    arrays = (q.numpy(), k.numpy(), v.numpy(), cu.numpy())
    with pytest.raises(ValueError, match="window sizes must be >= 0, or -1"):
        _C.attention_varlen(*arrays, 0.5, False, 1, -2, 0)
    with pytest.raises(ValueError, match="relative_bias: expected \\[heads=2, 2R\\+1\\] with R >= the longest sequence - 1 \\(8\\)"):
        _C.attention_varlen(*arrays, 0.5, False, 1, -1, -1, torch.zeros(2, 9).numpy())
    with pytest.raises(ValueError, match="relative_bias: expected \\[heads=2"):
        _C.attention_varlen(*arrays, 0.5, False, 1, -1, -1, torch.zeros(3, 17).numpy())
    with pytest.raises(TypeError, match="relative_bias: expected dtype float32"):
        _C.attention_varlen(*arrays, 0.5, False, 1, -1, -1, torch.zeros(2, 17, dtype=torch.float64).numpy())
