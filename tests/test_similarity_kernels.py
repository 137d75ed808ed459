"""Every similarity kernel, on every ISA path this CPU has, against numpy on awkward shapes."""

import numpy as np
import pytest

from fastembed_rt import _C

ISAS = _C.supported_isas()
SHAPES = [(1, 1, 8, 1), (3, 5, 13, 10), (7, 300, 100, 9), (2, 5000, 200, 7), (4, 9000, 1032, 3), (1, 10, 67, 40)]


def expected_topk(scores: np.ndarray, k: int, descending: bool = True):
    """Best first, ties to the lower index (a stable sort)."""
    order = np.argsort(-scores if descending else scores, axis=1, kind="stable")[:, : min(k, scores.shape[1])]
    return np.take_along_axis(scores, order, 1), order


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("nq,n,dim,k", SHAPES, ids=str)
@pytest.mark.parametrize("low", [-128, -127], ids=["queries_with_-128", "queries_from_-127"])
def test_int8_dot_exact(isa, nq, n, dim, k, low):
    """AVX2 multiplies with vpmaddwd where a tile of queries holds -128, else with vpmaddubsw: both are checked."""
    rng = np.random.default_rng(n + dim)
    q = rng.integers(low, 128, (nq, dim), dtype=np.int8)
    c = rng.integers(-128, 128, (n, dim), dtype=np.int8)
    c[n // 2 :] = c[: n - n // 2]  # duplicated rows: equal scores must go to the lower index
    scores, ids = _C.topk_dot_i8(q, c, k, isa)
    want_scores, want_ids = expected_topk(q.astype(np.int64) @ c.astype(np.int64).T, k)
    assert np.array_equal(ids, want_ids) and np.array_equal(scores, want_scores)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("nq,n,dim,k", SHAPES, ids=str)
def test_hamming_exact(isa, nq, n, dim, k):
    rng = np.random.default_rng(n * dim)
    q = rng.integers(0, 256, (nq, dim), dtype=np.uint8)
    c = rng.integers(0, 256, (n, dim), dtype=np.uint8)
    c[-1] = q[0]  # an exact match at the end
    distances, ids = _C.topk_hamming(q, c, k, isa)
    full = np.unpackbits(q[:, None, :] ^ c[None, :, :], axis=-1).sum(-1)
    want_d, want_ids = expected_topk(full, k, descending=False)
    assert np.array_equal(ids, want_ids) and np.array_equal(distances, want_d)
    assert distances[0, 0] == 0


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("nq,n,dim,k", SHAPES, ids=str)
def test_float32_dot(isa, nq, n, dim, k):
    rng = np.random.default_rng(n + 7 * dim)
    q = rng.standard_normal((nq, dim)).astype(np.float32)
    c = rng.standard_normal((n, dim)).astype(np.float32)
    scores, ids = _C.topk_dot_f32(q, c, k, isa)
    exact = q.astype(np.float64) @ c.astype(np.float64).T
    want_scores, _ = expected_topk(exact, k)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-4, atol=1e-4 * np.sqrt(dim))
    np.testing.assert_allclose(np.take_along_axis(exact, ids, 1), want_scores, rtol=1e-4, atol=1e-4 * np.sqrt(dim))


@pytest.mark.parametrize("isa", ISAS)
def test_float32_ties_to_lower_index(isa):
    c = np.ones((50, 19), dtype=np.float32)
    scores, ids = _C.topk_dot_f32(np.ones((2, 19), dtype=np.float32), c, 5, isa)
    assert ids.tolist() == [[0, 1, 2, 3, 4]] * 2


# Lengths around the vector widths (16, 32, 64 bytes) and past the AVX2 Hamming kernel's 31-vector byte counters.
ODD_DIMS = [1, 2, 15, 16, 17, 31, 33, 63, 65, 127, 129, 383, 385, 991, 993, 1025, 2049]


@pytest.mark.parametrize("dim", ODD_DIMS)
def test_integer_kernels_are_equal_on_every_isa(dim):
    rng = np.random.default_rng(dim)
    codes = rng.integers(0, 256, (37, dim), dtype=np.uint8)
    for low in (-128, -127):  # both AVX2 int8 forms
        q = rng.integers(low, 128, (6, dim), dtype=np.int8)
        c = rng.integers(-128, 128, (301, dim), dtype=np.int8)
        c[::7] = rng.integers(-2, 3, (len(c[::7]), dim), dtype=np.int8)  # small values: ties
        results = {isa: _C.topk_dot_i8(q, c, 9, isa) for isa in ISAS}
        want = expected_topk(q.astype(np.int64) @ c.astype(np.int64).T, 9)
        for isa, (scores, ids) in results.items():
            assert np.array_equal(scores, want[0]) and np.array_equal(ids, want[1]), (isa, low)
    results = {isa: _C.topk_hamming(codes[:5], codes, 8, isa) for isa in ISAS}
    full = np.unpackbits(codes[:5, None, :] ^ codes[None, :, :], axis=-1).sum(-1)
    want = expected_topk(full, 8, descending=False)
    for isa, (distances, ids) in results.items():
        assert np.array_equal(distances, want[0]) and np.array_equal(ids, want[1]), isa


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("nq", [8, 9, 16, 17, 100])
@pytest.mark.parametrize("dim", [1, 32, 48, 128, 256, 300])
def test_hamming_query_tiles(isa, nq, dim):
    """AVX2 scores tiles of 8 queries, 8 rows at a time (unrolled for codes of up to 256 bytes): whole and partial
    tiles of both, over blocks of rows that end mid-tile."""
    rng = np.random.default_rng(nq * 1000 + dim)
    q = rng.integers(0, 256, (nq, dim), dtype=np.uint8)
    c = rng.integers(0, 256, (709, dim), dtype=np.uint8)
    c[300:310] = q[-1]  # exact matches of the last query (in the last, partial tile): ties go to the lower index
    distances, ids = _C.topk_hamming(q, c, 12, isa)
    want_d, want_ids = expected_topk(np.unpackbits(q[:, None, :] ^ c[None, :, :], axis=-1).sum(-1), 12, descending=False)
    assert np.array_equal(ids, want_ids) and np.array_equal(distances, want_d)
    assert distances[-1, 0] == 0 and ids[-1, 0] <= 300


