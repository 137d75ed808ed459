"""SPLADE's fused vocabulary projection + activation + pooling (the panel kernels reducing in their epilogue)
against its reference twin, at every ISA this CPU runs, on awkward shapes: empty sequences, length 1 and 513,
vocabularies that are no multiple of the 16-column panels, hidden sizes 1 and 7; int8 to float rounding only."""

import pytest
import torch

from fastembed_rt import _C, isa, ops
from fastembed_rt.ops import cpu, reference

LENGTHS = [[0], [1], [3, 0, 5], [513], [1, 513, 0, 2]]
SHAPES = [(1, 1), (7, 17), (96, 1001), (64, 30)]  # (hidden, vocab)
KINDS = ["float32", "bfloat16", "int8"]


@pytest.fixture(params=[i for i in _C.supported_isas() if i != "scalar"], autouse=True)
def kernel_isa(request):
    with isa.use(request.param):
        yield request.param


def batch(lengths, hidden, vocab, kind, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(sum(lengths), hidden, generator=g)
    # A shifted projection so that about a third of the logits are positive, as in trained SPLADE heads.
    weight, bias = torch.randn(vocab, hidden, generator=g) / hidden**0.5, torch.randn(vocab, generator=g) - 0.5
    if kind == "int8":
        layer = ops.Linear(weight, bias, int8=True, panels_only=True)
    else:
        layer = ops.Linear(weight.to(getattr(torch, kind)), bias, panels_only=True)
    cu = torch.tensor([0] + lengths, dtype=torch.int32).cumsum(0).to(torch.int32)
    return x, cu, layer


def exact(x, cu, layer, pooling, activation):
    """The reference in float64 on the values the kernel sees (bfloat16: the weights, and x where the kernels round it:
    cpu.panel_input)."""
    if layer.int8:
        return reference.splade_pool(x, cu, layer, pooling, activation).double()
    x64 = cpu.panel_input(layer, x).double()
    logits = x64 @ layer.weight.double().T + layer.bias.double()
    weights = torch.log1p(torch.relu(logits))
    if activation == "log1p_relu":
        weights = torch.log1p(weights)
    bounds = cu.tolist()
    out = torch.zeros(len(bounds) - 1, layer.out_features, dtype=torch.float64)
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        if b > a:
            out[i] = weights[a:b].amax(0) if pooling == "max" else weights[a:b].sum(0)
    return out


@pytest.mark.parametrize("chunk_tokens", [1, 2, 5, 600])
@pytest.mark.parametrize("kind", ["float32", "int8"])
@pytest.mark.parametrize("pooling, activation", [("max", "relu"), ("sum", "log1p_relu")])
def test_reference_a_chunk_of_tokens_at_a_time_equals_the_whole(monkeypatch, chunk_tokens, kind, pooling, activation):
    """The reference (what runs where no kernel does: a baseline x86-64 CPU) projects a chunk of tokens at a time:
    sequences that span chunks, end at a chunk's edge or are empty pool as over the whole [T, vocab] logits."""
    x, cu, layer = batch([1, 513, 0, 2, 3], 7, 17, kind, seed=chunk_tokens)
    whole = reference.splade_pool(x, cu, layer, pooling, activation)
    monkeypatch.setattr(reference, "SPLADE_CHUNK_BYTES", chunk_tokens * 4 * 17)
    got = reference.splade_pool(x, cu, layer, pooling, activation)
    torch.testing.assert_close(got, whole, rtol=1e-6, atol=1e-6)
    if kind == "float32":
        torch.testing.assert_close(got.double(), exact(x, cu, layer, pooling, activation), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("lengths", LENGTHS, ids=str)
@pytest.mark.parametrize("hidden, vocab", SHAPES, ids=str)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("pooling, activation", [("max", "relu"), ("sum", "relu"), ("max", "log1p_relu"), ("sum", "log1p_relu")])
def test_fused_kernel_matches_reference(lengths, hidden, vocab, kind, pooling, activation):
    x, cu, layer = batch(lengths, hidden, vocab, kind, seed=sum(lengths) + hidden + vocab)
    assert ops.select("splade_pool", x.device, torch.float32 if layer.int8 else layer.dtype).name == "packed"
    got = ops.splade_pool(x, cu, layer, pooling, activation)
    want = exact(x, cu, layer, pooling, activation)
    assert got.shape == (len(lengths), vocab) and got.dtype == torch.float32
    # int8: exact integer products and the reference's own float epilogue; float: summation order (and the
    # 513-token sums) only.
    tolerance = 1e-5 if kind == "int8" else 2e-5 * max(1, max(lengths) if pooling == "sum" else 1)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=tolerance)
    for i, n in enumerate(lengths):
        if n == 0:
            assert not got[i].any(), "an empty sequence pools to zeros"


@pytest.mark.parametrize("kind", KINDS)
def test_reference_twin_is_what_the_op_computes_under_use_reference(kind):
    x, cu, layer = batch([4, 0, 9], 24, 50, kind, seed=3)
    with ops.use_reference():
        assert ops.select("splade_pool", x.device, torch.float32 if layer.int8 else layer.dtype).name == "reference"
        want = ops.splade_pool(x, cu, layer)
    got = ops.splade_pool(x, cu, layer)
    # bfloat16: the reference's GEMM rounds its logits to bfloat16, the kernel accumulates in float32
    torch.testing.assert_close(got, want, rtol=1e-2 if kind == "bfloat16" else 1e-5, atol=1e-2 if kind == "bfloat16" else 1e-5)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_threads_agree(threads):
    x, cu, layer = batch([7, 300, 1, 40], 48, 999, "float32", seed=4)
    one = layer.panels().pooled(x.numpy(), cu.numpy(), 0, 0, 1)
    assert (layer.panels().pooled(x.numpy(), cu.numpy(), 0, 0, threads) == one).all()


def test_never_materializes_the_logits():
    """Only [sequences, vocab] is allocated: a 4,096-token batch onto 30,522 terms takes 500 MB as logits."""
    import tracemalloc

    x, cu, layer = batch([100] * 40, 32, 30522, "float32", seed=5)
    tracemalloc.start()
    ops.splade_pool(x, cu, layer)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2 * 40 * 30522 * 4 + (1 << 20), f"peak {peak / 2**20:.1f} MiB"


def test_panels_only_layer_keeps_one_copy():
    _, _, layer = batch([1], 64, 1000, "float32", seed=6)
    assert layer.nbytes() == layer.panels().nbytes + 1000 * 4  # the panels (with the bias) and the bias


def test_bad_input_is_refused_with_a_clear_error():
    x, cu, layer = batch([3, 2], 8, 20, "float32", seed=7)
    with pytest.raises(ValueError, match="unknown SPLADE pooling 'mean'"):
        ops.splade_pool(x, cu, layer, "mean")
    with pytest.raises(ValueError, match="unknown SPLADE activation 'gelu'"):
        ops.splade_pool(x, cu, layer, "max", "gelu")
    with pytest.raises(ValueError, match="takes 8 features, hidden has 9"):
        ops.splade_pool(torch.randn(5, 9), cu, layer)
    with pytest.raises(ValueError, match="does not match total_tokens"):
        cpu.splade_pool(x, torch.tensor([0, 3, 4], dtype=torch.int32), layer)
    with pytest.raises(ValueError, match="non-decreasing"):
        cpu.splade_pool(x, torch.tensor([0, 4, 3, 5], dtype=torch.int32), layer)
    with pytest.raises(ValueError, match="pooling must be 0"):
        layer.panels().pooled(x.numpy(), cu.numpy(), 5, 0, 1)


def test_bench_has_a_splade_row():
    from fastembed_rt.benchmark import run_op_benchmarks

    rows = run_op_benchmarks(torch.device("cpu"), {"GEMM float32": 100.0}, repeats=1, only={"splade_pool"})
    assert {r.implementation for r in rows} == {"reference", "packed"}
    assert all(r.max_abs_error < 1e-3 for r in rows), rows
