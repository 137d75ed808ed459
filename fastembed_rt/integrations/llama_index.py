"""LlamaIndex embeddings and a reranker over fastembed_rt: a model in this process, or a `fastembed-rt serve` server.

    from fastembed_rt.integrations.llama_index import FastembedRTEmbedding, FastembedRTRerank
    from llama_index.core import Settings
    Settings.embed_model = FastembedRTEmbedding(model_name="BAAI/bge-small-en-v1.5")   # or base_url="http://..."
    engine = index.as_query_engine(node_postprocessors=[FastembedRTRerank(model="BAAI/bge-reranker-v2-m3", top_n=3)])
"""

from __future__ import annotations

import asyncio
import os

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle
from pydantic import Field, PrivateAttr

from .backend import EmbeddingBackend, RerankBackend


class FastembedRTEmbedding(BaseEmbedding):
    """`model_name` (directory, bundled name or Hub id) runs here unless `base_url` names a server; `api_key`
    defaults to $FASTEMBED_RT_API_KEY. Queries take `query_prompt_name`'s prompt, texts `document_prompt_name`'s."""

    model_name: str = "all-MiniLM-L6-v2"
    revision: str | None = None
    dtype: str | None = None
    device: str | None = None
    base_url: str | None = None
    api_key: str | None = Field(default_factory=lambda: os.environ.get("FASTEMBED_RT_API_KEY"), exclude=True)
    query_prompt_name: str | None = None
    document_prompt_name: str | None = None
    timeout: float = 60.0
    _backend: EmbeddingBackend = PrivateAttr()

    def model_post_init(self, context) -> None:
        self._backend = EmbeddingBackend(self.model_name, revision=self.revision, dtype=self.dtype, device=self.device,
                                         base_url=self.base_url, api_key=self.api_key, timeout=self.timeout)  # fmt: skip

    @classmethod
    def class_name(cls) -> str:
        return "FastembedRTEmbedding"

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._backend.embed([query], self.query_prompt_name)[0]

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._backend.embed([text], self.document_prompt_name)[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._backend.embed(list(texts), self.document_prompt_name)

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)


class FastembedRTRerank(BaseNodePostprocessor):
    """Reranks retrieved nodes by a cross-encoder or LLM reranker (`model` here, or a reranker of the server at
    `base_url`; there `model` names it, None: the server's first), keeping the best `top_n` with the reranker's score."""

    model: str | None = None
    revision: str | None = None
    dtype: str | None = None
    device: str | None = None
    base_url: str | None = None
    api_key: str | None = Field(default_factory=lambda: os.environ.get("FASTEMBED_RT_API_KEY"), exclude=True)
    top_n: int = 3
    timeout: float = 60.0
    _backend: RerankBackend = PrivateAttr()

    def model_post_init(self, context) -> None:
        if self.base_url is None and self.model is None:
            raise ValueError("FastembedRTRerank needs a model (a reranker to load here) or a base_url (a server)")
        self._backend = RerankBackend(self.model, revision=self.revision, dtype=self.dtype, device=self.device,
                                      base_url=self.base_url, api_key=self.api_key, timeout=self.timeout)  # fmt: skip

    @classmethod
    def class_name(cls) -> str:
        return "FastembedRTRerank"

    def _postprocess_nodes(self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None) -> list[NodeWithScore]:
        if query_bundle is None:
            raise ValueError("FastembedRTRerank needs the query (a QueryBundle) to rerank nodes")
        texts = [n.node.get_content() for n in nodes]
        return [NodeWithScore(node=nodes[i].node, score=score) for i, score in self._backend.rank(query_bundle.query_str, texts, self.top_n)]
