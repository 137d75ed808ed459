"""fastembed_rt.Index: results against numpy exact search, persistence, rescoring and bad input."""

import numpy as np
import pytest

from fastembed_rt import Index, _C, quantize_embeddings


def unit_rows(n, dim, seed):
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def corpus():
    return unit_rows(3000, 96, 0)


def test_float32_equals_numpy_exact(corpus):
    queries = unit_rows(13, 96, 1)
    scores, ids = Index.build(corpus).search(queries, k=10)
    exact = queries @ corpus.T
    want = np.argsort(-exact, axis=1, kind="stable")[:, :10]
    assert np.array_equal(ids, want)
    np.testing.assert_allclose(scores, np.take_along_axis(exact, want, 1), atol=1e-5)


@pytest.mark.parametrize("precision", ["int8", "binary"])
@pytest.mark.parametrize("keep_float", [False, True])
def test_quantized_with_rescoring_finds_near_duplicates(precision, keep_float, corpus):
    queries = corpus[:20] + 0.05 * unit_rows(20, 96, 2)
    index = Index.build(corpus, precision, keep_float=keep_float)
    scores, ids = index.search(queries, k=5, rescore_multiplier=10)
    assert (ids[:, 0] == np.arange(20)).all()
    assert (np.diff(scores, axis=1) <= 0).all()
    if keep_float:  # rescored against the exact float vectors: exact scores
        np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", queries, corpus[ids]), rtol=1e-5)


def test_int8_candidates_use_the_kernel_on_quantized_codes(corpus):
    index = Index.build(corpus, "int8")
    codes = quantize_embeddings(corpus, "int8", ranges=index.ranges)
    assert np.array_equal(index.codes, codes)
    assert np.array_equal(Index.build(corpus, "binary").codes, quantize_embeddings(corpus, "ubinary"))


@pytest.mark.parametrize("precision", ["float32", "int8", "binary"])
def test_save_load_mmap_roundtrip_and_add(precision, corpus, tmp_path):
    index = Index.build(corpus[:2000], precision, keep_float=precision != "float32")
    index.add(corpus[2000:])
    queries = unit_rows(4, 96, 3)
    want = index.search(queries, k=7)
    index.save(tmp_path / "idx")
    loaded = Index.load(tmp_path / "idx", mmap=True)
    assert isinstance(loaded.codes, np.memmap) and len(loaded) == 3000
    got = loaded.search(queries, k=7)
    assert np.array_equal(got[1], want[1]) and np.allclose(got[0], want[0])
    header = (tmp_path / "idx" / "header.json").read_text()
    assert '"precision": "' + precision in header


@pytest.mark.parametrize("precision", ["int8", "binary"])
def test_without_rescoring_scores_are_the_quantized_ones(precision, corpus):
    queries = unit_rows(3, 96, 5)
    index = Index.build(corpus, precision)
    scores, ids = index.search(queries, k=6, rescore_multiplier=0)
    if precision == "int8":
        q8 = quantize_embeddings(queries, "int8", ranges=index.ranges).astype(np.int64)
        want = q8 @ index.codes.astype(np.int64).T
    else:
        q1 = quantize_embeddings(queries, "ubinary")
        want = -np.unpackbits(q1[:, None, :] ^ index.codes[None], axis=-1).sum(-1).astype(np.int64)
    order = np.argsort(-want, axis=1, kind="stable")[:, :6]
    assert np.array_equal(ids, order) and np.array_equal(scores, np.take_along_axis(want, order, 1))


def test_k_past_corpus_returns_all_sorted(corpus):
    scores, ids = Index.build(corpus[:5]).search(corpus[0], k=50)
    assert ids.shape == (1, 5) and sorted(ids[0].tolist()) == [0, 1, 2, 3, 4] and ids[0, 0] == 0
    assert (np.diff(scores[0]) <= 0).all()


