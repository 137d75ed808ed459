"""The C++ packed token-embedding kernel against its reference twin, and the checks in front of it."""

import pytest
import torch

from fastembed_rt import _C, ops
from fastembed_rt.ops import cpu, reference


def tables(vocab=50, positions=40, hidden=17, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(vocab, hidden, generator=g).to(dtype), torch.randn(positions, hidden, generator=g).to(dtype),
            torch.randn(hidden, generator=g).to(dtype))  # fmt: skip


@pytest.mark.parametrize("lengths", [[], [1], [0, 3, 0], [7, 1, 38]], ids=str)
@pytest.mark.parametrize("with_type", [False, True])
@pytest.mark.parametrize("offset", [0, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_matches_reference(lengths, with_type, offset, dtype):
    word, position, token_type = tables(dtype=dtype)
    token_type = token_type if with_type else None
    cu = torch.tensor([0] + torch.tensor(lengths, dtype=torch.long).cumsum(0).tolist(), dtype=torch.int32)
    ids = torch.randint(0, 50, (int(cu[-1]),))
    got = cpu.embed(word, position, token_type, ids, cu, offset)
    want = reference.embed(word, position, token_type, ids, cu, offset)
    assert got.dtype == dtype and got.shape == (int(cu[-1]), 17)
    assert torch.equal(got, want)  # one float32 sum, one rounding: bit-identical


def test_dispatch_uses_cpp():
    assert ops.implementation_table("cpu", torch.float32)["embed"] == "cpp"


def test_rejects_ids_outside_the_vocabulary_and_sequences_past_the_positions():
    word, position, _ = tables()
    with pytest.raises(ValueError, match=r"ids\[1\]=50 is outside the vocabulary of 50"):
        _C.embed_tokens(word.numpy(), position.numpy(), None, torch.tensor([3, 50]).numpy(), torch.tensor([0, 2], dtype=torch.int32).numpy())
    with pytest.raises(ValueError, match="sequence 0 has 39 tokens; the model has 38 positions"):
        _C.embed_tokens(word.numpy(), position.numpy(), None, torch.zeros(39, dtype=torch.long).numpy(),
                        torch.tensor([0, 39], dtype=torch.int32).numpy(), 2)  # fmt: skip
    with pytest.raises(TypeError, match="position: dtype differs"):
        _C.embed_tokens(word.numpy(), position.double().numpy(), None, torch.zeros(1, dtype=torch.long).numpy(),
                        torch.tensor([0, 1], dtype=torch.int32).numpy())  # fmt: skip
