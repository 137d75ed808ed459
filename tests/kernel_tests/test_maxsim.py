"""Triton MaxSim against its reference twin: empty documents and queries, 1-token queries, queries longer than a
query block, documents longer than 512 tokens, dims 1, 7, 96, 130; float32 and float16 (bfloat16 on the GPU)."""

import pytest
import torch

from fastembed_rt.kernels import maxsim
from fastembed_rt.ops import reference

from .common import DEVICE, DTYPES, cu_seqlens


@pytest.mark.parametrize("dim", [1, 7, 96, 130])
@pytest.mark.parametrize("query_lengths, doc_lengths", [([1], [1]), ([33, 0], [0, 5, 520]), ([2, 7], [3, 1])], ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_matches_reference(dim, query_lengths, doc_lengths, dtype):
    g = torch.Generator().manual_seed(dim + sum(doc_lengths))
    q = torch.nn.functional.normalize(torch.randn(sum(query_lengths), dim, generator=g), dim=1)
    d = torch.nn.functional.normalize(torch.randn(sum(doc_lengths), dim, generator=g), dim=1)
    got = maxsim(q.to(DEVICE, dtype), cu_seqlens(query_lengths), d.to(DEVICE, dtype), cu_seqlens(doc_lengths))
    want = reference.maxsim(q.to(dtype).double(), cu_seqlens(query_lengths).cpu(), d.to(dtype).double(), cu_seqlens(doc_lengths).cpu())
    assert got.shape == (len(query_lengths), len(doc_lengths)) and got.dtype == torch.float32
    tolerance = 1e-4 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(got.cpu(), want.float(), rtol=1e-3, atol=tolerance)


def test_refuses_int8_and_mismatched_dims():
    q, qc = torch.randn(3, 8, device=DEVICE), cu_seqlens([3])
    with pytest.raises(ValueError, match="float token vectors"):
        maxsim(q, qc, q, qc, int8=True)
    with pytest.raises(ValueError, match="one dim"):
        maxsim(q, qc, torch.randn(3, 9, device=DEVICE), qc)