def test_bad_input(corpus, tmp_path):
    index = Index.build(corpus)
    with pytest.raises(ValueError, match="dimension mismatch: queries have 95 dimensions, the index 96"):
        index.search(corpus[:1, :95])
    for k in (0, -3, 2.5):
        with pytest.raises(ValueError, match="k must be a positive integer"):
            index.search(corpus[:1], k=k)
    with pytest.raises(ValueError, match="rescore_multiplier must be a non-negative integer"):
        index.search(corpus[:1], rescore_multiplier=-1)
    bad = corpus[:3].copy()
    bad[2, 5] = np.nan
    with pytest.raises(ValueError, match=r"queries contain NaN or inf \(row 2\)"):
        index.search(bad)
    with pytest.raises(ValueError, match=r"embeddings contain NaN or inf \(row 2\)"):
        Index.build(bad)
    with pytest.raises(TypeError, match="queries must be floating point"):
        index.search(np.ones((1, 96), dtype=np.int8))
    with pytest.raises(ValueError, match="must be 1-D or 2-D"):
        index.search(np.ones((1, 1, 96), dtype=np.float32))
    with pytest.raises(ValueError, match="the index is empty"):
        Index.build(np.zeros((0, 96), dtype=np.float32)).search(corpus[:1])
    with pytest.raises(ValueError, match="unsupported index precision 'int4'"):
        Index.build(corpus, "int4")
    with pytest.raises(FileNotFoundError, match="header.json is missing"):
        Index.load(tmp_path)
    with pytest.raises(ValueError, match=r"embeddings have no dimensions"):
        Index.build([])
    with pytest.raises(ValueError, match="k must be a positive integer, got True"):
        index.search(corpus[:1], k=True)


def test_values_past_float32_are_refused_after_the_cast(corpus):
    """A finite float64 value beyond float32's range became inf in the cast after the finiteness check: the search
    then crashed the process (NaN scores never entered the top-k heaps, which the merge read past the end of)."""
    index = Index.build(corpus[:5, :4])
    huge = np.array([[1e300, -1e300, 0.0, 0.0]])
    with pytest.raises(ValueError, match=r"queries contain NaN or inf \(row 0"):
        index.search(huge, k=5)
    with pytest.raises(ValueError, match=r"embeddings contain NaN or inf \(row 0"):
        Index.build(huge)


@pytest.mark.parametrize("n,k", [(5, 5), (5, 3), (9000, 10)])
def test_a_nan_score_is_an_error_naming_query_and_row_not_a_crash(n, k, monkeypatch):
    """Scores that are NaN or inf come from a damaged float32 corpus (codes.npy is memory-mapped, not scanned at
    load) or from products past float32's range. Before: abort ("corrupted size vs. prev_size") or SIGSEGV when
    fewer than k finite scores remained, else the row silently dropped out; now a ValueError from the C++ search
    names the first pair it met, on every ISA this CPU runs and with the rows split between threads (n = 9,000)."""
    rng = np.random.default_rng(0)
    corpus = rng.standard_normal((n, 8)).astype(np.float32)
    for isa in _C.supported_isas():
        monkeypatch.setenv("FASTEMBED_RT_ISA", isa)
        index = Index.build(corpus)
        codes = index.codes.copy()
        codes[n - 2, 3] = np.nan
        index.codes = codes
        with pytest.raises(ValueError, match=rf"query 0 against corpus row {n - 2}: the score is NaN or inf"):
            index.search(corpus[:1], k=k)
        codes[n - 2, 3] = 0.0
        codes[n - 1] = 3e38  # finite, but its products with most queries are not
        with pytest.raises(ValueError, match=rf"against corpus row {n - 1}: the score is NaN or inf"):
            index.search(corpus[:1] * 100, k=k)
        codes[n - 1] = 0.0
        assert np.array_equal(index.search(corpus[:2], k=k)[1], Index.build(codes).search(corpus[:2], k=k)[1]), isa


def test_a_damaged_kept_float_vector_is_named_when_rescoring(corpus):
    index = Index.build(corpus, "int8", keep_float=True)
    index.floats = index.floats.copy()
    index.floats[7] = np.nan
    with pytest.raises(ValueError, match=r"query 0 against corpus row 7: the rescored score is NaN or inf"):
        index.search(corpus[7], k=3)


def test_array_files_that_are_not_plain_npy_arrays_are_named(corpus, tmp_path):
    Index.build(corpus).save(tmp_path)
    codes = np.load(tmp_path / "codes.npy")
    np.save(tmp_path / "codes.npy", np.asfortranarray(codes))
    with pytest.raises(ValueError, match=r"codes.npy: stored in Fortran order"):
        Index.load(tmp_path)
    (tmp_path / "codes.npy").write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match=r"codes.npy: not a .npy file"):
        Index.load(tmp_path)
    (tmp_path / "codes.npy").unlink()
    (tmp_path / "codes.npy").mkdir()
    with pytest.raises(FileNotFoundError, match=r"codes.npy is a directory, not a .npy file"):
        Index.load(tmp_path)


