"""SparseIndex against scipy (a CSR product, then a stable sort: scores and ids, ties to the lower id), with
empty queries, terms absent from the corpus, k past the corpus, corpora past one block of scores, negative
weights, every thread count, save / load (memory-mapped) and bad input; hybrid fusion against its formulas."""

import numpy as np
import pytest

from fastembed_rt import SparseEmbeddings, SparseIndex, hybrid


def random_sparse(n, dim, nnz_per_row, seed, negative=False, integer=False):
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        count = int(rng.integers(0, nnz_per_row + 1))
        # Zipf-like terms: low ids far more frequent, as in text
        idx = np.unique(np.minimum(rng.zipf(1.3, count) - 1, dim - 1))
        val = rng.integers(1, 4, len(idx)).astype(np.float32) if integer else rng.random(len(idx)).astype(np.float32)
        if negative:
            val -= 0.5
        rows.append((idx, val))
    return SparseEmbeddings.from_rows(rows, dim)


def scipy_topk(queries, corpus, k):
    scores = (queries.to_scipy() @ corpus.to_scipy().T).toarray().astype(np.float32)
    order = np.argsort(-scores, axis=1, kind="stable")[:, : min(k, len(corpus))]
    return np.take_along_axis(scores, order, 1), order


@pytest.mark.parametrize("n, dim, k", [(1, 1, 1), (50, 7, 10), (2000, 300, 10), (500, 1000, 600), (0, 5, 3)])
@pytest.mark.parametrize("negative", [False, True])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_matches_scipy(n, dim, k, negative, threads):
    # integer weights: exact sums in any order, so equal scores are real ties
    corpus = random_sparse(n, dim, 30, seed=n + dim, negative=negative, integer=True)
    queries = random_sparse(17, dim, 8, seed=k, negative=negative, integer=True)
    index = SparseIndex.build(corpus)
    scores, ids = index.search(queries, k, num_threads=threads)
    want_scores, want_ids = scipy_topk(queries, corpus, k)
    assert scores.shape == ids.shape == (17, min(k, n)) and scores.dtype == np.float32 and ids.dtype == np.int64
    assert np.array_equal(scores, want_scores) and np.array_equal(ids, want_ids)


@pytest.mark.parametrize("k", [10, 300_000])
def test_corpora_past_one_block_of_scores_match_scipy(k):
    """The search scores 2^18 documents at a time: postings, dense columns (terms 0-2, in ~70% of documents) and
    ties (integer weights) across block boundaries, and a k larger than a block."""
    rng = np.random.default_rng(k)
    n, dim = 2 * 2**18 + 1_000, 50
    present = rng.random((n, dim)) < np.where(np.arange(dim) < 3, 0.7, 0.06)
    rows, terms = np.nonzero(present)
    indptr = np.concatenate([[0], np.cumsum(present.sum(axis=1))]).astype(np.int64)
    corpus = SparseEmbeddings(indptr, terms.astype(np.int32), rng.integers(1, 4, len(terms)).astype(np.float32), dim)
    queries = random_sparse(5, dim, 8, seed=k, integer=True)
    scores, ids = SparseIndex.build(corpus).search(queries, k, num_threads=2)
    want_scores, want_ids = scipy_topk(queries, corpus, k)
    assert np.array_equal(scores, want_scores) and np.array_equal(ids, want_ids)


def test_float_weights_match_scipy_closely():
    corpus, queries = random_sparse(3000, 500, 60, seed=1), random_sparse(20, 500, 20, seed=2)
    scores, ids = SparseIndex.build(corpus).search(queries, 10)
    want_scores, want_ids = scipy_topk(queries, corpus, 10)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5)
    assert (ids == want_ids).mean() > 0.99  # float sums in another order may swap near-ties


def test_empty_queries_and_absent_terms_score_zero_in_id_order():
    corpus = SparseEmbeddings.from_rows([([0, 1], [1.0, 2.0]), ([1], [3.0]), ([2], [1.0]), ([], [])], 10)
    queries = SparseEmbeddings.from_rows([([], []), ([9], [5.0]), ([1], [1.0])], 10)
    scores, ids = SparseIndex.build(corpus).search(queries, 3)
    assert ids.tolist() == [[0, 1, 2], [0, 1, 2], [1, 0, 2]]
    assert scores.tolist() == [[0, 0, 0], [0, 0, 0], [3, 2, 0]]


