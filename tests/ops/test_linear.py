"""Linear layers against their reference twins: oneDNN-packed float GEMMs, the packed panel kernels (bfloat16
without oneDNN bfloat16, int8 without VNNI), and int8 as C++ quantize / dequantize around an exact integer
GEMM; the int8 integer parts match exactly."""

import pytest
import torch

from fastembed_rt import _C, isa, ops
from fastembed_rt.ops import cpu, reference
from fastembed_rt.ops.dispatch import available, select

SHAPES = [(1, 384, 1152), (7, 13, 5), (129, 384, 1536), (0, 16, 8), (33, 1, 3)]


def layer(rows, inputs, outputs, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, inputs, generator=g)
    x[:, :1] *= 20  # an outlier channel, as in real activations
    return x, torch.randn(outputs, inputs, generator=g) / inputs**0.5, torch.randn(outputs, generator=g)


@pytest.mark.parametrize("rows,cols", [(1, 1), (3, 17), (64, 384), (0, 4), (5, 1536)], ids=str)
def test_quantize_rows_is_exact(rows, cols):
    g = torch.Generator().manual_seed(rows * 7 + cols)
    x = torch.randn(rows, cols, generator=g) * torch.rand(rows, 1, generator=g) * 10
    if rows > 2:
        x[1] = 0  # an all-zero row: scale 0, codes 0
        x[2, 0] = x[2].abs().max() * 1.0000001
    codes, scales = _C.quantize_rows(x.numpy())
    want_codes, want_scales = reference.quantize_rows(x)
    assert torch.equal(torch.from_numpy(codes), want_codes)
    assert torch.equal(torch.from_numpy(scales), want_scales)


def test_quantize_rows_near_a_tie_divides_once():
    """x * (127 / max) lands on 32.5 when 127 / max is rounded once, as the kernels divide, and on 32.500004 when
    computed as 127 * (1 / max), as torch's `127 / tensor` does: codes 32 and 33. The twin divides once too."""
    x = torch.tensor([[1.4714293479919434, 5.749892711639404]])
    codes, scales = _C.quantize_rows(x.numpy())
    want_codes, want_scales = reference.quantize_rows(x)
    assert codes[0, 0] == 32 and torch.equal(torch.from_numpy(codes), want_codes)
    assert torch.equal(torch.from_numpy(scales), want_scales)


@pytest.mark.parametrize("rows,cols", [(1, 1), (3, 17), (64, 384), (0, 4), (6, 1536)], ids=str)
def test_asymmetric_quantize_rows_is_exact(rows, cols):
    g = torch.Generator().manual_seed(rows + cols)
    x = torch.nn.functional.gelu(torch.randn(rows, cols, generator=g) * 3)  # mostly >= 0, as a GELU output
    if rows > 5:
        x[1] = 0  # scale 0, codes 0
        x[2] = -x[2].abs() - 0.1  # all negative: zero point 127
        x[3] = x[3].abs() + 0.1  # all positive: zero point 0
        x[4] = torch.randn(cols, generator=g)  # both signs
        x[5] = 2.5  # a constant row
    codes, scales = _C.quantize_rows(x.numpy(), asymmetric=True)
    want_codes, want_scales = reference.quantize_rows_asymmetric(x)
    assert torch.equal(torch.from_numpy(codes), want_codes)
    assert torch.equal(torch.from_numpy(scales), want_scales)
    # 127 steps over the row's range, so a code is within half a step of x
    error = (torch.from_numpy(codes).float() * torch.from_numpy(scales)[:, None] - x).abs()
    assert (error <= torch.from_numpy(scales)[:, None] * 0.5001 + 1e-7).all()


def test_asymmetric_codes_of_a_gelu_output_are_as_fine_as_symmetric_ones():
    """Why the down projection takes them: 127 steps over [min, max] against 254 over [-max|x|, max|x|]."""
    x = torch.nn.functional.gelu(torch.randn(64, 1536, generator=torch.Generator().manual_seed(0)) * 2)
    asymmetric, a_scales = reference.quantize_rows_asymmetric(x)
    symmetric, s_scales = reference.quantize_rows(x)
    error = lambda codes, scales: (codes.float() * scales[:, None] - x).pow(2).mean()  # noqa: E731
    assert error(asymmetric, a_scales) < 1.1 * error(symmetric, s_scales)


