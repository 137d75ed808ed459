"""The C++ pooling kernel against its reference twin, and the checks in front of it."""

import numpy as np
import pytest
import torch

from fastembed_rt import _C, ops
from fastembed_rt.ops import cpu, reference

LENGTH_SETS = [[], [1], [0], [0, 3, 0], [1, 7, 129, 2], [31, 1, 5, 64, 1, 300]]
HIDDEN_SIZES = [1, 3, 17, 384]


def packed(lengths, hidden_size, seed=0):
    g = torch.Generator().manual_seed(seed)
    cu = torch.zeros(len(lengths) + 1, dtype=torch.int32)
    cu[1:] = torch.cumsum(torch.tensor(lengths, dtype=torch.int64), 0).to(torch.int32) if lengths else cu[1:]
    hidden = torch.randn(int(cu[-1]), hidden_size, generator=g)
    skip = torch.randint(0, 4, (len(lengths),), generator=g, dtype=torch.int32)
    return hidden, cu, skip


@pytest.mark.parametrize("mode", ops.POOL_MODES)
@pytest.mark.parametrize("lengths", LENGTH_SETS, ids=str)
@pytest.mark.parametrize("hidden_size", HIDDEN_SIZES)
@pytest.mark.parametrize("with_skip", [False, True])
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cpp_pool_matches_reference(mode, lengths, hidden_size, with_skip, normalize, dtype):
    """bfloat16 hidden states are read in place and pooled in float32: the twin on their float32 values."""
    hidden, cu, skip = packed(lengths, hidden_size, seed=len(lengths) * 1000 + hidden_size)
    hidden = hidden.to(dtype)
    skip = skip if with_skip else None
    want = reference.pool(hidden.float(), cu, mode, normalize, skip)
    got = cpu.pool(hidden, cu, mode, normalize, skip)
    assert got.shape == (len(lengths), hidden_size) and got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, equal_nan=True)


@pytest.mark.parametrize("threads", [1, 2, 5])
def test_cpp_pool_threads_agree(threads):
    hidden, cu, skip = packed([200] * 37 + [1, 3], 384, seed=3)
    want = reference.pool(hidden, cu, "weightedmean", True, skip)
    got = _C.pool_packed(hidden.numpy(), cu.numpy(), ops.POOL_MODES.index("weightedmean"), True, skip.numpy(), threads)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-5, atol=1e-5)


def test_pool_skip_past_sequence_end_follows_sentence_transformers():
    hidden, cu, _ = packed([3, 2], 4)
    skip = torch.tensor([5, 1], dtype=torch.int32)  # the first sequence is all prompt
    assert torch.equal(cpu.pool(hidden, cu, "mean", skip=skip)[0], torch.zeros(4))
    assert torch.equal(cpu.pool(hidden, cu, "lasttoken", skip=skip)[0], torch.zeros(4))
    assert torch.equal(cpu.pool(hidden, cu, "cls", skip=skip)[0], hidden[0])
    assert torch.isinf(cpu.pool(hidden, cu, "max", skip=skip)[0]).all()
    assert torch.equal(cpu.pool(hidden, cu, "cls", skip=skip)[1], hidden[4])


def test_dispatch_picks_cpp_on_cpu_and_reference_when_forced():
    assert ops.implementation_table("cpu", torch.float32)["pool"] == "cpp"
    assert ops.implementation_table("cpu", torch.bfloat16)["pool"] == "cpp"
    assert ops.implementation_table("cpu", torch.float16)["pool"] == "reference"
    with ops.use_reference():
        assert set(ops.implementation_table("cpu", torch.float32).values()) == {"reference"}
    assert ops.implementation_table("cpu", torch.float32)["pool"] == "cpp"


def test_op_rejects_unknown_mode():
    hidden, cu, _ = packed([2], 3)
    with pytest.raises(ValueError, match="unknown pooling mode 'median'"):
        ops.pool(hidden, cu, "median")


def _call(hidden, cu, mode=1, skip=None):
    return _C.pool_packed(hidden, cu, mode, False, skip, 1)


def test_binding_rejects_bad_input_with_clear_errors():
    hidden = np.zeros((5, 4), dtype=np.float32)
    cu = np.array([0, 2, 5], dtype=np.int32)
    with pytest.raises(TypeError, match="hidden: expected float32, or bfloat16 bits as int16; got float64"):
        _call(hidden.astype(np.float64), cu)
    with pytest.raises(ValueError, match="hidden: expected 2 dimensions"):
        _call(np.zeros(5, dtype=np.float32), cu)
    with pytest.raises(ValueError, match="hidden: must be C-contiguous"):
        _call(np.zeros((4, 5), dtype=np.float32).T, cu)
    with pytest.raises(TypeError, match="cu_seqlens: expected dtype int32"):
        _call(hidden, cu.astype(np.int64))
    with pytest.raises(ValueError, match=r"cu_seqlens\[0\] must be 0"):
        _call(hidden, np.array([1, 2, 5], dtype=np.int32))
    with pytest.raises(ValueError, match="non-decreasing"):
        _call(hidden, np.array([0, 3, 2, 5], dtype=np.int32))
    with pytest.raises(ValueError, match=r"cu_seqlens\[-1\]=4 does not match total_tokens=5"):
        _call(hidden, np.array([0, 4], dtype=np.int32))
    with pytest.raises(ValueError, match="at least one offset"):
        _call(hidden, np.array([], dtype=np.int32))
    with pytest.raises(ValueError, match="pool mode must be in"):
        _call(hidden, cu, mode=9)
    with pytest.raises(ValueError, match="skip: expected 2 entries"):
        _call(hidden, cu, skip=np.zeros(3, dtype=np.int32))
    with pytest.raises(ValueError, match=r"skip\[1\] is negative"):
        _call(hidden, cu, skip=np.array([0, -1], dtype=np.int32))
