"""LangChain embeddings and a reranker over fastembed_rt: a model in this process, or a `fastembed-rt serve` server.

    from fastembed_rt.integrations.langchain import FastembedRTEmbeddings, FastembedRTRerank
    embeddings = FastembedRTEmbeddings(model="BAAI/bge-small-en-v1.5")                 # in this process
    embeddings = FastembedRTEmbeddings(base_url="http://127.0.0.1:8080")               # over HTTP
    vectors = embeddings.embed_documents(["a text", "another"]); query = embeddings.embed_query("a question")
    reranker = FastembedRTRerank(model="BAAI/bge-reranker-v2-m3", top_n=3)             # a document compressor
    best = reranker.compress_documents(documents, "a question")                       # with metadata relevance_score
"""

from __future__ import annotations

import asyncio

from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.embeddings import Embeddings
from langchain_core.utils import secret_from_env
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr

from .backend import EmbeddingBackend, RerankBackend


class FastembedRTEmbeddings(BaseModel, Embeddings):
    """`model` (directory, bundled name or Hub id) runs here unless `base_url` names a server; `api_key` defaults
    to $FASTEMBED_RT_API_KEY. Queries take the model's `query_prompt_name` prompt (e.g. "query" for models that
    define one in config_sentence_transformers.json), documents `document_prompt_name`'s."""

    model_config = ConfigDict(extra="forbid")

    model: str = "all-MiniLM-L6-v2"
    revision: str | None = None
    dtype: str | None = None
    device: str | None = None
    base_url: str | None = None
    api_key: SecretStr | None = Field(default_factory=secret_from_env("FASTEMBED_RT_API_KEY", default=None))
    query_prompt_name: str | None = None
    document_prompt_name: str | None = None
    batch_tokens: int | None = None
    timeout: float = 60.0
    _backend: EmbeddingBackend = PrivateAttr()

    def model_post_init(self, context) -> None:
        self._backend = EmbeddingBackend(
            self.model, revision=self.revision, dtype=self.dtype, device=self.device, base_url=self.base_url,
            api_key=self.api_key.get_secret_value() if self.api_key else None, timeout=self.timeout,
            batch_tokens=self.batch_tokens,
        )  # fmt: skip

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._backend.embed(list(texts), self.document_prompt_name)

    def embed_query(self, text: str) -> list[float]:
        return self._backend.embed([text], self.query_prompt_name)[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self.embed_query, text)


class FastembedRTRerank(BaseDocumentCompressor):
    """Reranks documents by a cross-encoder or LLM reranker (`model` here, or a reranker of the server at `base_url`;
    there `model` names it, None: the server's first), keeping the best `top_n` (None: all) with their score in
    metadata["relevance_score"], as LangChain's rerankers do."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = None
    revision: str | None = None
    dtype: str | None = None
    device: str | None = None
    base_url: str | None = None
    api_key: SecretStr | None = Field(default_factory=secret_from_env("FASTEMBED_RT_API_KEY", default=None))
    top_n: int | None = 3
    timeout: float = 60.0
    _backend: RerankBackend = PrivateAttr()

    def model_post_init(self, context) -> None:
        if self.base_url is None and self.model is None:
            raise ValueError("FastembedRTRerank needs a model (a reranker to load here) or a base_url (a server)")
        self._backend = RerankBackend(
            self.model, revision=self.revision, dtype=self.dtype, device=self.device, base_url=self.base_url,
            api_key=self.api_key.get_secret_value() if self.api_key else None, timeout=self.timeout,
        )  # fmt: skip

    def compress_documents(self, documents, query: str, callbacks=None) -> list[Document]:
        documents = list(documents)
        ranked = self._backend.rank(query, [d.page_content for d in documents], self.top_n)
        return [Document(page_content=documents[i].page_content, metadata={**documents[i].metadata, "relevance_score": score},
                         id=documents[i].id) for i, score in ranked]  # fmt: skip
