"""The real server's routes against Embedder: the openai client, TEI's routes, /info, /metrics."""

import base64

import numpy as np
import openai
import pytest

from fastembed_rt.testing import row_cosines

from .conftest import MODEL_NAME, get, metric, post


@pytest.fixture(scope="module")
def texts(minilm, real_texts):
    """40 real texts that fit the model (the default server refuses over-long ones), short and long."""
    fits = [t for t, over in zip(real_texts, minilm.tokenizer.encode(real_texts).overflowed) if not over]
    return fits[:40]


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


@pytest.mark.parametrize("encoding_format", ["float", "base64", None])
def test_openai_client_gets_the_vectors_of_encode(client, server, minilm, texts, encoding_format):
    options = {"encoding_format": encoding_format} if encoding_format else {}
    response = client.embeddings.create(input=texts, model=MODEL_NAME, **options)
    assert [d.index for d in response.data] == list(range(len(texts)))
    if encoding_format == "base64":  # asked for explicitly, the client hands the strings over as they came
        vectors = np.array([np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") for d in response.data])
    else:  # the client's default: it asks for base64 and decodes it itself
        vectors = np.array([d.embedding for d in response.data])
    assert vectors.shape == (len(texts), 384)
    assert row_cosines(vectors, minilm.encode(texts)).min() >= 0.99999
    assert response.model == server.name
    tokens = sum(minilm.count_tokens(texts))
    assert (response.usage.prompt_tokens, response.usage.total_tokens) == (tokens, tokens)


def test_base64_is_little_endian_float32(server, minilm):
    status, body, _ = post(server.url, "/v1/embeddings", {"input": "a guitar", "encoding_format": "base64"})
    assert status == 200
    vector = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
    assert row_cosines(vector[None], minilm.encode(["a guitar"])).min() >= 0.99999


@pytest.mark.parametrize("dimensions", [1, 64, 383])
def test_openai_dimensions_truncate_and_renormalize(client, minilm, texts, dimensions):
    response = client.embeddings.create(input=texts[:5], model=MODEL_NAME, dimensions=dimensions, encoding_format="float")
    vectors = np.array([d.embedding for d in response.data])
    assert vectors.shape == (5, dimensions)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    expected = minilm.encode(texts[:5], truncate_dim=dimensions)
    assert row_cosines(vectors, expected).min() >= 0.99999


def test_openai_token_id_inputs(client, minilm, texts):
    ids = minilm.tokenizer.encode(texts[:3]).ids
    by_ids = client.embeddings.create(input=ids, model=MODEL_NAME, encoding_format="float")
    one = client.embeddings.create(input=ids[0], model=MODEL_NAME, encoding_format="float")  # a flat list: one input
    expected = minilm.encode(texts[:3])
    assert row_cosines([d.embedding for d in by_ids.data], expected).min() >= 0.99999
    assert len(one.data) == 1 and row_cosines([one.data[0].embedding], expected[:1]).min() >= 0.99999
    assert by_ids.usage.prompt_tokens == sum(len(x) for x in ids)


def test_openai_client_sees_errors_naming_the_field(client):
    with pytest.raises(openai.UnprocessableEntityError, match="dimensions must be in \\[1, 384\\], got 0"):
        client.embeddings.create(input="x", model=MODEL_NAME, dimensions=0)
    with pytest.raises(openai.UnprocessableEntityError, match=r"input\[1\] holds token id 999999, outside the vocabulary"):
        client.embeddings.create(input=[[101, 102], [101, 999999, 102]], model=MODEL_NAME)


def test_tei_embed_options(server, minilm, texts):
    status, body, _ = post(server.url, "/embed", {"inputs": texts[:6]})
    assert status == 200
    assert row_cosines(body, minilm.encode(texts[:6])).min() >= 0.99999
    status, body, _ = post(server.url, "/embed", {"inputs": texts[:6], "normalize": False, "dimensions": 100})
    assert status == 200
    raw = minilm.encode(texts[:6], normalize=False, truncate_dim=100)
    np.testing.assert_allclose(np.array(body), raw, rtol=1e-4, atol=1e-5)
    status, body, _ = post(server.url, "/embed", {"inputs": "one string"})
    assert status == 200 and len(body) == 1 and len(body[0]) == 384
    status, body, _ = post(server.url, "/embed", {"inputs": "x", "prompt_name": "query"})
    assert status == 422
    assert body == {"error": "prompt_name 'query' is not among the model's prompts (none)", "error_type": "Validation"}


def test_similarity_route(server, minilm):
    source, sentences = "A man is playing a guitar.", ["Someone plays guitar.", "A cat sleeps.", "Stock prices fell."]
    status, scores, _ = post(server.url, "/similarity", {"inputs": {"source_sentence": source, "sentences": sentences}})
    assert status == 200
    expected = minilm.similarity(minilm.encode([source]), minilm.encode(sentences))[0]
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    assert int(np.argmax(scores)) == 0


def test_tokenize_route(server, minilm):
    text = "Hello, World of embeddings!"
    status, body, _ = post(server.url, "/tokenize", {"inputs": text})
    assert status == 200 and len(body) == 1
    assert [t["id"] for t in body[0]] == minilm.tokenizer.encode([text]).ids[0]
    assert body[0][0] == {"id": 101, "text": "[CLS]", "special": True, "start": None, "stop": None}
    words = [t for t in body[0] if not t["special"]]
    assert all(text.lower()[t["start"] : t["stop"]] == t["text"].lower() for t in words)
    status, body, _ = post(server.url, "/tokenize", {"inputs": [text, "b"], "add_special_tokens": False})
    assert status == 200 and len(body) == 2 and not any(t["special"] for t in body[0])


def test_health_info_and_routes(server):
    assert get(server.url, "/health")[:2] == (200, {"status": "ok"})
    status, info, _ = get(server.url, "/info")
    assert status == 200
    assert (info["model_id"], info["dimension"], info["max_input_length"], info["model_dtype"]) == (
        server.name, 384, 256, "float32")  # fmt: skip
    assert info["limits"]["max_concurrent_requests"] == 512 and info["limits"]["auto_truncate"] is False
    assert {"fastembed_rt", "torch", "tokenizers", "python"} <= set(info["versions"])
    status, body, _ = get(server.url, "/nowhere")
    assert status == 404 and "no route /nowhere" in body["error"]
    status, body, headers = get(server.url, "/embed")
    assert status == 405 and body["error"] == "/embed takes POST, not GET" and headers["allow"] == "POST"


def test_metrics_report_requests_stages_batches_and_queue(server):
    before = metric(server.url, 'fastembed_rt_requests_total{route="/embed",status="200"}')
    for _ in range(3):
        assert post(server.url, "/embed", {"inputs": ["a", "b"]})[0] == 200
    assert metric(server.url, 'fastembed_rt_requests_total{route="/embed",status="200"}') == before + 3
    _, text, headers = get(server.url, "/metrics")
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    for name in ("fastembed_rt_queue_duration_seconds_count", "fastembed_rt_tokenization_duration_seconds_count",
                 "fastembed_rt_inference_duration_seconds_count", "fastembed_rt_batch_size_texts_count",
                 "fastembed_rt_batch_size_tokens_count", 'fastembed_rt_request_duration_seconds_count{route="/embed"}'):  # fmt: skip
        assert metric(server.url, name) >= 3, name
    assert "# TYPE fastembed_rt_queue_depth gauge" in text and "fastembed_rt_queue_depth 0" in text
    assert 'fastembed_rt_inference_duration_seconds_bucket{le="+Inf"}' in text