@pytest.mark.parametrize("isa", ISAS)
def test_int8_queries_with_and_without_min_in_one_batch(isa):
    """AVX2 picks the multiply per tile of four queries: one -128 in query 5 sends only its tile to vpmaddwd."""
    rng = np.random.default_rng(11)
    q = rng.integers(-127, 128, (11, 70), dtype=np.int8)
    q[5, 33] = -128
    c = rng.integers(-128, 128, (900, 70), dtype=np.int8)
    scores, ids = _C.topk_dot_i8(q, c, 6, isa)
    want_scores, want_ids = expected_topk(q.astype(np.int64) @ c.astype(np.int64).T, 6)
    assert np.array_equal(scores, want_scores) and np.array_equal(ids, want_ids)


@pytest.mark.parametrize("isa", ISAS)
def test_extreme_values_do_not_saturate_or_wrap(isa):
    """The largest products and distances each form allows: int16 pair sums at their bound, byte counters full."""
    dim = 2049
    c = np.array([[-128] * dim, [127] * dim, [0] * dim], dtype=np.int8)
    # Without -128 in the queries AVX2 takes vpmaddubsw, whose int16 pairs reach 2 * 127 * 128 here.
    scores, ids = _C.topk_dot_i8(np.array([[-127] * dim, [127] * dim], dtype=np.int8), c, 3, isa)
    assert scores.tolist() == [[127 * 128 * dim, 0, -127 * 127 * dim], [127 * 127 * dim, 0, -127 * 128 * dim]]
    assert ids.tolist() == [[0, 2, 1], [1, 2, 0]]
    scores, ids = _C.topk_dot_i8(np.array([[-128] * dim], dtype=np.int8), c, 3, isa)
    assert scores.tolist() == [[128 * 128 * dim, 0, -128 * 127 * dim]] and ids.tolist() == [[0, 2, 1]]
    codes = np.array([[0] * dim, [255] * dim], dtype=np.uint8)
    distances, ids = _C.topk_hamming(codes[:1], codes, 2, isa)
    assert distances.tolist() == [[0, 8 * dim]] and ids.tolist() == [[0, 1]]


@pytest.mark.parametrize("isa", ISAS)
def test_threads_agree(isa):
    rng = np.random.default_rng(3)
    q = rng.integers(-128, 128, (6, 96), dtype=np.int8)
    c = rng.integers(-10, 10, (40_000, 96), dtype=np.int8)  # small range: many ties across thread slices
    one = _C.topk_dot_i8(q, c, 25, isa, 1)
    codes = rng.integers(0, 4, (40_000, 13), dtype=np.uint8)  # few distinct distances: ties everywhere
    one_binary = _C.topk_hamming(codes[:6], codes, 25, isa, 1)
    for threads in (2, 3, 8):
        many = _C.topk_dot_i8(q, c, 25, isa, threads)
        assert np.array_equal(one[0], many[0]) and np.array_equal(one[1], many[1])
        many = _C.topk_hamming(codes[:6], codes, 25, isa, threads)
        assert np.array_equal(one_binary[0], many[0]) and np.array_equal(one_binary[1], many[1])


def test_zero_queries_and_k_past_corpus():
    c = np.zeros((3, 8), dtype=np.uint8)
    d, ids = _C.topk_hamming(np.zeros((0, 8), dtype=np.uint8), c, 2)
    assert d.shape == ids.shape == (0, 2)
    d, ids = _C.topk_hamming(np.zeros((1, 8), dtype=np.uint8), c, 10)
    assert ids.tolist() == [[0, 1, 2]]


def test_binding_checks():
    f = np.zeros((2, 8), dtype=np.float32)
    with pytest.raises(ValueError, match="dimension mismatch: queries have 8 columns, corpus has 9"):
        _C.topk_dot_f32(f, np.zeros((4, 9), dtype=np.float32), 1)
    with pytest.raises(TypeError, match="corpus: expected dtype int8"):
        _C.topk_dot_i8(np.zeros((1, 8), dtype=np.int8), f, 1)
    with pytest.raises(ValueError, match="k must be >= 1"):
        _C.topk_dot_f32(f, f, 0)
    with pytest.raises(ValueError, match="corpus is empty"):
        _C.topk_dot_f32(f, np.zeros((0, 8), dtype=np.float32), 1)
    with pytest.raises(ValueError, match="queries: must be C-contiguous"):
        _C.topk_dot_f32(np.zeros((8, 2), dtype=np.float32).T, f, 1)
    with pytest.raises(ValueError, match="unknown isa 'sse'"):
        _C.topk_dot_f32(f, f, 1, "sse")
