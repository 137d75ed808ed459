"""The rerank routes (TEI, Cohere/Jina, vLLM) on a real server holding an embedding model, a cross-encoder, a
three-label classifier and a yes/no LLM reranker at once."""

import json
import threading

import numpy as np
import pytest

import fastembed_rt
from fastembed_rt.server.process import ServerProcess
from fastembed_rt.testing import cross_encoder_from
from models.test_reranker import save_classifier, save_yes_no_llm

from .conftest import get, metric, post

QUERY = "what do people say about animal testing"


@pytest.fixture(scope="module")
def folders(tmp_path_factory, minilm_path):
    root = tmp_path_factory.mktemp("rerankers")
    (root / "labels3").mkdir()
    save_classifier("bert", root / "labels3", minilm_path, labels=3)
    (root / "llm").mkdir()
    save_yes_no_llm(root / "llm", tied=True)
    return {"ce": cross_encoder_from(minilm_path, root / "ce"), "labels3": root / "labels3", "llm": root / "llm"}


@pytest.fixture(scope="module")
def server(folders, minilm_path):
    args = ["--model", str(minilm_path), "--model", str(folders["ce"]), "--model", str(folders["labels3"]),
            "--reranker", str(folders["llm"]), "--max-client-batch-size", "16", "--max-batch-tokens", "1024"]  # fmt: skip
    with ServerProcess(args) as process:
        yield process


@pytest.fixture(scope="module")
def documents(data_dir):
    lines = (data_dir / "arguana" / "corpus.jsonl").read_text().splitlines()[:12]
    return [" ".join(json.loads(line)["text"].split()[:80]) for line in lines]


@pytest.fixture(scope="module")
def cross_encoder(folders):
    return fastembed_rt.load(folders["ce"])


def test_tei_rerank_matches_the_api(server, cross_encoder, documents):
    status, body, _ = post(server.url, "/rerank", {"query": QUERY, "texts": documents, "return_text": True})
    assert status == 200, body
    want = cross_encoder.rank(QUERY, documents)
    assert [r["index"] for r in body] == [w["corpus_id"] for w in want]
    np.testing.assert_allclose([r["score"] for r in body], [w["score"] for w in want], rtol=1e-5)
    assert all(r["text"] == documents[r["index"]] for r in body)
    status, raw, _ = post(server.url, "/rerank", {"query": QUERY, "texts": documents, "raw_scores": True})
    np.testing.assert_allclose([r["score"] for r in raw], [w["score"] for w in cross_encoder.rank(QUERY, documents, raw_scores=True)], rtol=1e-5)
    assert "text" not in raw[0]


def test_cohere_and_jina_rerank(server, cross_encoder, documents):
    mixed = [d if i % 2 else {"text": d} for i, d in enumerate(documents)]  # Cohere and Jina take both forms
    request = {"model": "ce", "query": QUERY, "documents": mixed, "top_n": 3, "return_documents": True}
    for path in ("/v1/rerank", "/rerank"):
        status, body, _ = post(server.url, path, request)
        assert status == 200, body
        want = cross_encoder.rank(QUERY, documents, top_k=3)
        assert [r["index"] for r in body["results"]] == [w["corpus_id"] for w in want]
        np.testing.assert_allclose([r["relevance_score"] for r in body["results"]], [w["score"] for w in want], rtol=1e-5)
        assert body["results"][0]["document"] == {"text": documents[want[0]["corpus_id"]]}
        tokens = sum(len(x) for x in cross_encoder.encode_pairs([QUERY] * len(documents), documents).ids)
        assert body["model"] == "ce" and body["usage"]["total_tokens"] == tokens


def test_vllm_score(server, cross_encoder, documents):
    status, body, _ = post(server.url, "/score", {"model": "ce", "text_1": QUERY, "text_2": documents[:4]})
    assert status == 200, body
    want = cross_encoder.predict([(QUERY, d) for d in documents[:4]])
    np.testing.assert_allclose([d["score"] for d in body["data"]], want, rtol=1e-5)
    assert [d["index"] for d in body["data"]] == [0, 1, 2, 3] and body["object"] == "list"
    pairs = {"queries": ["cats", "dogs"], "documents": documents[:2]}
    status, body, _ = post(server.url, "/v1/score", pairs)
    np.testing.assert_allclose([d["score"] for d in body["data"]], cross_encoder.predict(list(zip(pairs["queries"], documents[:2]))), rtol=1e-5)
    status, body, _ = post(server.url, "/score", {"text_1": ["a", "b"], "text_2": ["c", "d", "e"]})
    assert status == 422 and "text_1 holds 2 texts and text_2 3" in body["error"]


