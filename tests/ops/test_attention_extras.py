"""Sliding windows and relative position bias in the C++ attention kernel, and attention_one_query, against the
float64 reference."""

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


def key_lengths_for(lengths, seed):
    """A key count per sequence in [1, length] (0 for an empty one), the full length included."""
    g = torch.Generator().manual_seed(seed)
    return torch.tensor([int(torch.randint(1, n + 1, (), generator=g)) if n else 0 for n in lengths], dtype=torch.int32)


@pytest.mark.parametrize("lengths", LENGTH_SETS + [[32, 32, 9], [1100, 40]], ids=str)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("heads,kv_heads,head_dim", [(4, 4, 17), (8, 2, 32), (12, 12, 32), (2, 1, 64)], ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_key_lengths(lengths, causal, heads, kv_heads, head_dim, dtype):
    """ColBERT's query expansion: every token is a query, only each sequence's first key_lengths tokens are keys."""
    q, k, v, cu = qkv(lengths, heads, kv_heads, head_dim, dtype=dtype, seed=sum(lengths) + head_dim)
    keys = key_lengths_for(lengths, sum(lengths))
    got = ops.attention(q, k, v, cu, max(lengths), 0.3, causal, key_lengths=keys)
    want = reference.attention(q.double(), k.double(), v.double(), cu, 0, 0.3, causal, key_lengths=keys)
    if dtype == torch.float32:
        torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=2e-5)
    else:
        torch_own = reference.attention(q.float(), k.float(), v.float(), cu, 0, 0.3, causal, key_lengths=keys).bfloat16()
        assert (got.double() - want).abs().max() <= 2 * (torch_own.double() - want).abs().max() + 1e-6
    # a query past the keys sees exactly what it would see with those keys alone: the cut is not a mask by value
    if not causal and lengths[0] > 1 and int(keys[0]) < lengths[0]:
        n = int(keys[0])
        alone = reference.attention(q[:n].double(), k[:n].double(), v[:n].double(), cu.new_tensor([0, n]), 0, 0.3)
        assert torch.allclose(want[:n], alone)


def test_key_lengths_all_full_equal_plain_attention():
    q, k, v, cu = qkv([5, 9, 1], 2, 2, 16)
    keys = torch.tensor([5, 9, 1], dtype=torch.int32)
    torch.testing.assert_close(ops.attention(q, k, v, cu, 9, key_lengths=keys), ops.attention(q, k, v, cu, 9))


def test_binding_checks_key_lengths():
    q, k, v, cu = qkv([5, 0, 9], 2, 2, 16)
    arrays = (q.numpy(), k.numpy(), v.numpy(), cu.numpy())

    def call(keys):
        return _C.attention_varlen(*arrays, 0.5, False, 1, -1, -1, None, keys)

    with pytest.raises(ValueError, match="key_lengths: expected one count per sequence \\(3\\), got 2"):
        call(torch.tensor([1, 0], dtype=torch.int32).numpy())
    with pytest.raises(ValueError, match="key_lengths\\[2\\]=10 must lie in \\[1, 9\\]"):
        call(torch.tensor([1, 0, 10], dtype=torch.int32).numpy())
    with pytest.raises(ValueError, match="key_lengths\\[0\\]=0 must lie in \\[1, 5\\]"):
        call(torch.tensor([0, 0, 3], dtype=torch.int32).numpy())
    with pytest.raises(ValueError, match="key_lengths\\[1\\]=1 must lie in \\[1, 0\\]"):
        call(torch.tensor([1, 1, 3], dtype=torch.int32).numpy())
    with pytest.raises(TypeError, match="key_lengths: expected dtype int32"):
        call(torch.tensor([1, 0, 3], dtype=torch.int64).numpy())


# --- attention_one_query: one row per sequence whose query sees every key (an encoder's last layer under a head) ---


@pytest.mark.parametrize("lengths", [[1], [1, 7, 129, 3], [16, 17, 15, 33], [300, 1, 2]], ids=str)
@pytest.mark.parametrize("heads,kv_heads,head_dim", [(12, 12, 32), (8, 2, 16), (3, 3, 1), (4, 4, 17)], ids=str)
@pytest.mark.parametrize("which", ["first", "last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_one_query_is_attention_at_its_row(lengths, heads, kv_heads, head_dim, which, dtype):
    """The first token of a bidirectional encoder, or the last under a causal mask: the query sees every key."""
    q, k, v, cu = qkv(lengths, heads, kv_heads, head_dim, dtype=dtype, seed=len(lengths) + head_dim)
    rows = (cu[:-1] if which == "first" else cu[1:] - 1).long()
    want = reference.attention(q.double(), k.double(), v.double(), cu, 0, causal=which == "last")[rows]
    got = ops.attention_one_query(q[rows], k, v, cu)
    assert got.shape == (len(lengths), heads, head_dim) and got.dtype == dtype
    tolerance = {torch.float64: 1e-12, torch.float32: 2e-6, torch.bfloat16: 1e-2}[dtype]
    torch.testing.assert_close(got.double(), want, rtol=tolerance, atol=tolerance)


def test_one_query_names_bad_input():
    q, k, v, cu = qkv([3, 0, 2], 2, 2, 4)
    with pytest.raises(ValueError, match="sequence 1 is empty"):
        ops.attention_one_query(q[:3], k, v, cu)
    q, k, v, cu = qkv([3, 2], 2, 2, 4)
    with pytest.raises(ValueError, match="3 queries for 2 sequences"):
        ops.attention_one_query(q[:3], k, v, cu)
    assert ops.attention_one_query(q[:0], k[:0], v[:0], cu[:1]).shape == (0, 2, 4)