def test_ties_go_to_lower_id():
    corpus = np.tile(np.array([[0.6, 0.8]], dtype=np.float32), (10, 1))
    for precision in ("float32", "int8", "binary"):
        index = Index.build(np.vstack([corpus, [[-0.6, -0.8]]]).astype(np.float32), precision)
        assert index.search(corpus[0], k=3)[1].tolist() == [[0, 1, 2]], precision


@pytest.mark.parametrize("precision", ["float32", "int8", "binary"])
def test_forced_isa_paths_agree(precision, corpus, monkeypatch):
    from fastembed_rt import _C

    queries = unit_rows(9, 96, 4)
    results = {}
    for isa in _C.supported_isas():
        monkeypatch.setenv("FASTEMBED_RT_ISA", isa)
        results[isa] = Index.build(corpus, precision).search(queries, k=8)
    scalar_scores, scalar_ids = results["scalar"]
    for isa, (scores, ids) in results.items():
        assert np.array_equal(ids, scalar_ids), isa
        np.testing.assert_allclose(scores, scalar_scores, rtol=1e-5, atol=1e-6)
    monkeypatch.setenv("FASTEMBED_RT_ISA", "sse9")
    with pytest.raises(ValueError, match="unknown isa 'sse9'"):
        Index.build(corpus, precision).search(queries, k=8)


@pytest.mark.parametrize("precision", ["float32", "int8", "binary"])
def test_k_of_any_size_is_clamped_in_python(precision, corpus):
    """Before: k=2**63 reached pybind11 and came back as an "incompatible function arguments" dump."""
    index = Index.build(corpus[:20], precision)
    for k in (2**63, 2**80, np.int64(2**62)):
        scores, ids = index.search(corpus[:2], k=k)
        assert ids.shape == (2, 20) and sorted(ids[0].tolist()) == list(range(20))


def edit_header(path, **changes):
    import json

    header = json.loads((path / "header.json").read_text())
    (path / "header.json").write_text(json.dumps({**header, **changes}))


@pytest.mark.parametrize("changes,message", [
    ({"precision": "float16"}, "precision 'float16' is not one of float32, int8, binary"),
    ({"precision": 3}, "precision 3 is not one of"),
    ({"dim": 10**12}, r"dim 1000000000000 is not an integer in \[1, 1048576\]"),
    ({"dim": 0}, r"dim 0 is not an integer"),
    ({"dim": -1}, r"dim -1 is not an integer"),
    ({"dim": "96"}, r"dim '96' is not an integer"),
    ({"count": -5}, "count -5 is not a non-negative integer"),
    ({"count": 7}, r"codes.npy: int8 \[3000, 96\], but header.json says int8 \[7, 96\]"),
    ({"dim": 95}, r"ranges must be \[2\]\[95\] finite numbers \(int8 calibration\), got shape \[2, 96\]"),
    ({"ranges": [[1.0] * 96, [0.0] * 96]}, r"ranges: dimension 0 has min 1.0 and max 0.0"),
    ({"precision": "binary", "ranges": None}, r"codes.npy: int8 \[3000, 96\], but header.json says uint8 \[3000, 12\]"),
    ({"ranges": [[0.0, 1.0]]}, r"ranges must be \[2\]\[96\] finite numbers"),
    ({"ranges": "wide"}, r"ranges must be \[2\]\[96\] finite numbers"),
    ({"has_float": "yes"}, "has_float 'yes' is not true or false"),
    ({"has_float": True}, "float.npy is missing"),
])  # fmt: skip
def test_a_bad_index_header_is_refused_at_load(corpus, tmp_path, changes, message):
    """Before: precision "float16" loaded and failed at search with "expected dtype uint8, got int8"; dim 10^12,
    0 and -1 loaded too."""
    Index.build(corpus, "int8").save(tmp_path)
    edit_header(tmp_path, **changes)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        Index.load(tmp_path)


def test_a_header_or_array_that_is_not_what_it_claims_is_named(corpus, tmp_path):
    Index.build(corpus, "binary").save(tmp_path)
    (tmp_path / "codes.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match="codes.npy: not a readable .npy array"):
        Index.load(tmp_path)
    for content, message in (("[]", "expected a JSON object, got list"), ("{", "header.json is not valid JSON")):
        (tmp_path / "header.json").write_text(content)
        with pytest.raises(ValueError, match=message):
            Index.load(tmp_path)