def test_yes_no_reranker_by_name(server, folders):
    pairs = [("w1 w2", "w3 w4 w5"), ("w1 w2", "w9"), ("w1 w2", "w1 w2 w1")]
    status, body, _ = post(server.url, "/v1/rerank", {"model": "llm", "query": "w1 w2", "documents": [d for _, d in pairs]})
    assert status == 200, body
    want = fastembed_rt.load_reranker(folders["llm"]).predict(pairs)
    np.testing.assert_allclose(sorted(r["relevance_score"] for r in body["results"]), sorted(want), rtol=1e-5)
    status, body, _ = post(server.url, "/predict", {"model": "llm", "inputs": "a single text"})
    assert status == 422 and "send [text, text] pairs" in body["error"]


def test_predict_single_texts_and_pairs(server, folders, cross_encoder):
    status, body, _ = post(server.url, "/predict", {"model": "ce", "inputs": ["is it", "a pair"]})
    assert status == 200, body
    assert body == [{"score": pytest.approx(float(cross_encoder.predict(("is it", "a pair"))), rel=1e-5), "label": "LABEL_0"}]
    labels3 = fastembed_rt.load(folders["labels3"])
    inputs = ["one text", ["a", "pair"], ["another text"]]
    status, body, _ = post(server.url, "/predict", {"model": "labels3", "inputs": inputs})
    assert status == 200, body
    encoded = labels3.encode_inputs([("one text",), ("a", "pair"), ("another text",)])
    logits = labels3.logits(encoded)
    for row, want in zip(body, logits):
        assert [r["score"] for r in row] == sorted((r["score"] for r in row), reverse=True)
        assert sum(r["score"] for r in row) == pytest.approx(1.0, rel=1e-5)
        by_label = {r["label"]: r["score"] for r in row}
        probabilities = np.exp(want - want.max()) / np.exp(want - want.max()).sum()
        np.testing.assert_allclose([by_label[f"LABEL_{i}"] for i in range(3)], probabilities, rtol=1e-5)
    status, raw, _ = post(server.url, "/predict", {"model": "labels3", "inputs": [["a", "pair"]], "raw_scores": True})
    np.testing.assert_allclose(sorted(r["score"] for r in raw[0]), sorted(logits[1]), rtol=1e-5)