def test_scipy_input_and_save_load(tmp_path):
    corpus, queries = random_sparse(400, 200, 20, seed=5), random_sparse(9, 200, 6, seed=6)
    index = SparseIndex.build(corpus.to_scipy())
    index.save(tmp_path / "idx")
    loaded = SparseIndex.load(tmp_path / "idx")
    assert isinstance(loaded.doc_ids, np.memmap) and len(loaded) == 400 and loaded.dim == 200
    for a, b in zip(index.search(queries, 7), loaded.search(queries.to_scipy(), 7)):
        assert np.array_equal(a, b)


def test_bad_input_is_refused(tmp_path):
    index = SparseIndex.build(random_sparse(20, 30, 5, seed=7))
    with pytest.raises(ValueError, match="queries have dimension 31, the index 30"):
        index.search(random_sparse(2, 31, 3, seed=8), 3)
    with pytest.raises(ValueError, match="k must be a positive int"):
        index.search(random_sparse(2, 30, 3, seed=8), 0)
    bad = SparseEmbeddings.from_rows([([1], [1.0]), ([2], [np.nan])], 30)
    with pytest.raises(ValueError, match=r"queries\[1\] holds a value that is not finite"):
        index.search(bad, 3)
    with pytest.raises(TypeError, match="SparseEmbeddings or a scipy.sparse matrix"):
        SparseIndex.build(np.ones((3, 3)))
    index.save(tmp_path / "idx")
    np.save(tmp_path / "idx" / "doc_ids.npy", np.full(index.nnz, 99, np.int32))
    with pytest.raises(ValueError, match="doc id 99 out of range"):
        SparseIndex.load(tmp_path / "idx")
    np.save(tmp_path / "idx" / "doc_ids.npy", index.doc_ids[::-1].copy())  # in range, but each list backwards
    with pytest.raises(ValueError, match="the doc ids of term .* must increase"):
        SparseIndex.load(tmp_path / "idx")
    np.save(tmp_path / "idx" / "doc_ids.npy", index.doc_ids)
    np.save(tmp_path / "idx" / "weights.npy", np.full(index.nnz, np.inf, np.float32))
    with pytest.raises(ValueError, match="weight 0 is not finite"):
        SparseIndex.load(tmp_path / "idx")
    (tmp_path / "idx" / "header.json").write_text("{}")
    with pytest.raises(ValueError, match="not a version-1"):
        SparseIndex.load(tmp_path / "idx")


def test_hybrid_rrf_and_weighted():
    dense = (np.array([[0.9, 0.8, 0.1]]), np.array([[5, 3, 7]]))
    sparse = (np.array([[12.0, 4.0, -1]]), np.array([[3, 9, -1]]))  # -1: padding
    scores, ids = hybrid(dense, sparse, "rrf", rrf_k=60)
    want = {5: 1 / 61, 3: 1 / 62 + 1 / 61, 7: 1 / 63, 9: 1 / 62}
    order = sorted(want, key=lambda d: (-want[d], d))
    assert ids[0].tolist() == order[:3] and np.allclose(scores[0], [want[d] for d in order[:3]])
    scores, ids = hybrid(dense, sparse, "weighted", weights=(0.3, 0.7), k=5)
    want = {5: 0.3 * 1.0, 3: 0.3 * 0.875 + 0.7 * 1.0, 7: 0.0, 9: 0.0}
    assert ids[0].tolist() == [3, 5, 7, 9, -1]
    assert np.allclose(scores[0], [want[3], want[5], 0, 0, 0])
    with pytest.raises(ValueError, match="unknown hybrid method 'max'"):
        hybrid(dense, sparse, "max")
    with pytest.raises(ValueError, match="dense_results has 1 queries, sparse_results 2"):
        hybrid(dense, (np.zeros((2, 1)), np.zeros((2, 1), np.int64)))


