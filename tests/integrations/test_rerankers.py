"""The LangChain document compressor and the LlamaIndex node postprocessor over a reranker in this process and
over a real `fastembed-rt serve` on loopback (with an API key and a client batch limit smaller than the documents,
so the adapter splits them): the same ranking as Reranker.rank either way."""

import pytest

import fastembed_rt
from fastembed_rt.server.process import ServerProcess
from fastembed_rt.testing import cross_encoder_from

API_KEY = "rerank-key"
QUERY = "who wrote about animal rights"
TEXTS = ["animals have rights", "the weather is nice", "a treatise on animal welfare", "stock prices fell",
         "rights of animals in law", "cooking pasta"]  # fmt: skip


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory, minilm_path):
    return cross_encoder_from(minilm_path, tmp_path_factory.mktemp("ce"))


@pytest.fixture(scope="module")
def expected(cross_encoder):
    return fastembed_rt.load(cross_encoder).rank(QUERY, TEXTS, top_k=3, truncate=True)


@pytest.fixture(scope="module")
def server(cross_encoder, minilm_path):
    args = ["--model", str(minilm_path), "--reranker", str(cross_encoder), "--api-key", API_KEY, "--max-client-batch-size", "4"]
    with ServerProcess(args) as process:
        yield process


def where(server, local: bool, model) -> dict:
    return {"model": str(model)} if local else {"base_url": server.url, "api_key": API_KEY}


@pytest.mark.parametrize("local", [True, False], ids=["in-process", "server"])
def test_langchain_compressor(local, server, cross_encoder, expected):
    from langchain_core.documents import Document

    from fastembed_rt.integrations.langchain import FastembedRTRerank

    documents = [Document(page_content=t, metadata={"n": i}, id=str(i)) for i, t in enumerate(TEXTS)]
    reranked = FastembedRTRerank(**where(server, local, cross_encoder), top_n=3).compress_documents(documents, QUERY)
    assert [d.metadata["n"] for d in reranked] == [e["corpus_id"] for e in expected]
    assert [d.id for d in reranked] == [str(e["corpus_id"]) for e in expected]
    assert [d.metadata["relevance_score"] for d in reranked] == pytest.approx([e["score"] for e in expected], rel=1e-5)


@pytest.mark.parametrize("local", [True, False], ids=["in-process", "server"])
def test_llama_index_postprocessor(local, server, cross_encoder, expected):
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    from fastembed_rt.integrations.llama_index import FastembedRTRerank

    nodes = [NodeWithScore(node=TextNode(text=t, id_=str(i)), score=0.0) for i, t in enumerate(TEXTS)]
    reranked = FastembedRTRerank(**where(server, local, cross_encoder), top_n=3).postprocess_nodes(nodes, QueryBundle(QUERY))
    assert [n.node.node_id for n in reranked] == [str(e["corpus_id"]) for e in expected]
    assert [n.score for n in reranked] == pytest.approx([e["score"] for e in expected], rel=1e-5)


def test_errors_are_named(server, minilm_path):
    from fastembed_rt.integrations.langchain import FastembedRTRerank

    with pytest.raises(ValueError, match="needs a model"):
        FastembedRTRerank()
    with pytest.raises(RuntimeError, match="HTTP 401"):
        FastembedRTRerank(base_url=server.url, api_key="wrong")._backend.rank("q", ["a"])
    with pytest.raises(RuntimeError, match="model 'nope' is not loaded"):
        FastembedRTRerank(base_url=server.url, api_key=API_KEY, model="nope")._backend.rank("q", ["a"])
    with pytest.raises(ValueError, match="not a reranker checkpoint"):
        FastembedRTRerank(model=str(minilm_path))._backend.rank("q", ["a"])
