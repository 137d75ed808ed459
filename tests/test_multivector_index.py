"""MultiVectorIndex (exact MaxSim top-k, MUVERA candidates + exact rescoring, save / load) and the MUVERA encoder
against the paper's formulas written out token by token."""

import json

import numpy as np
import pytest
import torch

from fastembed_rt import ops
from fastembed_rt.colbert import maxsim_scores
from fastembed_rt.multivector import MultiVectorEmbeddings
from fastembed_rt.multivector_index import MultiVectorIndex
from fastembed_rt.muvera import MuveraEncoder


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered_corpus(docs=1500, dim=48, queries=16, seed=0):
    """Documents whose tokens lie near a few of 150 topic centers; each query is noisy tokens of one document."""
    rng = np.random.default_rng(seed)
    centers = unit(rng.standard_normal((150, dim)))
    corpus = []
    for i in range(docs):
        n = 0 if i == 7 else int(rng.integers(1, 40))  # document 7 is empty
        topics = centers[rng.integers(150, size=3)]
        corpus.append(unit(topics[rng.integers(3, size=n)] + 0.07 * rng.standard_normal((n, dim))) if n else np.zeros((0, dim), np.float32))
    asked = []
    for _ in range(queries):
        d = corpus[int(rng.integers(8, docs))]
        asked.append(unit(d[rng.integers(len(d), size=6)] + 0.05 * rng.standard_normal((6, dim))))
    return corpus, asked


def exact_topk(queries, docs, k):
    scores = maxsim_scores(queries, docs)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), order


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_exact_search_is_brute_force_maxsim(precision):
    docs, queries = clustered_corpus(docs=700)
    index = MultiVectorIndex.build(docs, precision)
    scores, ids = index.search(queries, k=25)
    if precision == "float32":
        want_scores, want_ids = exact_topk(queries, docs, 25)
        np.testing.assert_array_equal(ids, want_ids)
        np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)
    else:  # the int8 scores are MaxSim of the stored codes; within 2% of the float32 scores per query token
        exact = maxsim_scores(queries, docs)
        np.testing.assert_allclose(scores, np.take_along_axis(exact, ids, 1), atol=0.02 * 6)
        assert np.mean([len(set(a) & set(b)) / 25 for a, b in zip(ids, exact_topk(queries, docs, 25)[1])]) > 0.9


def test_blocks_and_ties_go_to_the_lower_id(monkeypatch):
    import fastembed_rt.multivector_index as module

    monkeypatch.setattr(module, "_BLOCK_DOCS", 3)  # many blocks, merged
    one = unit(np.ones((2, 8)))
    docs = [one, np.zeros((0, 8), np.float32), one, one[:1], one]
    scores, ids = MultiVectorIndex.build(docs).search([one[:1]], k=5)
    assert ids.tolist() == [[0, 2, 3, 4, 1]]  # equal scores in id order; the empty document scores 0
    np.testing.assert_allclose(scores, [[1, 1, 1, 1, 0]], atol=1e-6)


@pytest.mark.parametrize("candidates", ["int8", "float32"])
def test_muvera_candidates_then_exact_rescoring(candidates):
    docs, queries = clustered_corpus()
    index = MultiVectorIndex.build(docs, "int8", candidates=candidates)
    _, exact_ids = index.search(queries, k=10, exact=True)
    scores, ids = index.search(queries, k=10, candidates=300)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact_ids)])
    assert recall >= 0.9, recall
    # the scores are exact MaxSim of the returned documents, best first
    exact = index.search(queries, k=len(docs), exact=True)
    for q in range(len(queries)):
        lookup = dict(zip(exact[1][q].tolist(), exact[0][q].tolist()))
        np.testing.assert_allclose(scores[q], [lookup[i] for i in ids[q]], rtol=1e-6)
        assert (np.diff(scores[q]) <= 0).all()
    # all candidates: the exact answer
    _, every = index.search(queries, k=10, candidates=len(docs))
    np.testing.assert_array_equal(every, exact_ids)


