"""MaxSim (late interaction) on the panel kernels against its reference twin, at every ISA this CPU runs, on
awkward shapes: empty documents and queries, 1-token queries, dims 1, 7, 96, 128, 130, documents longer than 512
tokens; bfloat16 (widened exactly) and int8 (exact integer products) equal to the reference up to summation order,
int8 within a stated bound of float32."""

import pytest
import torch

from fastembed_rt import _C, isa, ops
from fastembed_rt.ops import reference

DIMS = [1, 7, 96, 128, 130]
# The last: documents over several of the 512-row chunks the kernels prepare and prefetch at a time, runs cut at
# chunk ends, query tokens over two panel pairs
LAYOUTS = [([1], [1]), ([32], [0, 5, 300]), ([1, 0, 32, 7], [600, 1, 0, 17]), ([0], [3]),
           ([32, 5, 17], [700, 3, 1200, 0, 513, 1])]


@pytest.fixture(params=[i for i in _C.supported_isas() if i != "scalar"], autouse=True)
def kernel_isa(request):
    with isa.use(request.param):
        yield request.param


def packed(lengths, dim, g):
    cu = torch.tensor([0] + lengths, dtype=torch.int32).cumsum(0).to(torch.int32)
    # unit-norm token vectors, as ColBERT's
    return torch.nn.functional.normalize(torch.randn(sum(lengths), dim, generator=g), dim=1), cu


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("query_lengths, doc_lengths", LAYOUTS, ids=str)
@pytest.mark.parametrize("kind", ["float32", "bfloat16", "int8"])
def test_matches_reference(dim, query_lengths, doc_lengths, kind):
    g = torch.Generator().manual_seed(dim + sum(query_lengths) + sum(doc_lengths))
    (q, qc), (d, dc) = packed(query_lengths, dim, g), packed(doc_lengths, dim, g)
    if kind == "bfloat16":
        q, d = q.bfloat16(), d.bfloat16()
    int8 = kind == "int8"
    assert ops.select("maxsim", q.device, torch.float32 if int8 else q.dtype).name == "packed"
    got = ops.maxsim(q, qc, d, dc, int8=int8)
    want = reference.maxsim(q.float() if kind == "bfloat16" else q, qc, d.float() if kind == "bfloat16" else d, dc, int8=int8)
    assert got.shape == (len(query_lengths), len(doc_lengths)) and got.dtype == torch.float32
    # int8: exact integer products, the reference's own dequantization; bfloat16: widened exactly, as the
    # reference does; only the summation order differs
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    for b, n in enumerate(doc_lengths):
        if n == 0:
            assert not got[:, b].any(), "an empty document scores 0"


def test_int8_is_within_its_bound_of_float32():
    """Per token pair, int8 codes of unit vectors err by at most ~dim / 127^2 x 1.5; over 32 query tokens' maxima
    the sum errs by far less than 32 x that: we hold it to 0.5% of the score."""
    g = torch.Generator().manual_seed(0)
    (q, qc), (d, dc) = packed([32, 32], 128, g), packed([300] * 20, 128, g)
    exact, int8 = ops.maxsim(q, qc, d, dc), ops.maxsim(q, qc, d, dc, int8=True)
    assert ((int8 - exact).abs() / exact.abs()).max() < 5e-3


def test_threads_and_isas_agree_exactly_at_int8():
    g = torch.Generator().manual_seed(1)
    (q, qc), (d, dc) = packed([20, 9], 96, g), packed([513, 40, 7], 96, g)
    one = ops.maxsim(q, qc, d, dc, int8=True)
    for level in (i for i in _C.supported_isas() if i != "scalar"):
        with isa.use(level):
            assert torch.equal(ops.maxsim(q, qc, d, dc, int8=True), one), level
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert torch.equal(ops.maxsim(q, qc, d, dc, int8=True), one)
    finally:
        torch.set_num_threads(threads)


def test_bad_input_is_refused():
    q, d = torch.randn(4, 8), torch.randn(6, 8)
    qc, dc = torch.tensor([0, 4], dtype=torch.int32), torch.tensor([0, 6], dtype=torch.int32)
    with pytest.raises(ValueError, match="queries have dimension 8, documents 9"):
        ops.maxsim(q, qc, torch.randn(6, 9), dc)
    with pytest.raises(ValueError, match="documents' offsets must rise from 0 to their 6 tokens"):
        ops.maxsim(q, qc, d, torch.tensor([0, 5], dtype=torch.int32))
    with pytest.raises(ValueError, match="queries must be token vectors"):
        ops.maxsim(torch.randn(4), qc, d, dc)


@pytest.mark.parametrize("dim", [7, 128, 130])
def test_int8_documents_given_as_codes_equal_the_streamed_quantization(dim):
    """A corpus stored as int8 token codes: the same scores as quantizing the float tokens on the fly."""
    g = torch.Generator().manual_seed(dim)
    (q, qc), (d, dc) = packed([32, 1], dim, g), packed([300, 0, 513], dim, g)
    codes = reference.quantize_rows(d)
    got = ops.maxsim(q, qc, codes, dc, int8=True)
    assert torch.equal(got, ops.maxsim(q, qc, d, dc, int8=True))
    torch.testing.assert_close(got, reference.maxsim(q, qc, codes, dc, int8=True), rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="with int8=True"):
        ops.maxsim(q, qc, codes, dc)
    with pytest.raises(ValueError, match="scales"):
        ops.maxsim(q, qc, (codes[0], codes[1][:-1]), dc, int8=True)


def test_bench_has_a_maxsim_row():
    from fastembed_rt.benchmark import run_op_benchmarks

    rows = run_op_benchmarks(torch.device("cpu"), {"GEMM float32": 100.0}, repeats=1, only={"maxsim"})
    assert {r.implementation for r in rows} == {"reference", "packed"}
    assert all(r.max_abs_error < 1e-3 for r in rows), rows
