"""The LangChain adapter: LangChain's own standard test suites (unit and integration) over a model in this
process and over a real `fastembed-rt serve` on loopback, and the same vectors as Embedder.encode either way."""

import numpy as np
import pytest
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from fastembed_rt.integrations.langchain import FastembedRTEmbeddings
from fastembed_rt.server.process import ServerProcess

API_KEY = "adapter-key"
SERVER: dict = {}


@pytest.fixture(scope="module", autouse=True)
def server(minilm_path):
    with ServerProcess(["--model", str(minilm_path), "--api-key", API_KEY, "--max-client-batch-size", "4"]) as process:
        SERVER["url"] = process.url
        yield process


class Adapter:
    """The adapter under LangChain's standard tests; by default the bundled model, in this process."""

    @property
    def embeddings_class(self):
        return FastembedRTEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"model": "all-MiniLM-L6-v2"}


class TestInProcessUnit(Adapter, EmbeddingsUnitTests):
    @property
    def init_from_env_params(self):
        return {"FASTEMBED_RT_API_KEY": "from-env"}, {"base_url": "http://127.0.0.1:9"}, {"api_key": "from-env"}


class TestInProcessIntegration(Adapter, EmbeddingsIntegrationTests):
    pass


class TestOverHTTPIntegration(Adapter, EmbeddingsIntegrationTests):
    @property
    def embedding_model_params(self) -> dict:
        return {"base_url": SERVER["url"], "api_key": API_KEY}


def test_both_forms_give_the_model_s_vectors(minilm, real_texts):
    texts = real_texts[:9]  # over HTTP: three requests of at most 4 (--max-client-batch-size)
    expected = minilm.encode(texts)
    local = np.asarray(FastembedRTEmbeddings(model="all-MiniLM-L6-v2").embed_documents(texts))
    remote = np.asarray(FastembedRTEmbeddings(base_url=SERVER["url"], api_key=API_KEY).embed_documents(texts))
    np.testing.assert_allclose(local, expected, atol=1e-6)
    np.testing.assert_allclose(remote, expected, atol=1e-5)
    query = FastembedRTEmbeddings(base_url=SERVER["url"], api_key=API_KEY).embed_query(texts[0])
    np.testing.assert_allclose(query, expected[0], atol=1e-5)


def test_errors_say_what_went_wrong():
    with pytest.raises(RuntimeError, match="HTTP 401: missing or wrong API key"):
        FastembedRTEmbeddings(base_url=SERVER["url"], api_key="wrong").embed_query("x")
    with pytest.raises(ConnectionError, match="cannot reach the fastembed-rt server at http://127.0.0.1:9"):
        FastembedRTEmbeddings(base_url="http://127.0.0.1:9").embed_query("x")
    with pytest.raises(RuntimeError, match="HTTP 422: .*prompt"):
        FastembedRTEmbeddings(base_url=SERVER["url"], api_key=API_KEY, query_prompt_name="nope").embed_query("x")
    with pytest.raises(KeyError, match="nope"):
        FastembedRTEmbeddings(query_prompt_name="nope").embed_query("x")