@pytest.mark.parametrize("path, request_body, status, message", [
    ("/rerank", {"query": "q", "texts": []}, 422, "texts must not be empty"),
    ("/v1/rerank", {"query": "q", "documents": []}, 422, "documents must not be empty"),
    ("/rerank", {"query": "q", "texts": ["a", 3]}, 422, "texts[1] is an integer"),
    ("/v1/rerank", {"query": "q", "documents": ["a", {"title": "x"}]}, 422, "documents[1].text must be a string"),
    ("/v1/rerank", {"query": "q", "documents": ["a", "b"], "top_n": 0}, 422, "top_n must be in [1, 2]"),
    ("/v1/rerank", {"query": "q", "documents": ["a", "b"], "top_n": 3}, 422, "top_n must be in [1, 2]"),
    ("/rerank", {"query": None, "texts": ["a"]}, 422, "query must be a string"),
    ("/rerank", {"texts": ["a"]}, 422, "query is required"),
    ("/v1/rerank", {"model": "nope", "query": "q", "documents": ["a"]}, 404, "model 'nope' is not loaded; loaded: model (embedding model), ce (reranker), labels3 (reranker), llm (reranker)"),
    ("/v1/rerank", {"model": "model", "query": "q", "documents": ["a"]}, 422, "model 'model' is an embedding model"),
    ("/embed", {"model": "ce", "inputs": "x"}, 422, "model 'ce' is a reranker"),
    ("/v1/rerank", {"model": "labels3", "query": "q", "documents": ["a"]}, 422, "has 3 labels"),
    ("/rerank", {"query": "q", "texts": ["a"] * 17}, 413, "texts holds 17 inputs"),
    ("/rerank", {"query": "word " * 600, "texts": ["a", "b"]}, 413, "query leaves no room for texts[0]"),
    ("/rerank", {"query": "q", "texts": ["a"], "truncation_direction": "left"}, 422, "truncation_direction must be \"right\""),
    ("/predict", {"inputs": []}, 422, "inputs must be a text"),
    ("/predict", {"inputs": [["a", "b", "c"]]}, 422, "inputs[0] must be a text or a [text, text] pair"),
    ("/score", {"text_1": "q"}, 422, "text_2 is required"),
    # before: named text_2[1], the document, not the long query
    ("/score", {"text_1": ["ok", "word " * 600], "text_2": ["d", "e"]}, 413, r"text_1[1] leaves no room for text_2[1]"),
    ("/score", {"text_1": "word " * 600, "text_2": ["d", "e"]}, 413, r"text_1 leaves no room for text_2[0]"),
    ("/predict", {"model": "llm", "inputs": [["a", "b"], "c"]}, 422, "inputs[1] is a single text, but model 'llm' scores"),
    ("/predict", {"inputs": [["a", 5]]}, 422, "inputs[0][1] must be a string, got an integer"),
])  # fmt: skip
def test_bad_requests_are_refused_and_nothing_else_is_disturbed(server, cross_encoder, path, request_body, status, message):
    got, body, _ = post(server.url, path, request_body)
    error = body["error"]["message"] if path.startswith("/v1/") else body["error"]  # OpenAI's error object there
    assert got == status and message in error, body
    got, body, _ = post(server.url, "/rerank", {"query": "fine", "texts": ["a", "b"]})
    assert got == 200 and len(body) == 2


def test_long_query_with_truncate_and_embeddings_alongside(server, minilm):
    status, body, _ = post(server.url, "/rerank", {"query": "word " * 600, "texts": ["a", "b"], "truncate": True})
    assert status == 200 and len(body) == 2
    status, vectors, _ = post(server.url, "/embed", {"inputs": ["still embedding"]})  # the first embedding model
    assert status == 200 and np.dot(vectors[0], minilm.encode("still embedding", normalize=True)) > 0.99999


def test_concurrent_reranks_share_the_model(server, cross_encoder, documents):
    results, errors = {}, []

    def client(i):
        try:
            query = f"query number {i} about animals"
            status, body, _ = post(server.url, "/rerank", {"query": query, "texts": documents[i % 4 : i % 4 + 8]})
            assert status == 200
            results[i] = (query, body)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, (query, body) in results.items():
        want = cross_encoder.rank(query, documents[i % 4 : i % 4 + 8])
        np.testing.assert_allclose([r["score"] for r in body], [w["score"] for w in want], rtol=1e-5)


def test_info_and_metrics_list_every_model(server):
    info = get(server.url, "/info")[1]
    assert [m["model_id"] for m in info["models"]] == ["model", "ce", "labels3", "llm"]
    kinds = {m["model_id"]: (m["kind"], m.get("scoring")) for m in info["models"]}
    assert kinds["ce"] == ("reranker", "classifier") and kinds["llm"] == ("reranker", "yes/no logits")
    assert info["model_id"] == "model" and info["dimension"] == 384
    assert metric(server.url, 'fastembed_rt_requests_total{route="/rerank",status="200"}') >= 1


def test_a_reranker_only_server_with_an_api_key(folders):
    with ServerProcess(["--reranker", str(folders["ce"]), "--api-key", "k3y"]) as process:
        for path in ("/rerank", "/v1/rerank", "/score", "/predict"):
            status, _, headers = post(process.url, path, {"query": "q", "texts": ["a"]})
            assert status == 401 and headers["www-authenticate"] == "Bearer", path
        auth = {"headers": {"Authorization": "Bearer k3y"}}
        status, body, _ = post(process.url, "/embed", {"inputs": "x"}, **auth)
        assert status == 404 and "no embedding model is loaded; loaded: ce (reranker)" in body["error"]
        status, body, _ = post(process.url, "/rerank", {"query": "q", "texts": ["a", "b"]}, **auth)
        assert status == 200 and len(body) == 2