@pytest.mark.parametrize("indptr,indices,dim,message", [
    ([0, 1], [2**32 + 3], 10, r"indices must lie in \[0, 10\)"),
    ([0, 1], [2.7], 10, "indices must be integers, got float64"),
    ([0.0, 1.0], [2], 10, "indptr must be integers, got float64"),
    ([0, 1], [2], -5, r"dim must be an integer in \[1, 2\^31\), got -5"),
    ([0, 1], [2], 2**40, r"dim must be an integer in \[1, 2\^31\)"),
    ([0, 1], [2], 10.0, r"dim must be an integer"),
    ([0, 2, 4], [1, 5, 3, 3], 10, "vector 1: indices must be sorted and distinct, got 3 then 3"),
    ([0, 3], [4, 2, 9], 10, "vector 0: indices must be sorted and distinct, got 4 then 2"),
])  # fmt: skip
def test_sparse_embeddings_are_checked_before_the_int32_cast(indptr, indices, dim, message):
    """Before: 2^32 + 3 wrapped to 3, 2.7 became 2, dim -5 was taken, and a repeated index made to_dense, dot and
    to_torch disagree."""
    with pytest.raises(ValueError, match=message):
        SparseEmbeddings(np.asarray(indptr), np.asarray(indices), np.ones(len(indices), np.float32), dim)


def test_a_thread_count_that_is_not_a_positive_integer_is_named():
    index = SparseIndex.build(SparseEmbeddings.from_rows([([1], [1.0])], 10))
    for bad in (2.5, 0, -1):  # 2.5 was pybind's "incompatible function arguments"
        with pytest.raises(ValueError, match="num_threads must be a positive integer"):
            index.search(SparseEmbeddings.from_rows([([1], [1.0])], 10), 1, num_threads=bad)


def test_sparse_rows_may_restart_their_indices():
    vectors = SparseEmbeddings(np.array([0, 2, 2, 4]), np.array([3, 7, 1, 7]), np.ones(4, np.float32), 10)
    assert vectors.to_dense().sum() == 4


@pytest.mark.parametrize("method,kwargs,message", [
    ("weighted", {"weights": (1.0,)}, r"weights must be two finite numbers \(dense, sparse\), got \(1.0,\)"),
    ("weighted", {"weights": ()}, "weights must be two finite numbers"),
    ("weighted", {"weights": (np.nan, 1.0)}, "weights must be two finite numbers"),
    ("weighted", {"weights": ("a", 1.0)}, "weights must be two finite numbers"),
])  # fmt: skip
def test_hybrid_weights_are_checked(method, kwargs, message):
    """Before: zip(lists, weights) stopped at the shorter, so weights=(1.0,) dropped the sparse list and () both."""
    dense = (np.array([[0.9, 0.8]]), np.array([[5, 3]]))
    with pytest.raises(ValueError, match=message):
        hybrid(dense, dense, method, **kwargs)


def test_hybrid_rrf_ignores_weights_and_uses_both_lists():
    dense, sparse = (np.array([[0.9]]), np.array([[5]])), (np.array([[4.0]]), np.array([[3]]))
    assert sorted(hybrid(dense, sparse, "rrf", k=2, weights=(1.0,))[1][0].tolist()) == [3, 5]


@pytest.mark.parametrize("results,message", [
    ((np.array([[np.nan, 0.5]]), np.array([[5, 3]])), "dense_results: the scores of query 0 hold NaN or inf"),
    ((np.array([[np.inf, 0.5]]), np.array([[5, 3]])), "dense_results: the scores of query 0 hold NaN or inf"),
    ((np.array([[0.9, 0.5]]), np.array([[5.0, 1e30]])), "dense_results: ids must be integers, got float64"),
    ((np.zeros((1, 2, 2)), np.zeros((1, 2, 2), np.int64)), r"must be the same \[queries, k\]"),
    ((np.zeros((2, 2)), [[1, 2], [3]]), r"ids must be a \[queries, k\] array of integers"),
])  # fmt: skip
def test_hybrid_results_are_checked(results, message):
    """Before: a NaN score made every other document's weighted score 0.5, an inf one ranked NaN first, float ids
    were truncated (1e30 became negative and was dropped as padding) and 3-D inputs were accepted."""
    other = (np.array([[0.9]]), np.array([[5]]))
    for method in ("rrf", "weighted"):
        with pytest.raises(ValueError, match=message):
            hybrid(results, other, method)
