"""The LlamaIndex adapter, in this process and over a real `fastembed-rt serve` on loopback: LlamaIndex's public
embedding calls (sync, async, batched) give Embedder.encode's vectors."""

import asyncio

import numpy as np
import pytest

from fastembed_rt.integrations.llama_index import FastembedRTEmbedding
from fastembed_rt.server.process import ServerProcess


@pytest.fixture(scope="module")
def server(minilm_path):
    with ServerProcess(["--model", str(minilm_path), "--max-client-batch-size", "4"]) as process:
        yield process


@pytest.fixture(params=["in-process", "over-http"])
def embedding(request, server):
    if request.param == "in-process":
        return FastembedRTEmbedding(model_name="all-MiniLM-L6-v2", embed_batch_size=5)
    return FastembedRTEmbedding(base_url=server.url, embed_batch_size=5)


def test_llama_index_calls_give_the_model_s_vectors(embedding, minilm):
    texts = [f"text number {i} about retrieval" for i in range(11)]
    expected = minilm.encode(texts)
    np.testing.assert_allclose(embedding.get_text_embedding_batch(texts), expected, atol=1e-5)
    np.testing.assert_allclose(embedding.get_query_embedding(texts[0]), expected[0], atol=1e-5)
    np.testing.assert_allclose(embedding.get_text_embedding(texts[1]), expected[1], atol=1e-5)

    async def in_async():
        return (await embedding.aget_query_embedding(texts[2]), await embedding.aget_text_embedding_batch(texts[:7]))

    query, batch = asyncio.run(in_async())
    np.testing.assert_allclose(query, expected[2], atol=1e-5)
    np.testing.assert_allclose(batch, expected[:7], atol=1e-5)


def test_it_is_a_llama_index_embedding_model(embedding):
    from llama_index.core.base.embeddings.base import BaseEmbedding

    assert isinstance(embedding, BaseEmbedding) and embedding.class_name() == "FastembedRTEmbedding"
    assert "api_key" not in embedding.to_dict()  # never serialized with the index
