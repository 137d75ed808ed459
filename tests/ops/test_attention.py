"""The C++ varlen attention kernel against its reference twin (float64 oracle) on awkward shapes."""

import pytest
import torch

from fastembed_rt import _C, isa, ops
from fastembed_rt.ops import cpu, reference

LENGTH_SETS = [[1], [1, 7, 129, 3], [5, 0, 2], [16, 17, 15, 33], [300, 1]]
HEADS = [(1, 1, 32), (12, 12, 32), (4, 4, 17), (8, 2, 16), (32, 8, 80), (2, 1, 64), (3, 3, 1), (2, 2, 128)]


def qkv(lengths, heads, kv_heads, head_dim, dtype=torch.float32, seed=0, fused=False):
    g = torch.Generator().manual_seed(seed)
    total = sum(lengths)
    cu = torch.tensor([0] + torch.tensor(lengths).cumsum(0).tolist(), dtype=torch.int32)
    if fused:  # strided views into one [T, Hq + 2 Hkv, D] projection, as the models pass them
        x = torch.randn(total, heads + 2 * kv_heads, head_dim, generator=g).to(dtype)
        return x[:, :heads], x[:, heads : heads + kv_heads], x[:, heads + kv_heads :], cu
    q, k, v = (torch.randn(total, h, head_dim, generator=g).to(dtype) for h in (heads, kv_heads, kv_heads))
    return q, k * 2, v, cu  # larger keys: a peakier softmax


def oracle(q, k, v, cu, scale, causal):
    return reference.attention(q.double(), k.double(), v.double(), cu, 0, scale=scale, causal=causal)


@pytest.mark.parametrize("lengths", LENGTH_SETS, ids=str)
@pytest.mark.parametrize("heads,kv_heads,head_dim", HEADS, ids=str)
@pytest.mark.parametrize("causal", [False, True])
def test_float32_matches_reference(lengths, heads, kv_heads, head_dim, causal):
    q, k, v, cu = qkv(lengths, heads, kv_heads, head_dim, seed=sum(lengths) + head_dim)
    got = cpu.attention(q, k, v, cu, max(lengths), causal=causal)
    assert got.shape == q.shape and got.dtype == torch.float32
    want = oracle(q, k, v, cu, head_dim**-0.5, causal)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=2e-5)


def kernel_runs(products, head_dim):
    """Whether the AMX or AVX512_BF16 dot-product kernel can take plain attention with this head size here."""
    needs = {"amx": ("amx_bf16", 32), "dot": ("avx512_bf16", 2)}
    if products not in needs:
        return True
    feature, multiple = needs[products]
    return _C.cpu_features()[feature] and isa.active() == "avx512" and head_dim % multiple == 0


def bf16_attention(q, k, v, cu, scale, causal, products):
    out = _C.attention_varlen(*(cpu._array(t) for t in (q, k, v)), cu.numpy(), scale, causal, bf16_products=products)
    return cpu._tensor(out, torch.bfloat16)


# AMX takes head sizes that are multiples of 32 where the CPU has it (under "auto" only sequences of 64 tokens or
# more), the dot products even ones where it has AVX512_BF16; the others widen into the float32 tile loop.
HEADS_BF16 = [(12, 12, 32), (8, 2, 80), (4, 2, 64), (3, 3, 96), (2, 1, 128), (4, 4, 17), (2, 1, 2), (3, 3, 1)]


@pytest.mark.parametrize("lengths", [[1, 7, 129, 3], [40], [16, 17, 1, 300], [64, 0, 200]], ids=str)
@pytest.mark.parametrize("heads,kv_heads,head_dim", HEADS_BF16, ids=str)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("products", ["auto", "amx", "dot", "widened"])
def test_bfloat16_within_twice_torchs_own_error(lengths, heads, kv_heads, head_dim, causal, products):
    q, k, v, cu = qkv(lengths, heads, kv_heads, head_dim, dtype=torch.bfloat16, seed=1)
    if not kernel_runs(products, head_dim):
        with pytest.raises(ValueError, match=f"bf16_products='{products}' needs"):
            bf16_attention(q, k, v, cu, 0.2, causal, products)
        return
    want = oracle(q, k, v, cu, 0.2, causal)
    got = bf16_attention(q, k, v, cu, 0.2, causal, products)
    assert got.dtype == torch.bfloat16 and got.shape == q.shape
    torch_own = reference.attention(q.float(), k.float(), v.float(), cu, 0, scale=0.2, causal=causal).bfloat16()
    allowed = 2 * (torch_own.double() - want).abs().max() + 1e-6
    assert (got.double() - want).abs().max() <= allowed


def test_strided_fused_projection_views():
    q, k, v, cu = qkv([9, 70, 1], 6, 2, 32, fused=True)
    assert not q.is_contiguous()
    torch.testing.assert_close(cpu.attention(q, k, v, cu, 70).double(), oracle(q, k, v, cu, 32**-0.5, False),
                               rtol=1e-5, atol=2e-5)  # fmt: skip


