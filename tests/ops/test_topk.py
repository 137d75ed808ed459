"""The C++ top-k searches behind ops.int8_topk / ops.hamming_topk on the CPU, against their reference twins."""

import pytest
import torch

from fastembed_rt import _C, isa, ops
from fastembed_rt.ops import cpu, reference

# (queries, corpus rows, dim, k): empty query batch and corpus, single rows and elements, odd dims, k past n.
SHAPES = [(0, 5, 8, 3), (1, 1, 1, 1), (3, 7, 13, 10), (5, 300, 33, 7), (2, 1000, 385, 25), (4, 0, 16, 2)]


@pytest.mark.parametrize("level", _C.supported_isas())
@pytest.mark.parametrize("nq,n,dim,k", SHAPES, ids=str)
def test_cpp_topk_equals_reference(level, nq, n, dim, k):
    g = torch.Generator().manual_seed(nq * 1000 + n + dim)
    q = torch.randint(-128, 128, (nq, dim), dtype=torch.int8, generator=g)
    c = torch.randint(-3, 4, (n, dim), dtype=torch.int8, generator=g)  # small values: many ties
    codes_q = torch.randint(0, 256, (nq, dim), dtype=torch.uint8, generator=g)
    codes = torch.randint(0, 256, (n, dim), dtype=torch.uint8, generator=g)
    with isa.use(level):
        got = [cpu.int8_topk(q, c, k), cpu.hamming_topk(codes_q, codes, k)]
    want = [reference.int8_topk(q, c, k), reference.hamming_topk(codes_q, codes, k)]
    for (scores, ids), (want_scores, want_ids) in zip(got, want):
        assert scores.dtype == torch.int32 and ids.dtype == torch.int64
        assert torch.equal(scores, want_scores) and torch.equal(ids, want_ids)


def test_the_op_layer_picks_cpp_on_the_cpu():
    assert ops.select("int8_topk", torch.device("cpu"), torch.int8).name == "cpp"
    assert ops.select("hamming_topk", torch.device("cpu"), torch.uint8).name == "cpp"
    q = torch.randint(-128, 128, (3, 40), dtype=torch.int8, generator=torch.Generator().manual_seed(5))
    for got, want in zip(ops.int8_topk(q, q, 2), reference.int8_topk(q, q, 2)):
        assert torch.equal(got, want)


def test_bad_input_is_named():
    q = torch.zeros(2, 8, dtype=torch.int8)
    with pytest.raises(TypeError, match="corpus: expected dtype int8"):
        ops.int8_topk(q, q.to(torch.uint8), 1)
    with pytest.raises(ValueError, match="dimension mismatch"):
        ops.hamming_topk(q.to(torch.uint8), torch.zeros(3, 9, dtype=torch.uint8), 1)
    with pytest.raises(ValueError, match="k must be >= 1"):
        ops.int8_topk(q, q, 0)
