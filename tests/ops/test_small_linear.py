"""The packed linear layers (the fused encoder's, and the op path's bfloat16 / int8 ones where no library is
fast) against their reference twins, at every ISA this CPU runs: AVX-512 panels (float32 FMA, bfloat16 dot,
int8 VNNI, or AMX tiles for int8 rows in whole tiles of 16 where the CPU has AMX-INT8) and AVX2 panels (float32 FMA, bfloat16 widened, int8 vpmaddubsw on 7-bit weights or on 7-bit asymmetric
input codes, else vpmaddwd); int8
matches exactly."""

import numpy as np
import pytest
import torch

from fastembed_rt import _C, isa, ops
from fastembed_rt.ops import cpu, reference

# from 16 rows (a whole AMX tile), and from 256 (a 128-row chunk per worker on 2 threads), int8 runs on AMX tiles
# where the CPU has them: whole tiles and the rows left over, k and n not multiples of the tiles'
SHAPES = [(1, 1, 1), (1, 384, 1152), (3, 13, 17), (8, 1536, 384), (9, 384, 1536), (17, 2, 33), (0, 8, 16), (47, 130, 33),
          (300, 64, 17)]
KINDS = ["float32", "bfloat16", "int8"]


def small_linear(spec, x, *args, **kwargs):
    return _C.PackedLinear(spec)(x, *args, **kwargs)


@pytest.fixture(params=_C.supported_isas(), autouse=True)
def kernel_isa(request):
    with isa.use(request.param):
        yield request.param


def supported(kind):
    return _C.fused_encoder_supported(kind)


def layer(m, k, n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, k, generator=g), torch.randn(n, k, generator=g) / k**0.5, torch.randn(n, generator=g)


@pytest.mark.parametrize("m,k,n", SHAPES, ids=str)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("activation", [None, "gelu", "gelu_tanh"])
def test_matches_reference(m, k, n, kind, activation):
    x, weight, bias = layer(m, k, n, seed=m * 1000 + k + n)
    if kind == "int8":
        linear = ops.Linear(weight, bias, int8=True)
        want = reference.int8_linear(x, linear, activation)
    else:
        linear = ops.Linear(weight.to(getattr(torch, kind)), bias)
        seen = cpu.panel_input(linear, x)  # bfloat16: rounded on AVX-512 (dot products), as it is on AVX2
        want = reference.linear(seen.double(), linear.weight.double(), bias.double(), activation).float()
    if not supported(kind):
        with pytest.raises(ValueError, match="need AVX2 or better"):
            small_linear(linear.arrays(), x.numpy())
        return
    got = torch.from_numpy(small_linear(linear.arrays(), x.numpy(), cpu.ACTIVATION_CODES[activation]))
    assert got.shape == (m, n)
    # int8: exact integer products, identical float epilogue; float: summation order only.
    tolerance = dict(rtol=1e-5, atol=1e-5) if kind != "float32" else dict(rtol=1e-5, atol=2e-5)
    torch.testing.assert_close(got, want, **tolerance)


def test_bfloat16_round_output_rounds_like_a_bfloat16_gemm():
    x, weight, bias = layer(5, 64, 40, seed=1)
    linear = ops.Linear(weight.bfloat16(), bias.bfloat16())
    if not supported("bfloat16"):  # below AVX2 it is refused with a clear error
        with pytest.raises(ValueError, match="need AVX2 or better"):
            small_linear(linear.arrays(), x.numpy())
        return
    got = torch.from_numpy(small_linear(linear.arrays(), x.numpy(), 0, True))
    assert torch.equal(got, got.bfloat16().float())
    want = reference.linear(x.bfloat16().float(), weight.bfloat16().float(), bias.bfloat16().float())
    torch.testing.assert_close(got, want.bfloat16().float(), rtol=2**-7, atol=1e-2)


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_threads_agree(threads):
    x, weight, bias = layer(7, 384, 1536, seed=3)
    linear = ops.Linear(weight, bias, int8=True)
    if not supported("int8"):
        with pytest.raises(ValueError, match="need AVX2 or better"):
            small_linear(linear.arrays(), x.numpy())
        return
    one = small_linear(linear.arrays(), x.numpy(), 1, num_threads=1)
    assert (one == small_linear(linear.arrays(), x.numpy(), 1, num_threads=threads)).all()