def test_quantize_rows_rounds_half_to_even():
    x = torch.tensor([[127.0, 0.5, 1.5, 2.5, -0.5, -1.5]])
    codes, _ = _C.quantize_rows(x.numpy())
    assert codes.tolist() == [[127, 0, 2, 2, 0, -2]]


@pytest.mark.parametrize("rows,inputs,outputs", SHAPES, ids=str)
@pytest.mark.parametrize("activation", [None, "gelu", "gelu_tanh"])
@pytest.mark.parametrize("implementation", [cpu.int8_linear, cpu.packed_int8_linear], ids=["cpp", "packed"])
@pytest.mark.parametrize("asymmetric", [False, True], ids=["symmetric", "asymmetric"])
def test_int8_linear_matches_reference(rows, inputs, outputs, activation, implementation, asymmetric):
    x, weight, bias = layer(rows, inputs, outputs, seed=rows + inputs)
    linear = ops.Linear(weight, bias, int8=True, asymmetric_input=asymmetric)
    # asked for, it holds where the layer runs on the AVX2 panels (vpmaddubsw), and nowhere else
    assert linear.asymmetric_input == (asymmetric and select("int8_linear", x.device, torch.float32).name == "packed"
                                       and linear.panels().isa == "avx2")  # fmt: skip
    if implementation is cpu.packed_int8_linear and isa.active() == "scalar":
        pytest.raises(ValueError, implementation, x, linear, activation)
        return
    got = implementation(x, linear, activation)
    want = reference.int8_linear(x, linear, activation)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_int8_linear_is_close_to_float():
    x, weight, bias = layer(64, 384, 1536)
    got = ops.Linear(weight, bias, int8=True)(x)
    want = torch.nn.functional.linear(x, weight, bias)
    cosine = torch.nn.functional.cosine_similarity(got, want, dim=1)
    assert cosine.min() > 0.999


