"""A ColBERT model on a real server beside a dense embedding model: TEI's /embed_all (token vectors of documents
and of expanded queries), the three rerank routes scored by MaxSim, limits and errors, /info."""

import numpy as np
import pytest

import fastembed_rt
from fastembed_rt.server.process import ServerProcess
from models.test_colbert import DOCUMENTS, QUERIES, stanford_colbert

from .conftest import get, post


@pytest.fixture(scope="module")
def colbert_dir(tmp_path_factory):
    return stanford_colbert(tmp_path_factory.mktemp("colbert") / "colbert", metadata={"query_maxlen": 10, "doc_maxlen": 30})


@pytest.fixture(scope="module")
def server(colbert_dir, minilm_path):
    args = ["--model", str(minilm_path), "--model", str(colbert_dir), "--max-client-batch-size", "16", "--max-batch-tokens", "200"]
    with ServerProcess(args) as process:
        yield process


@pytest.fixture(scope="module")
def model(colbert_dir):
    return fastembed_rt.load(colbert_dir)


def assert_rows_match(rows, want):
    assert len(rows) == len(want)
    for row, w in zip(rows, want):
        np.testing.assert_allclose(np.asarray(row, dtype=np.float32).reshape(w.shape), w, rtol=1e-5, atol=1e-5)


def test_embed_all_matches_the_api(server, model):
    status, body, _ = post(server.url, "/embed_all", {"inputs": DOCUMENTS[:12], "truncate": True})
    assert status == 200, body
    assert_rows_match(body, list(model.encode(DOCUMENTS[:12])))
    status, body, _ = post(server.url, "/embed_all", {"inputs": QUERIES, "task": "query", "model": "colbert", "truncate": True})
    assert status == 200, body
    assert_rows_match(body, list(model.encode(QUERIES, is_query=True)))
    assert all(len(row) == 10 for row in body)  # expanded to query_length


def test_rerank_routes_score_by_maxsim(server, model):
    query, documents = QUERIES[0], DOCUMENTS[:9]
    want = model.rank(query, documents)
    status, body, _ = post(server.url, "/rerank", {"query": query, "texts": documents, "truncate": True, "return_text": True})
    assert status == 200, body
    assert [r["index"] for r in body] == [w["corpus_id"] for w in want]
    np.testing.assert_allclose([r["score"] for r in body], [w["score"] for w in want], rtol=1e-5)
    assert body[0]["text"] == documents[body[0]["index"]]
    status, body, _ = post(server.url, "/v1/rerank", {"query": query, "documents": documents, "top_n": 3, "model": "colbert",
                                                       "truncate": True})  # fmt: skip
    assert status == 200, body
    assert [r["index"] for r in body["results"]] == [w["corpus_id"] for w in want[:3]] and body["usage"]["total_tokens"] > 0
    # vLLM's /score with pairs: each query against its own document
    pairs_q, pairs_d = QUERIES[:4], DOCUMENTS[:4]
    status, body, _ = post(server.url, "/score", {"text_1": pairs_q, "text_2": pairs_d, "truncate": True})
    assert status == 200, body
    scores = model.similarity(model.encode(pairs_q, is_query=True), model.encode(pairs_d))
    np.testing.assert_allclose([d["score"] for d in body["data"]], np.diag(scores), rtol=1e-5)


def test_limits_and_errors(server, minilm_path):
    long_document = " ".join(["w5"] * 100)  # past document_length 30
    status, body, _ = post(server.url, "/embed_all", {"inputs": ["w1", long_document], "truncate": False})
    assert status == 413 and "inputs[1] is longer than the model's document_length of 30 tokens" in body["error"]
    status, body, _ = post(server.url, "/rerank", {"query": "w1", "texts": [long_document]})
    assert status == 413 and "texts[0]" in body["error"]
    status, body, _ = post(server.url, "/embed_all", {"inputs": [[5, 6, 7]]})
    assert status == 422 and "takes texts, not token ids" in body["error"]
    status, body, _ = post(server.url, "/embed_all", {"inputs": ["w1"], "dimensions": 4})
    assert status == 422 and "dimensions does not apply" in body["error"]
    status, body, _ = post(server.url, "/embed_all", {"inputs": ["w1"], "task": "passage"})
    assert status == 422 and "task must be" in body["error"]
    status, body, _ = post(server.url, "/embed_all", {"inputs": ["w1"], "model": minilm_path.name})
    assert status == 422 and "this route needs a late-interaction model" in body["error"]
    status, body, _ = post(server.url, "/embed", {"inputs": ["w1"], "model": "colbert"})
    assert status == 422 and "is a late-interaction model" in body["error"]
    status, body, _ = post(server.url, "/embed_all", {"inputs": ["w1"] * 17})
    assert status == 413 and "more than the limit of 16" in body["error"]
    # Before: left was accepted and the vectors were the right-truncated ones.
    status, body, _ = post(server.url, "/embed_all", {"inputs": ["w1"], "truncation_direction": "left"})
    assert status == 422 and "truncation_direction left does not apply" in body["error"]
    # Before: "query is longer than ..." without saying which of the listed queries.
    long_query = " ".join(["w5"] * 30)
    status, body, _ = post(server.url, "/score", {"text_1": ["w1", long_query], "text_2": ["w2", "w3"]})
    assert status == 413 and body["error"].startswith("text_1[1] is longer than the model's query_length")


def test_info_describes_the_model(server):
    status, info, _ = get(server.url, "/info")
    assert status == 200
    late = next(m for m in info["models"] if m["model_id"] == "colbert")
    assert late["kind"] == "late-interaction" and late["dimension"] == 12
    assert late["query_length"] == 10 and late["document_length"] == 30 and late["similarity_fn_name"] == "MaxSim"