def test_rejects_bad_input(kernel_isa):
    x, weight, bias = layer(2, 8, 4, seed=0)
    if not supported("float32"):
        with pytest.raises(ValueError, match="the active ISA is scalar"):
            small_linear((weight.numpy(), None, None), x.numpy())
        return
    with pytest.raises(ValueError, match="x: expected 8 columns"):
        small_linear((weight.numpy(), None, None), torch.ones(2, 7).numpy())
    with pytest.raises(ValueError, match="int8 weights need their scales"):
        small_linear((weight.to(torch.int8).numpy(), None, None), x.numpy())
    with pytest.raises(ValueError, match="expected one bias per output"):
        small_linear((weight.numpy(), None, torch.ones(3).numpy()), x.numpy())
    with pytest.raises(TypeError, match="weight must be float32"):
        small_linear((weight.double().numpy(), None, None), x.numpy())


@pytest.mark.parametrize("m,k,n", SHAPES, ids=str)
@pytest.mark.parametrize("kind", KINDS)
def test_unpack_gives_back_the_weight_exactly(m, k, n, kind):
    _, weight, bias = layer(m, k, n, seed=k + n)
    linear = ops.Linear(weight, bias, int8=True) if kind == "int8" else ops.Linear(weight.to(getattr(torch, kind)), bias)
    given = linear.arrays()[0]
    if not supported(kind):
        pytest.raises(ValueError, _C.PackedLinear, linear.arrays())
        return
    packed = _C.PackedLinear(linear.arrays())
    unpacked = packed.unpack()
    assert unpacked.dtype == given.dtype and (unpacked == given).all()
    assert packed.nbytes >= given.nbytes  # padded to whole panels, plus scales and bias


@pytest.mark.parametrize("level", _C.supported_isas())
@pytest.mark.parametrize("kind", ["bfloat16", "int8"])
def test_a_layer_on_the_panels_holds_no_other_copy(kind, level):
    with isa.use(level):
        _check_panels_hold_the_only_copy(kind)


