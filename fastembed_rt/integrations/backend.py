"""What the framework adapters run through: a model loaded in this process, or a `fastembed-rt serve` server
reached over HTTP. Embedding goes through the TEI route /embed (which takes prompt names); both give the same
vectors, the server's normalization asked for as the model's own (its /info says which). Reranking goes through
Reranker.rank here, or /v1/rerank there, in requests within the server's --max-client-batch-size."""

from __future__ import annotations

import json
import urllib.error
import urllib.request


class Backend:
    def __init__(self, model: str, *, revision: str | None = None, dtype: str | None = None, device: str | None = None,
                 base_url: str | None = None, api_key: str | None = None, timeout: float = 60.0,
                 batch_tokens: int | None = None):  # fmt: skip
        self.model, self.revision, self.dtype, self.device = model, revision, dtype, device
        self.base_url = None if base_url is None else base_url.rstrip("/")
        self.api_key, self.timeout, self.batch_tokens = api_key, timeout, batch_tokens
        self._info: dict | None = None

    def _request(self, method: str, path: str, body: dict | None = None):
        headers = {"content-type": "application/json"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            try:
                detail = json.loads(e.read()).get("error", "")
            except ValueError:
                detail = ""
            detail = detail.get("message", "") if isinstance(detail, dict) else detail  # OpenAI's error object on /v1
            raise RuntimeError(f"{self.base_url}{path}: HTTP {e.code}: {detail or e.reason}") from None
        except urllib.error.URLError as e:
            raise ConnectionError(f"cannot reach the fastembed-rt server at {self.base_url}: {e.reason}") from None

    def info(self) -> dict:
        if self._info is None:
            self._info = self._request("GET", "/info")
        return self._info


class EmbeddingBackend(Backend):
    _embedder = None

    def embed(self, texts: list[str], prompt_name: str | None = None) -> list[list[float]]:
        if not texts:
            return []
        if self.base_url is None:
            return self._local(texts, prompt_name)
        return self._remote(texts, prompt_name)

    # --- in this process --------------------------------------------------------------------------------
    def _local(self, texts: list[str], prompt_name: str | None) -> list[list[float]]:
        if self._embedder is None:
            from ..engine import load_embedder

            self._embedder = load_embedder(self.model, device=self.device, dtype=self.dtype, revision=self.revision)
        options = {} if self.batch_tokens is None else {"batch_tokens": self.batch_tokens}
        return self._embedder.encode(texts, prompt_name=prompt_name, **options).tolist()

    def _remote(self, texts: list[str], prompt_name: str | None) -> list[list[float]]:
        per_request = int(self.info()["limits"]["max_client_batch_size"])
        vectors: list[list[float]] = []
        for start in range(0, len(texts), per_request):  # within the server's --max-client-batch-size
            # Over-long texts are truncated, as Embedder.encode truncates them.
            body = {"inputs": texts[start : start + per_request], "normalize": bool(self.info()["normalize"]), "truncate": True}
            if prompt_name is not None:
                body["prompt_name"] = prompt_name
            vectors += self._request("POST", "/embed", body)
        return vectors


class RerankBackend(Backend):
    """`model`: a reranker here (load_reranker), or the name of a reranker on the server (None: its first)."""

    _reranker = None

    def rank(self, query: str, documents: list[str], top_n: int | None = None) -> list[tuple[int, float]]:
        """(index, score) of the best `top_n` documents (all when None), best first; ties keep the lower index."""
        if not documents:
            return []
        if self.base_url is None:
            if self._reranker is None:
                from ..reranker import load_reranker

                self._reranker = load_reranker(self.model, device=self.device, dtype=self.dtype, revision=self.revision)
            options = {} if self.batch_tokens is None else {"batch_tokens": self.batch_tokens}
            ranked = self._reranker.rank(query, documents, top_k=top_n, truncate=True, **options)
            return [(r["corpus_id"], r["score"]) for r in ranked]
        per_request = int(self.info()["limits"]["max_client_batch_size"])
        from ..reranker import best_first

        scores = [0.0] * len(documents)
        for start in range(0, len(documents), per_request):  # scores are per pair: requests may split the documents
            body = {"query": query, "documents": documents[start : start + per_request], "truncate": True}
            if self.model is not None:
                body["model"] = self.model
            for r in self._request("POST", "/v1/rerank", body)["results"]:
                scores[start + r["index"]] = r["relevance_score"]
        return [(int(i), scores[i]) for i in best_first(scores, top_n)]