def test_muvera_matches_the_papers_formulas():
    rng = np.random.default_rng(3)
    encoder = MuveraEncoder.create(dim=6, repetitions=3, simhash_bits=2, projection_dim=4, seed=5)
    texts = [unit(rng.standard_normal((n, 6))) if n else np.zeros((0, 6), np.float32) for n in (1, 5, 0, 9, 2)]
    packed = MultiVectorEmbeddings.from_arrays(texts)
    got_q, got_d = encoder.encode_queries(packed), encoder.encode_documents(packed)
    for t, tokens in enumerate(texts):
        want_q, want_d = [], []
        for g, s in zip(encoder.hyperplanes, encoder.projections):
            bucket = [int(sum(1 << b for b in range(g.shape[1]) if x @ g[:, b] > 0)) for x in tokens]
            for k in range(encoder.buckets):
                mine = [x @ s for x, b in zip(tokens, bucket) if b == k]
                want_q.append(np.sum(mine, axis=0) if mine else np.zeros(4))
                if mine:
                    want_d.append(np.mean(mine, axis=0))
                elif len(tokens):  # the token whose bucket is nearest in Hamming distance (the first of equals)
                    nearest = min(range(len(tokens)), key=lambda i: (bin(bucket[i] ^ k).count("1"), i))
                    want_d.append(tokens[nearest] @ s)
                else:
                    want_d.append(np.zeros(4))
        np.testing.assert_allclose(got_q[t], np.concatenate(want_q), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got_d[t], np.concatenate(want_d), rtol=1e-5, atol=1e-6)
    assert got_q.shape == (5, encoder.output_dim) == (5, 3 * 4 * 4)


@pytest.mark.parametrize("precision", ["int8", "binary"])
def test_candidate_codes_made_chunk_by_chunk_equal_the_whole(monkeypatch, precision):
    import fastembed_rt.muvera as muvera_module
    from fastembed_rt.search import Index

    docs, _ = clustered_corpus(docs=300)
    monkeypatch.setattr(muvera_module, "_CHUNK_TOKENS", 50)  # about 3 documents a chunk
    index = MultiVectorIndex.build(docs, candidates=precision)
    whole = index.muvera.encode_documents(MultiVectorEmbeddings.from_arrays(docs))
    bound = np.abs(whole).max()
    ranges = np.array([[-bound] * whole.shape[1], [bound] * whole.shape[1]], np.float32) if precision == "int8" else None
    want = Index.build(whole, precision, ranges=ranges)
    np.testing.assert_array_equal(index.fde.codes, want.codes)
    if precision == "int8":
        np.testing.assert_array_equal(index.fde.ranges, want.ranges)
    assert index.fde.codes.dtype == want.codes.dtype and len(index.fde) == len(docs)


@pytest.mark.parametrize("precision, candidates", [("float32", None), ("int8", "int8"), ("float32", "binary")])
def test_save_and_load_memory_mapped(tmp_path, precision, candidates):
    docs, queries = clustered_corpus(docs=300)
    index = MultiVectorIndex.build(docs, precision, candidates=candidates)
    index.save(tmp_path / "idx")
    loaded = MultiVectorIndex.load(tmp_path / "idx")
    assert isinstance(loaded.documents.vectors, np.memmap) and loaded.precision == precision and len(loaded) == 300
    for exact in ([True] if candidates is None else [True, False]):
        want, got = index.search(queries, 7, exact=exact), loaded.search(queries, 7, exact=exact)
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[0], want[0])


def test_bad_input_is_named(tmp_path):
    docs, queries = clustered_corpus(docs=50)
    index = MultiVectorIndex.build(docs)
    with pytest.raises(ValueError, match="queries have dimension 5, the index 48"):
        index.search([np.ones((2, 5), np.float32)])
    with pytest.raises(ValueError, match="no MUVERA candidate stage"):
        index.search(queries, exact=False)
    with pytest.raises(ValueError, match="k must be a positive int"):
        index.search(queries, k=0)
    with pytest.raises(ValueError, match="unsupported precision 'int4'"):
        MultiVectorIndex.build(docs, "int4")
    with pytest.raises(ValueError, match="unsupported candidates 'pq'"):
        MultiVectorIndex.build(docs, candidates="pq")
    bad = list(docs)
    bad[3] = bad[3].copy()
    bad[3][0, 0] = np.nan
    with pytest.raises(ValueError, match="documents: item 3: token 0's vector holds NaN or inf"):
        MultiVectorIndex.build(bad)
    with pytest.raises(ValueError, match="queries: item 1: token 0's vector holds NaN or inf"):
        index.search([queries[0], bad[3]])
    with pytest.raises(ValueError, match="MUVERA simhash_bits must be an int in \\[0, 12\\]"):
        MultiVectorIndex.build(docs, candidates="int8", simhash_bits=20)
    index.save(tmp_path / "idx")
    header = json.loads((tmp_path / "idx" / "header.json").read_text())
    (tmp_path / "idx" / "header.json").write_text(json.dumps(header | {"tokens": header["tokens"] + 1}))
    with pytest.raises(ValueError, match="vectors.npy: float32 \\[.*\\], but header.json says"):
        MultiVectorIndex.load(tmp_path / "idx")
    with pytest.raises(FileNotFoundError, match="header.json is missing: not a fastembed_rt multi-vector index"):
        MultiVectorIndex.load(tmp_path)