def test_dequantize_epilogue_matches_reference():
    acc = torch.randint(-(2**20), 2**20, (9, 31), dtype=torch.int32)
    rows, cols, bias = torch.rand(9), torch.rand(31), torch.randn(31)
    got = _C.dequantize_rows(acc.numpy(), rows.numpy(), cols.numpy(), bias.numpy(), 1)
    want = reference.gelu(acc.float() * (rows[:, None] * cols[None, :]) + bias)
    torch.testing.assert_close(torch.from_numpy(got), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rows,cols", [(1, 1), (9, 31), (64, 1536), (0, 7)], ids=str)
@pytest.mark.parametrize("activation", [0, 1, 2])
def test_requantize_matches_dequantize_then_quantize(rows, cols, activation):
    g = torch.Generator().manual_seed(rows * cols + activation)
    acc = torch.randint(-(2**20), 2**20, (rows, cols), dtype=torch.int32, generator=g)
    row_scales, col_scales, bias = torch.rand(rows, generator=g) * 1e-3, torch.rand(cols, generator=g), torch.randn(cols, generator=g)
    if rows:
        acc[0] = 0
        bias[:] = 0 if activation == 0 else bias  # an all-zero row: scale 0
    args = (acc.numpy(), row_scales.numpy(), col_scales.numpy(), bias.numpy(), activation)
    codes, scales = _C.requantize_rows(*args)
    want_codes, want_scales = reference.quantize_rows(torch.from_numpy(_C.dequantize_rows(*args)))
    # Same float activations, same rounding: codes are equal.
    assert torch.equal(torch.from_numpy(codes), want_codes)
    assert torch.equal(torch.from_numpy(scales), want_scales)


@pytest.mark.parametrize("rows", [1, 5, 300])
@pytest.mark.parametrize("activation", ["gelu", "gelu_tanh"])
@pytest.mark.parametrize("seven_bit_up,asymmetric_down", [(False, False), (True, True)])
def test_int8_feed_forward_matches_reference(rows, activation, seven_bit_up, asymmetric_down):
    x, up_weight, up_bias = layer(rows, 384, 1536, seed=rows)
    _, down_weight, down_bias = layer(1, 1536, 384, seed=rows + 1)
    up = ops.Linear(up_weight, up_bias, int8=True, seven_bit=seven_bit_up)
    down = ops.Linear(down_weight, down_bias, int8=True, asymmetric_input=asymmetric_down)  # as models/bert.py
    want = reference.int8_feed_forward(x, up, down, activation)
    for impl in available("int8_feed_forward", x.device, torch.float32):
        got = impl.fn(x, up, down, activation)
        # The GELU approximations differ by ~1e-7, which can move a code across a rounding boundary.
        assert torch.nn.functional.cosine_similarity(got, want, dim=1).min() > 0.99999, impl.name
    picked = select("int8_feed_forward", x.device, torch.float32).fn(x, up, down, activation)
    assert torch.equal(ops.feed_forward(x, up, down, activation), picked)


def test_feed_forward_of_float_layers_is_the_two_linears():
    x, up_weight, up_bias = layer(7, 16, 24)
    _, down_weight, down_bias = layer(1, 24, 16, seed=1)
    up, down = ops.Linear(up_weight, up_bias), ops.Linear(down_weight, down_bias)
    torch.testing.assert_close(ops.feed_forward(x, up, down, "gelu"), down(up(x, "gelu")))


@pytest.mark.parametrize("rows,inputs,outputs", SHAPES, ids=str)
@pytest.mark.parametrize("activation", [None, "gelu", "gelu_tanh"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_float_linear_matches_reference(rows, inputs, outputs, activation, dtype):
    x, weight, bias = (t.to(dtype) for t in layer(rows, inputs, outputs, seed=outputs))
    linear = ops.Linear(weight, bias)
    got = linear(x, activation)
    with ops.use_reference():
        want = linear(x, activation)
    assert got.dtype == dtype and got.shape == (rows, outputs)
    tolerance = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=2**-6, atol=2e-2)
    torch.testing.assert_close(got.float(), want.float(), **tolerance)


@pytest.mark.parametrize("rows", [cpu.WIDEN_MIN_ROWS - 1, cpu.WIDEN_MIN_ROWS + 7])
@pytest.mark.parametrize("activation", [None, "gelu"])
def test_bfloat16_without_native_support_agrees_across_the_row_threshold(rows, activation):
    """Below WIDEN_MIN_ROWS the packed bfloat16 layers run on the panel kernels, from it on MKL over the weights
    widened to float32 (on the panels again where isa.float_panels_preferred): all are the exact products of
    bfloat16 values summed in float32, then rounded."""
    x, weight, bias = (t.bfloat16() for t in layer(rows, 384, 100, seed=rows))
    with isa.use("avx2"):  # where the packed bfloat16 layers run, whatever this CPU has beyond it
        linear = ops.Linear(weight, bias)
        assert select("linear", x.device, torch.bfloat16).name == "packed"
        got = cpu.packed_linear(linear, x, activation)
    with ops.use_reference():
        want = linear(x, activation)
    torch.testing.assert_close(got.float(), want.float(), rtol=2**-7, atol=1e-2)


@pytest.mark.parametrize("rows,inputs,outputs", SHAPES + [(300, 384, 384)], ids=str)
@pytest.mark.parametrize("activation", [None, "gelu", "gelu_tanh"])
def test_float32_on_the_panels_matches_reference(rows, inputs, outputs, activation):
    """float32 layers on the AVX2 panel kernels, bias and GELU in their epilogue: what AMD CPUs run at every batch
    size (isa.float_panels_preferred), tested on any CPU."""
    x, weight, bias = layer(rows, inputs, outputs, seed=rows + outputs)
    with isa.use("avx2"):
        linear = ops.Linear(weight, bias)
        got = cpu.packed_linear(linear, x, activation)
    torch.testing.assert_close(got, reference.linear(x, weight, bias, activation), rtol=1e-4, atol=1e-4)


def test_float_linear_casts_its_input_to_the_weight_dtype():
    x, weight, bias = layer(4, 8, 3)
    out = ops.Linear(weight.bfloat16(), bias.bfloat16())(x)
    assert out.dtype == torch.bfloat16


@pytest.mark.parametrize("rows", [1, 7, 300], ids=str)
def test_bfloat16_weights_with_float32_activations(rows):
    """A bfloat16 model's layers where bfloat16 is not native (the suite's AVX2 pass): float32 in, float32 out, the
    float32 product of x as it is with the same bfloat16 weights widened: on the panels, on MKL from
    cpu.WIDEN_MIN_ROWS where the panels do not take those, and in the reference twin."""
    x, weight, bias = layer(rows, 37, 19)
    lin = ops.Linear(weight.bfloat16(), bias, float32_activations=True)
    if not ops.widened_bfloat16():  # native bfloat16 GEMMs: the flag does nothing
        assert not lin.float32_activations and lin(x).dtype == torch.bfloat16
        return
    got = lin(x, "gelu")
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, reference.linear(x, weight.bfloat16().float(), bias, "gelu"), rtol=1e-5, atol=1e-5)
    with ops.use_reference():
        torch.testing.assert_close(lin(x, "gelu"), reference.linear(x, weight.bfloat16().float(), bias, "gelu"))
    assert lin(x.bfloat16()).dtype == torch.bfloat16  # bfloat16 inputs still give bfloat16


def test_dispatch_table():
    table = ops.implementation_table("cpu", torch.float32)
    # int8: our packed kernels, except where torch._int_mm is fast (VNNI) and AMX tiles are not there to beat it
    amx = _C.cpu_features()["amx_int8"] and isa.active() == "avx512"
    assert table["int8_linear"] == ("packed" if amx or not (isa.int_mm_fast() or isa.active() == "scalar") else "cpp")
    with isa.amx_allowed(False):
        int8 = ops.implementation_table("cpu", torch.float32)["int8_linear"]
        assert int8 == ("cpp" if isa.int_mm_fast() or isa.active() == "scalar" else "packed")
    mkl = "mkl" if torch.backends.mkl.is_available() else "onednn" if ops.onednn_available() else "reference"
    assert table["linear"] == ("packed" if isa.float_panels_preferred() else mkl)
    bf16 = ops.implementation_table("cpu", torch.bfloat16)["linear"]
    assert bf16 == ("onednn" if isa.onednn_bfloat16() else "reference" if isa.active() == "scalar" else "packed")
    assert isa.float_panels_preferred() == (isa.active() == "avx2" and _C.cpu_features()["amd"])
    with ops.use_reference():
        assert ops.implementation_table("cpu", torch.float32)["linear"] == "reference"


def test_linear_rejects_bad_shapes():
    with pytest.raises(ValueError, match="linear weight must be \\[out, in\\]"):
        ops.Linear(torch.ones(3))
    with pytest.raises(ValueError, match="linear bias must have 3 values"):
        ops.Linear(torch.ones(3, 4), torch.ones(4))
    with pytest.raises(ValueError, match="linear expects 4 input features, got 5"):
        ops.Linear(torch.ones(3, 4))(torch.ones(2, 5))


def test_dequantize_binding_rejects_mismatched_scales():
    acc = torch.zeros(3, 4, dtype=torch.int32).numpy()
    with pytest.raises(ValueError, match="row_scales: expected one scale per row"):
        _C.dequantize_rows(acc, torch.ones(2).numpy(), torch.ones(4).numpy())
    with pytest.raises(ValueError, match="col_scales: expected one scale per column"):
        _C.dequantize_rows(acc, torch.ones(3).numpy(), torch.ones(5).numpy())


@pytest.mark.parametrize("rows", [1, 17, 63, 65, 1023, 1024, 1025, 2500, 4096, 4097, 9000])
def test_onednn_sees_only_row_blocks_and_padded_remainders(rows, monkeypatch):
    from fastembed_rt.ops import linear as linear_module

    if not ops.onednn_available():  # torch built without oneDNN: linears stay on the reference
        assert "onednn" not in ops.implementations("linear")
        return
    x, weight, bias = layer(rows, 64, 48)
    linear = ops.Linear(weight, bias)
    linear.packed = torch.ops.mkldnn._reorder_linear_weight(weight, linear_module.ROW_BLOCK)
    gemm, seen = torch.ops.mkldnn._linear_pointwise, []

    class Spy:
        def _linear_pointwise(self, rows_in, *args):
            seen.append(rows_in.shape[0])
            return gemm(rows_in, *args)

    monkeypatch.setattr(linear_module.torch.ops, "mkldnn", Spy())
    got = linear_module.onednn_linear(linear, x)
    torch.testing.assert_close(got, torch.nn.functional.linear(x, weight, bias), rtol=1e-5, atol=1e-5)
    sizes = {16, 32, 48, *range(64, 1025, 64), *range(2048, linear_module.ROW_BLOCK + 1, 1024)}
    assert seen and set(seen) <= sizes and len(sizes) == 22