@pytest.mark.parametrize("lengths,choice_for_all", [([70, 64, 130], True), ([70, 1, 33, 63], False)], ids=str)
def test_auto_bfloat16_products_are_this_cpus_choice(lengths, choice_for_all):
    q, k, v, cu = qkv(lengths, 4, 2, 32, dtype=torch.bfloat16, seed=3)
    choice = _C.bf16_attention_products()
    assert kernel_runs(choice, 32)
    auto = bf16_attention(q, k, v, cu, 0.2, False, "auto")
    if choice != "amx" or choice_for_all:  # AMX leaves sequences under 64 tokens to the widened kernel
        assert torch.equal(auto, bf16_attention(q, k, v, cu, 0.2, False, choice))
    else:
        bounds = cu.tolist()
        for start, end in zip(bounds[:-1], bounds[1:]):
            one = torch.tensor([0, end - start], dtype=torch.int32)
            own = "amx" if end - start >= 64 else "widened"
            assert torch.equal(auto[start:end], bf16_attention(q[start:end], k[start:end], v[start:end], one, 0.2, False, own))


# The bfloat16 kernels that run here.
KERNELS = [(torch.float32, "auto")] + [(torch.bfloat16, p) for p in ("amx", "dot", "widened") if kernel_runs(p, 32)]


@pytest.mark.parametrize("threads", [1, 2, 3, 8])
@pytest.mark.parametrize("dtype,products", KERNELS, ids=str)
def test_threads_agree(threads, dtype, products):
    q, k, v, cu = qkv([200, 3, 150, 64, 1, 90], 12, 12, 32, dtype=dtype, seed=5)
    arrays = [cpu._array(t) for t in (q, k, v)]
    one = _C.attention_varlen(*arrays, cu.numpy(), 0.17, False, 1, bf16_products=products)
    many = _C.attention_varlen(*arrays, cu.numpy(), 0.17, False, threads, bf16_products=products)
    assert (one == many).all()


def test_bad_bf16_products_named():
    q, k, v, cu = qkv([5], 2, 2, 8, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="bf16_products must be 'auto', 'amx', 'dot' or 'widened', got 'fast'"):
        bf16_attention(q, k, v, cu, 0.2, False, "fast")
    q, k, v, cu = qkv([5], 2, 2, 8)
    with pytest.raises(ValueError, match="bf16_products='dot' needs bfloat16"):
        _C.attention_varlen(*(t.numpy() for t in (q, k, v)), cu.numpy(), 0.2, bf16_products="dot")


def test_empty_batch():
    q, k, v, cu = qkv([], 4, 4, 8)
    assert cpu.attention(q, k, v, cu, 0).shape == (0, 4, 8)


def test_dispatch_uses_cpp_on_cpu():
    assert ops.implementation_table("cpu", torch.float32)["attention"] == "cpp"
    assert ops.implementation_table("cpu", torch.bfloat16)["attention"] == "cpp"


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda q, k, v, cu: (q.double(), k, v, cu), "expected float32, or bfloat16 bits"),
        (lambda q, k, v, cu: (q[:, :3], k, v, cu), "must divide query heads"),
        (lambda q, k, v, cu: (q, k[:-1], v, cu), "expected \\[tokens, kv_heads, head_dim\\]"),
        (lambda q, k, v, cu: (q, k, v, cu[:-1]), "does not match total_tokens"),
        (lambda q, k, v, cu: (q, k, v, cu.flip(0)), "cu_seqlens\\[0\\] must be 0"),
        (lambda q, k, v, cu: (q[..., ::2], k, v, cu), "heads must be contiguous"),
        (lambda q, k, v, cu: (q[:, :, None], k, v, cu), "expected \\[tokens, heads, head_dim\\]"),
    ],
)
def test_binding_rejects_bad_input(change, message):
    q, k, v, cu = change(*qkv([3, 4], 4, 2, 8))
    with pytest.raises((ValueError, TypeError), match=message):
        _C.attention_varlen(q.numpy(), k.numpy(), v.numpy(), cu.numpy(), 0.5, False, 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])  # bfloat16: this CPU's kernel (AMX where it runs)
def test_kernels_work_in_a_forked_child(dtype):
    """A child made by fork() has none of the parent's worker threads: it must start its own, not hang."""
    import multiprocessing
    import queue

    q, k, v, cu = qkv([300, 200], 12, 12, 32, dtype=dtype, seed=2)
    want = cpu.attention(q, k, v, cu, 300)  # the parent's pool now has workers
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=_attention_in_child, args=(q, k, v, cu, results))
    child.start()
    try:
        got = results.get(timeout=60)  # read before joining: the child exits once its result is consumed
    except queue.Empty:
        raise AssertionError("the kernel hung in the forked child") from None
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
    assert (got == cpu._array(want)).all()


def _attention_in_child(q, k, v, cu, results):
    results.put(_C.attention_varlen(*(cpu._array(t) for t in (q, k, v)), cu.numpy(), 32**-0.5, False, 2))