@pytest.mark.parametrize("precision, candidates", [("float32", "float32"), ("int8", "int8")])
def test_a_damaged_index_file_is_named_at_load(tmp_path, precision, candidates):
    """Before: NaN in vectors.npy made the best document vanish from the results, NaN in muvera_hyperplanes.npy
    was reported as the queries' fault, and a float32 candidate index with NaN codes crashed the search."""
    docs, queries = clustered_corpus(docs=40)
    MultiVectorIndex.build(docs, precision, candidates=candidates).save(tmp_path / "idx")
    stored = "vectors.npy" if precision == "float32" else "scales.npy"
    for name, message in ((stored, f"{stored}: document 2: token 1's"), ("muvera_hyperplanes.npy", "muvera_hyperplanes.npy: holds NaN or inf")):
        path = tmp_path / "idx" / name
        original = np.load(path)
        damaged = original.copy()
        damaged.reshape(len(damaged), -1)[int(np.load(tmp_path / "idx" / "offsets.npy")[2]) + 1 if name == stored else 0, 0] = np.nan
        np.save(path, damaged)
        with pytest.raises(ValueError, match=message):
            MultiVectorIndex.load(tmp_path / "idx")
        np.save(path, original)
    if candidates == "float32":
        codes = np.load(tmp_path / "idx" / "fde" / "codes.npy")
        codes[5, 0] = np.nan
        np.save(tmp_path / "idx" / "fde" / "codes.npy", codes)
        with pytest.raises(ValueError, match="against corpus row 5: the score is NaN or inf"):
            MultiVectorIndex.load(tmp_path / "idx").search(queries, 3, exact=False)


def test_huge_query_values_are_an_error_not_inf_scores():
    docs, queries = clustered_corpus(docs=20)
    with pytest.raises(ValueError, match="MaxSim scores overflow float32"):
        MultiVectorIndex.build(docs).search([queries[0] * 1e38])


def test_packed_vectors_are_checked():
    floats = MultiVectorEmbeddings.from_arrays([np.ones((2, 4), np.float32)])
    with pytest.raises(ValueError, match="cannot concatenate float token vectors with int8 codes"):
        MultiVectorEmbeddings.concatenate([floats, floats.quantize()])
    with pytest.raises(ValueError, match=r"cannot concatenate token vectors of dimensions \[3, 4\]"):
        MultiVectorEmbeddings.concatenate([floats, MultiVectorEmbeddings.from_arrays([np.ones((2, 3), np.float32)])])
    with pytest.raises(ValueError, match="offsets must be integers, got float64"):
        MultiVectorEmbeddings(np.ones((4, 2), np.float32), np.array([0, 2.5, 4]))


def test_empty_queries_and_an_empty_corpus():
    docs, queries = clustered_corpus(docs=20)
    scores, ids = MultiVectorIndex.build(docs).search([], k=3)
    assert scores.shape == ids.shape == (0, 3)
    empty = MultiVectorIndex.build(MultiVectorEmbeddings(np.zeros((0, 48), np.float32), np.zeros(1, np.int64)))
    assert empty.search(queries, k=3)[1].shape == (16, 0)


def test_paired_maxsim_is_the_grid_at_each_documents_own_query():
    from fastembed_rt.colbert import paired_maxsim_scores

    docs, queries = clustered_corpus(docs=40, queries=5)
    query_of = np.array([3, 0, 3, 4, 0] * 8)  # query 1 and 2 own no document; document 7 is empty
    want = maxsim_scores(queries, docs)[query_of, np.arange(len(docs))]
    got = paired_maxsim_scores(queries, docs, query_of)
    if ops.select("maxsim", torch.device("cpu"), torch.float32).name == ops.REFERENCE:
        # torch's matmul (where no kernel of ours runs: a baseline x86-64 CPU) may sum a dot product in another
        # order for another shape of matrices: the last bit may differ
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    else:
        np.testing.assert_array_equal(got, want)
    assert paired_maxsim_scores(queries, [], []).shape == (0,)