def _check_panels_hold_the_only_copy(kind):
    _, weight, bias = layer(1, 384, 1536, seed=5)
    linear = ops.Linear(weight, bias, int8=True, seven_bit=True) if kind == "int8" else ops.Linear(weight.bfloat16(), bias.bfloat16())
    on_panels = ops.select("int8_linear" if kind == "int8" else "linear", torch.device("cpu"), linear.dtype).name == "packed"
    # int8 on the AVX2 panels: 7-bit weights (the vpmaddubsw path); VNNI takes 8-bit ones
    seven_bit = on_panels and not isa.has("avx512_vnni")
    want = weight.bfloat16() if kind == "bfloat16" else reference.quantize_rows(weight, 63 if seven_bit else 127)[0]
    # On the panels (AVX2, or AVX-512 without the native instruction): bfloat16 or int8 panels and nothing else,
    # half (a quarter) of a float32 layer, plus bias, scales, column sums and panel padding. Elsewhere: the
    # stored weights only.
    limit = (want.numel() * want.element_size() + 4 * (5 if on_panels else 2) * 1536)
    assert linear.nbytes() <= limit
    assert torch.equal(linear.weight if kind == "bfloat16" else linear.qweight, want)
    x = torch.randn(3, 384)
    got = linear(x)
    with ops.use_reference():
        torch.testing.assert_close(got.float(), linear(x).float(), rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("largest", [63, 64, 127])
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (5, 7, 17), (9, 384, 40), (3, 1536, 16)], ids=str)
def test_int8_weights_at_the_range_limits_are_exact(largest, m, k, n):
    """7-bit weights take vpmaddubsw on AVX2, wider ones (with symmetric input codes) vpmaddwd: both exact at their
    extremes, where an unchecked vpmaddubsw would saturate (2 * 255 * 127 > 2^15)."""
    from types import SimpleNamespace

    g = torch.Generator().manual_seed(largest + k)
    codes = torch.randint(-largest, largest + 1, (n, k), generator=g).to(torch.int8)
    codes[0] = largest  # column 0: every weight at the top of the range...
    x = torch.randn(m, k, generator=g)
    x[0] = 1.0  # ...against row 0's codes all 127 (unsigned 255): the largest pair sums there are
    layer = SimpleNamespace(qweight=codes, weight_scales=torch.rand(n, generator=g) + 0.5, bias=torch.randn(n, generator=g),
                            asymmetric_input=False)  # fmt: skip
    spec = (codes.numpy(), layer.weight_scales.numpy(), layer.bias.numpy())
    if not supported("int8"):
        pytest.raises(ValueError, _C.PackedLinear, spec)
        return
    got = torch.from_numpy(_C.PackedLinear(spec)(x.numpy()))
    torch.testing.assert_close(got, reference.int8_linear(x, layer), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("m,k,n", [(1, 1, 2), (5, 7, 17), (9, 384, 40), (3, 1536, 16)], ids=str)
def test_asymmetric_input_codes_are_exact_against_the_widest_weights(m, k, n):
    """7-bit unsigned codes against 8-bit weights on vpmaddubsw: the largest pair sums, 2 * 127 * -128 and
    2 * 127 * 127, fit int16; the result equals the reference's exact integer products."""
    from types import SimpleNamespace

    g = torch.Generator().manual_seed(k + n)
    codes = torch.randint(-128, 128, (n, k), generator=g).to(torch.int8)
    codes[0], codes[1] = -128, 127  # whole columns at both ends of the range...
    x = torch.nn.functional.gelu(torch.randn(m, k, generator=g) * 3)
    x[0] = 1.0  # ...against a row whose codes are all 127 (zero point 0)
    if m > 1:
        x[1] = -1.0  # and one whose unsigned codes are all 0 (zero point 127)
    spec = (codes.numpy(), (torch.rand(n, generator=g) + 0.5).numpy(), torch.randn(n, generator=g).numpy())
    if not supported("int8"):
        pytest.raises(ValueError, _C.PackedLinear, spec, asymmetric_input=True)
        return
    packed = _C.PackedLinear(spec, asymmetric_input=True)
    assert packed.asymmetric_input == (packed.isa == "avx2")  # VNNI takes 8-bit symmetric codes as they are
    layer = SimpleNamespace(qweight=codes, weight_scales=torch.from_numpy(spec[1]), bias=torch.from_numpy(spec[2]),
                            asymmetric_input=packed.asymmetric_input)  # fmt: skip
    got = torch.from_numpy(packed(x.numpy()))
    torch.testing.assert_close(got, reference.int8_linear(x, layer), rtol=1e-5, atol=1e-5)


def test_asymmetric_input_is_for_8_bit_weights_and_float_rows_only():
    seven_bit = torch.randint(-63, 64, (16, 32)).to(torch.int8)
    spec = (seven_bit.numpy(), torch.rand(16).numpy(), None)
    if not supported("int8"):
        return  # refused at packing (test_rejects_bad_input)
    assert not _C.PackedLinear(spec, asymmetric_input=True).asymmetric_input  # 7-bit weights: 8-bit codes run already
    wide = seven_bit.clone()
    wide[0, 0] = 100
    layer = _C.PackedLinear((wide.numpy(), spec[1], None), asymmetric_input=True)
    if not layer.asymmetric_input:
        return  # AVX-512 with VNNI
    rows = torch.randint(-127, 128, (4, 32)).to(torch.int8)
    with pytest.raises(ValueError, match="quantizes its input asymmetrically"):
        layer.max_pooled(rows.numpy(), torch.tensor([0, 4], dtype=torch.int32).numpy(), scales=torch.rand(4).numpy())


def test_int8_weights_pack_into_bytes_at_every_width(kernel_isa):
    """7-bit weights (vpmaddubsw) and 8-bit ones (vpmaddwd, sign-extended as they load) both keep one byte per
    weight: a quarter of a float32 layer, plus scales (and column sums) of 4 bytes per output."""
    codes = torch.randint(-63, 64, (64, 256)).to(torch.int8)
    scales = torch.rand(64)
    if not supported("int8"):
        pytest.raises(ValueError, _C.PackedLinear, (codes.numpy(), scales.numpy(), None))
        return
    narrow, wide = codes.clone(), codes.clone()
    wide[5, 7] = -128
    for c in (narrow, wide):
        assert codes.numel() <= _C.PackedLinear((c.numpy(), scales.numpy(), None)).nbytes <= codes.numel() + 8 * 64


@pytest.mark.parametrize("k,n", [(1, 1), (13, 17), (384, 1152), (2, 33)], ids=str)
def test_widened_bfloat16_is_the_weight_transposed_exactly(k, n, kernel_isa):
    """What MKL runs large bfloat16 batches on where no native bfloat16 exists (ops.cpu.packed_linear)."""
    _, weight, bias = layer(1, k, n, seed=k + n)
    linear = _C.PackedLinear(ops.Linear(weight.bfloat16(), bias).arrays()) if supported("bfloat16") else None
    if linear is None:
        return  # refused at packing, as test_matches_reference checks
    if linear.isa != "avx2":  # AVX512_BF16 panels hold pairs for vdpbf16ps; oneDNN runs those layers
        with pytest.raises(ValueError, match="only bfloat16 layers packed for AVX2"):
            linear.widened()
        return
    assert torch.equal(torch.from_numpy(linear.widened()), weight.bfloat16().float().T)


def test_only_bfloat16_layers_widen(kernel_isa):
    _, weight, bias = layer(1, 8, 4, seed=0)
    if not supported("float32"):
        return  # nothing packs below AVX2 (test_rejects_bad_input)
    for spec in (ops.Linear(weight, bias).arrays(), ops.Linear(weight, bias, int8=True).arrays()):
        with pytest.raises(ValueError, match="only bfloat16 layers packed for AVX2"):
            _C.PackedLinear(spec).widened()


AMX_SHAPES = [(16, 64, 16), (31, 1, 1), (32, 384, 40), (33, 130, 17), (257, 1536, 33), (300, 70, 1)]


@pytest.mark.parametrize("m,k,n", AMX_SHAPES, ids=str)
@pytest.mark.parametrize("activation", [None, "gelu"])
def test_int8_on_amx_tiles_equals_the_vnni_panels_bit_for_bit(m, k, n, activation):
    """tdpbusd sums what vpdpbusd sums and the tile epilogue computes what the panel epilogue does: with AMX allowed
    and forbidden the outputs are equal (on a CPU without AMX-INT8 both runs take the panels)."""
    x, weight, bias = layer(m, k, n, seed=m + k + n)
    linear = ops.Linear(weight, bias, int8=True)
    if not supported("int8"):
        return  # refused at packing (test_rejects_bad_input)
    packed = _C.PackedLinear(linear.arrays())
    code = cpu.ACTIVATION_CODES[activation]
    with isa.amx_allowed(False):
        assert not isa.amx_int8()
        panels = packed(x.numpy(), code, num_threads=2)
    tiles = packed(x.numpy(), code, num_threads=2)
    assert isa.amx_int8() == (_C.cpu_features()["amx_int8"] and isa.active() == "avx512")
    assert (tiles == panels).all()
    torch.testing.assert_close(torch.from_numpy(tiles), reference.int8_linear(x, linear, activation), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("m,k,n", [(1, 7, 5), (40, 384, 33), (300, 130, 17)], ids=str)
@pytest.mark.parametrize("asymmetric", [False, True])
def test_int8_layers_take_bfloat16_rows_as_they_are(m, k, n, asymmetric):
    """bfloat16 rows (a bfloat16 layer's output) are quantized without a float32 copy: the same result as their
    float32 values."""
    x, weight, bias = layer(m, k, n, seed=k)
    linear = ops.Linear(weight, bias, int8=True, asymmetric_input=asymmetric)
    if not supported("int8"):
        return  # refused at packing (test_rejects_bad_input)
    packed = _C.PackedLinear(linear.arrays(), asymmetric_input=asymmetric)
    rows = x.bfloat16()
    got = packed(rows.view(torch.int16).numpy(), 1)
    assert (got == packed(rows.float().numpy(), 1)).all()
    float_layer = _C.PackedLinear(ops.Linear(weight, bias).arrays())
    with pytest.raises(TypeError, match="x: expected dtype float32, got int16"):
        float_layer(rows.view(torch.int16).numpy())
    with pytest.raises(ValueError, match=f"x: expected {k} columns"):
        packed(torch.zeros(2, k + 1, dtype=torch.int16).numpy())


def test_amx_allowed_switches_the_bfloat16_attention_kernel_too():
    with isa.amx_allowed(False):
        assert _C.bf16_attention_products() != "amx"
        assert not isa.amx_int8()
    assert _C.set_amx_allowed(True) is True  # the context put the setting back


@pytest.mark.parametrize("lengths", [[0, 1, 15, 16, 17, 33, 300], [40], [5, 0, 64, 2]], ids=str)
@pytest.mark.parametrize("k,n", [(128, 32), (70, 17), (384, 49)], ids=str)
def test_int8_max_and_pooling_on_amx_tiles_equal_the_vnni_panels(lengths, k, n):
    """MaxSim's max (from codes and from float rows) and SPLADE's max and sum pooling of an int8 layer: the tile
    epilogue keeps each sequence's run of rows as the panel kernels do, across tile blocks, chunk ends and the rows
    left over, so the results are equal with AMX allowed and forbidden, and equal the reference."""
    g = torch.Generator().manual_seed(k + n + len(lengths))
    x = torch.randn(sum(lengths), k, generator=g)
    weight, bias = torch.randn(n, k, generator=g) / k**0.5, torch.randn(n, generator=g)
    linear = ops.Linear(weight, bias, int8=True)
    if not supported("int8"):
        return  # refused at packing (test_rejects_bad_input)
    packed = _C.PackedLinear(linear.arrays())
    cu = torch.tensor([0, *lengths]).cumsum(0).to(torch.int32).numpy()
    codes, scales = reference.quantize_rows(x, 127)
    runs = {
        "max of codes": lambda: packed.max_pooled(codes.numpy(), cu, scales=scales.numpy(), num_threads=2),
        "max of rows": lambda: packed.max_pooled(x.numpy(), cu, num_threads=2),
        "splade max": lambda: packed.pooled(x.numpy(), cu, 0, 0, 2),
        "splade sum": lambda: packed.pooled(x.numpy(), cu, 1, 1, 2),
    }
    for name, run in runs.items():
        with isa.amx_allowed(False):
            panels = run()
        tiles = run()
        assert np.array_equal(tiles, panels), name
    codes_int = reference.int8_matmul(codes, linear.qweight)
    products = codes_int.double() * scales.double()[:, None] * linear.weight_scales.double()[None, :] + bias.double()[None, :]
    want = torch.stack([products[s:e].max(0).values if e > s else torch.full((n,), -np.inf, dtype=torch.float64)
                        for s, e in zip(cu[:-1], cu[1:])])  # fmt: skip
    torch.testing.assert_close(torch.from_numpy(runs["max of codes"]()).double(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("m", [0, 1, 31, 64, 65, 300], ids=str)
@pytest.mark.parametrize("k,hidden,n", [(384, 1536, 384), (70, 33, 17)], ids=str)
@pytest.mark.parametrize("as_in_models", [False, True], ids=["8-bit", "7-bit up, asymmetric down"])
def test_feed_forward_equals_its_two_layers_bit_for_bit(m, k, hidden, n, as_in_models):
    """The fused block (on AMX tiles and the AVX2 kernels: chunks of rows through both layers, the activations in
    cache) gives what the two layer calls give, from float32 and from bfloat16 rows, with the weight and input codes
    the models ask for on AVX2 too; the op layer's int8 block runs it."""
    g = torch.Generator().manual_seed(m + k + hidden)
    x = torch.randn(m, k, generator=g)
    up = ops.Linear(torch.randn(hidden, k, generator=g) / k**0.5, torch.randn(hidden, generator=g), int8=True,
                    seven_bit=as_in_models)  # fmt: skip
    down = ops.Linear(torch.randn(n, hidden, generator=g) / hidden**0.5, torch.randn(n, generator=g), int8=True,
                      asymmetric_input=as_in_models)  # fmt: skip
    if not supported("int8"):
        return  # refused at packing (test_rejects_bad_input)
    up_packed, down_packed = up.panels(), down.panels()
    gelu = cpu.ACTIVATION_CODES["gelu"]
    for rows in (x, x.bfloat16()):
        given = rows.view(torch.int16).numpy() if rows.dtype == torch.bfloat16 else rows.numpy()
        two_calls = down_packed(up_packed(given, gelu, num_threads=2), num_threads=2)
        assert np.array_equal(up_packed.feed_forward(down_packed, given, gelu, num_threads=2), two_calls)
    with pytest.raises(ValueError, match=f"down: expected {hidden} inputs"):
        up_packed.feed_forward(up_packed, x.numpy())
    if ops.select("int8_feed_forward", torch.device("cpu"), torch.float32).name == "packed":
        want = reference.int8_linear(reference.int8_linear(x, up, "gelu"), down)
        # The GELU output's codes (8-bit symmetric or 7-bit asymmetric): our erf and torch's may round a value at a
        # code's edge apart, one code step times a weight (under FASTEMBED_RT_ISA=scalar, ATen's scalar erf moved
        # 638 of 115,200 8-bit outputs by up to 3.7e-3).
        torch.testing.assert_close(ops.feed_forward(x, up, down, "gelu"), want, rtol=5e-3, atol=5e-3)


@pytest.mark.parametrize("threads", [1, 3, 8])
def test_int8_tiles_agree_across_thread_counts(threads):
    """Row chunks per worker (linear, fused block) and sequences per worker (max): every thread count gives the
    two-thread result exactly."""
    x, weight, bias = layer(300, 384, 1536, seed=11)
    up = ops.Linear(weight, bias, int8=True)
    down = ops.Linear(weight.T.contiguous(), bias[:384], int8=True)
    if not supported("int8"):
        return  # refused at packing (test_rejects_bad_input)
    up_packed, down_packed = _C.PackedLinear(up.arrays()), _C.PackedLinear(down.arrays())
    cu = torch.tensor([0, 1, 40, 200, 300], dtype=torch.int32).numpy()
    runs = {
        "linear": lambda t: up_packed(x.numpy(), 1, num_threads=t),
        "feed forward": lambda t: up_packed.feed_forward(down_packed, x.numpy(), 1, num_threads=t),
        "max": lambda t: up_packed.max_pooled(x.numpy(), cu, num_threads=t),
    }
    for name, run in runs.items():
        assert np.array_equal(run(threads), run(2)), name
