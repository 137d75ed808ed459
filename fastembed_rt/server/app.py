"""The HTTP API as a plain ASGI application over one or more models, each with its own Batcher: OpenAI's
/v1/embeddings and TEI's routes for embedding models; TEI's /embed_sparse for sparse (SPLADE) models; TEI's
/embed_all (token vectors) for late-interaction (ColBERT) models; TEI's /rerank and /predict, Cohere's and Jina's
/v1/rerank and vLLM's /score for rerankers, and the three rerank routes by MaxSim for ColBERT models. A request's `model` field picks a loaded model by name (404 for another name);
without one, the first loaded model of the kind the route needs serves it.

Plain ASGI rather than a web framework, because the server must see what frameworks hide: the body as it
streams in (a size limit before it is all read), and the client's disconnect while its texts wait for a
batch (so they never take a batch slot)."""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import platform
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import orjson
import tokenizers
import torch

from .. import __version__
from ..colbert import ColBERT, paired_maxsim_scores
from ..engine import Embedder
from ..reranker import QueryTooLong, Reranker, best_first, softmax
from ..sparse import prune_dense
from ..sparse_encoder import SparseEncoder
from .batcher import Batcher, BatcherClosed, Job
from .config import ServerConfig
from .errors import RequestError
from .inputs import RequestTokenizer
from .metrics import Metrics
from .schemas import (EmbedRequest, Inputs, RerankRequest, json_type, parse_cohere_rerank, parse_openai, parse_predict,
                      parse_score, parse_similarity, parse_task, parse_tei_embed, parse_tei_rerank, parse_tokenize)  # fmt: skip

log = logging.getLogger("fastembed_rt.server")

JSON = b"application/json"
PROMETHEUS = b"text/plain; version=0.0.4; charset=utf-8"


class ClientGone(Exception):
    """The client disconnected before its answer was ready: there is nobody to answer."""


EMBEDDING, SPARSE, LATE, RERANKER = "embedding model", "sparse model", "late-interaction model", "reranker"


class ServedModel:
    """One loaded model behind the API: an Embedder, a SparseEncoder, a ColBERT or a Reranker, with its own batcher
    (one model thread each)."""

    def __init__(self, name: str, model: Embedder | SparseEncoder | ColBERT | Reranker, config: ServerConfig, metrics: Metrics):
        self.name, self.model = name, model
        self.is_reranker = isinstance(model, Reranker)
        self.kind = (RERANKER if self.is_reranker else SPARSE if isinstance(model, SparseEncoder)
                     else LATE if isinstance(model, ColBERT) else EMBEDDING)  # fmt: skip
        if self.is_reranker:  # the width of its batches' rows, and what computes them
            self.width, run = model.num_labels, model.logits_batch
        elif self.kind == SPARSE:
            self.width, run = model.dimension, model.dense_batch
        elif self.kind == LATE:  # rows of as many token vectors as each sequence keeps
            self.width = None

            def run(batch):
                return list(model.embed_batch(batch, batch.is_query if batch.is_query is not None else False))
        else:
            self.width, run = model.full_dimension, model.embed_batch
        self.tokenizer = None if self.is_reranker or self.kind == LATE else RequestTokenizer(model)
        self.batcher = Batcher(
            run, metrics, max_batch_tokens=config.max_batch_tokens, max_batch_texts=config.max_batch_texts,
            max_wait_ms=config.max_wait_ms,
        )  # fmt: skip


class ModelServer:
    def __init__(self, models: dict[str, Embedder | Reranker], config: ServerConfig, on_ready=None):
        if not models:
            raise ValueError("the server needs at least one model")
        self.config, self.on_ready = config, on_ready
        self.metrics = Metrics()
        self.models = {name: ServedModel(name, model, config, self.metrics) for name, model in models.items()}
        self.executor = ThreadPoolExecutor(config.tokenizer_workers, thread_name_prefix="fastembed-tokenize")
        self.in_flight = 0
        batchers = [m.batcher for m in self.models.values()]
        self.metrics.add_gauge("queue_depth", "Texts waiting for a batch.", lambda: sum(b.queued_texts for b in batchers))
        self.metrics.add_gauge("requests_in_flight", "POST requests being served.", lambda: self.in_flight)
        self.routes = {
            "/v1/embeddings": ("POST", self.openai_embeddings),
            "/embed": ("POST", self.tei_embed),
            "/embed_sparse": ("POST", self.tei_embed_sparse),
            "/embed_all": ("POST", self.tei_embed_all),
            "/similarity": ("POST", self.similarity),
            "/tokenize": ("POST", self.tokenize),
            "/rerank": ("POST", self.tei_rerank),
            "/v1/rerank": ("POST", self.cohere_rerank),
            "/predict": ("POST", self.predict),
            "/score": ("POST", self.score),
            "/v1/score": ("POST", self.score),
            "/health": ("GET", self.health),
            "/info": ("GET", self.info),
            "/metrics": ("GET", self.metrics_text),
        }

    def served(self, name: str | None, *needed: str) -> ServedModel:
        """The model a request names (404 if it is not loaded), or the first loaded one of a kind it needs."""
        loaded = ", ".join(f"{n} ({m.kind})" for n, m in self.models.items())
        kinds = " or ".join(_a(kind) for kind in needed)
        if name is not None:
            if name not in self.models:
                raise RequestError(404, f"model {name!r} is not loaded; loaded: {loaded}", "model")
            if self.models[name].kind not in needed:
                raise RequestError(422, f"model {name!r} is {_a(self.models[name].kind)}; this route needs {kinds}", "model")
            return self.models[name]
        model = next((m for m in self.models.values() if m.kind in needed), None)
        if model is None:
            raise RequestError(404, f"no {' or '.join(needed)} is loaded; loaded: {loaded}", "model")
        return model

    # --- ASGI entry ------------------------------------------------------------------------------------
    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        if scope["type"] != "http":
            return
        start = time.perf_counter()
        path = scope["path"]
        route = path if path in self.routes else "other"
        headers = []
        try:
            status, body, content_type = await self._dispatch(scope, receive)
        except ClientGone:
            self.metrics.requests.inc(1, route, "499")  # nginx's code for "client closed request"
            return
        except Exception as e:
            if not isinstance(e, RequestError):  # a bug or a backend failure: answer 500, keep serving
                log.exception("request to %s failed", path)
                e = RequestError(500, f"internal error: {type(e).__name__}: {e}")
            status, content_type = e.status, JSON
            body = orjson.dumps(e.openai_body() if path.startswith("/v1/") else e.tei_body())
            if status == 401:
                headers.append((b"www-authenticate", b"Bearer"))
            elif status == 405:
                headers.append((b"allow", self.routes[path][0].encode()))
            elif status in (408, 413):  # the body was not read to its end: the connection cannot carry another request
                headers.append((b"connection", b"close"))
        headers += [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        self.metrics.requests.inc(1, route, str(status))
        self.metrics.request_seconds.observe(time.perf_counter() - start, route)

    async def _dispatch(self, scope, receive):
        path = scope["path"]
        if path not in self.routes:
            raise RequestError(404, f"no route {path}; routes: {', '.join(self.routes)}")
        method, handler = self.routes[path]
        if scope["method"] != method:
            raise RequestError(405, f"{path} takes {method}, not {scope['method']}")
        if self.config.api_key is not None and path != "/health":
            self._authorize(scope)
        if method == "GET":
            return await handler()
        # A request takes a slot only once its body is in: a client that sends it slowly holds a connection
        # (bounded by --max-connections and --body-timeout), never the capacity of the others.
        body = await self._read_json(scope, receive)
        if self.in_flight >= self.config.max_concurrent_requests:
            raise RequestError(429, f"too many concurrent requests: the limit is {self.config.max_concurrent_requests} (--max-concurrent-requests); retry later")
        self.in_flight += 1
        try:
            return await handler(body, receive)
        finally:
            self.in_flight -= 1

    def _authorize(self, scope) -> None:
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = header.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.config.api_key.encode()):
            raise RequestError(401, "missing or wrong API key: send the header 'Authorization: Bearer <key>'")

    async def _read_json(self, scope, receive) -> dict:
        limit = self.config.max_request_bytes
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise RequestError(413, f"request body is {int(declared)} bytes, more than the limit of {limit} (--max-request-bytes)")
        chunks, size = [], 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.body_timeout
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                raise RequestError(408, f"request body not received within {self.config.body_timeout:g} s "
                                        f"(--body-timeout): {size} bytes came") from None  # fmt: skip
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise RequestError(413, f"request body is more than the limit of {limit} bytes (--max-request-bytes)")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        raw = b"".join(chunks)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            try:  # orjson names a bad UTF-8 sequence at the wrong place: say where it is
                raw.decode("utf-8")
            except UnicodeDecodeError as bad:
                raise RequestError(422, f"request body is not valid UTF-8: byte {bad.start} ({raw[bad.start:bad.start + 1]!r})") from None
            raise RequestError(422, f"request body is not valid JSON: {e}") from None
        if not isinstance(body, dict):
            raise RequestError(422, f"request body must be a JSON object, got {json_type(body)}")
        return body

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                for model in self.models.values():
                    model.batcher.start()
                await send({"type": "lifespan.startup.complete"})
                if self.on_ready is not None:
                    self.on_ready()
            elif message["type"] == "lifespan.shutdown":
                # Connections are drained by now: embed whatever is still queued, then stop the threads.
                for model in self.models.values():
                    await asyncio.get_running_loop().run_in_executor(None, model.batcher.close)
                self.executor.shutdown(wait=True)
                await send({"type": "lifespan.shutdown.complete"})
                return

    # --- running requests through a model's batcher ---------------------------------------------------
    async def _run(self, served: ServedModel, tokenize, receive, is_query: list[bool] | None = None):
        """Rows [n, width] of a request (vectors before normalization or truncation, or a reranker's logits; a
        late-interaction model's per-sequence token vectors, `is_query` saying which sequences are queries), in
        input order, and their token count. tokenize() -> (ids, skip, token types or None) runs on the tokenizer
        pool; meanwhile a partial batch may wait for it (announce)."""
        loop = asyncio.get_running_loop()
        disconnected = asyncio.ensure_future(receive())  # completes only when the client goes away
        try:
            served.batcher.announce()
            job = None
            try:
                start = time.perf_counter()
                ids, skip, types = await loop.run_in_executor(self.executor, tokenize)
                self.metrics.tokenize_seconds.observe(time.perf_counter() - start)
                if disconnected.done():  # gone while its texts were tokenized: they never reach the queue
                    self.metrics.cancelled_texts.inc(len(ids))
                    raise ClientGone
                submitted = Job(ids, skip, served.width, loop, token_types=types, is_query=is_query)
                served.batcher.submit(submitted)
                job = submitted  # only now is the announcement consumed
            except BatcherClosed:
                raise RequestError(503, "the server is shutting down") from None
            finally:
                if job is None:
                    served.batcher.withdraw()
            await asyncio.wait((job.future, disconnected), return_when=asyncio.FIRST_COMPLETED)
            if not job.future.done():
                job.cancel()
                job.future.cancel()
                raise ClientGone
            rows = job.future.result()
            if job.queue_seconds is not None:
                self.metrics.queue_seconds.observe(job.queue_seconds)
            return rows, job.num_tokens
        finally:
            disconnected.cancel()

    async def _embed(self, served: ServedModel, inputs: Inputs, prompt_name: str | None, truncate: bool | None,
                     direction: str, receive):  # fmt: skip
        self._check_batch_size(inputs.items, inputs.field)
        if inputs.ids is not None and prompt_name is not None:
            raise RequestError(422, "prompt_name does not apply to token ids: send the prompt's tokens in them", "prompt_name")
        prompt = self._prompt(served, prompt_name)
        truncate = self.config.auto_truncate if truncate is None else truncate

        def tokenize():
            if inputs.texts is not None:
                ids, skip = served.tokenizer.texts(inputs, prompt, truncate, direction)
            else:
                ids, skip = served.tokenizer.token_ids(inputs, truncate, direction)
            return ids, skip, None

        return await self._run(served, tokenize, receive)

    async def _score_pairs(self, served: ServedModel, request: RerankRequest, receive):
        """A reranker's logits [n, labels] for the request's pairs, and their token count."""
        self._check_batch_size(len(request.documents), request.field)
        truncate = self.config.auto_truncate if request.truncate is None else request.truncate

        def tokenize():
            try:
                encoded = served.model.encode_pairs(request.queries, request.documents, truncate=truncate)
            except QueryTooLong as e:
                raise RequestError(413, f"{request.query_name(e.index)} leaves no room for {request.field}[{e.index}] within "
                                        f"the model's {served.model.max_length} tokens; shorten it, or send truncate=true "
                                        "(or start the server with --auto-truncate)", request.query_field) from None  # fmt: skip
            return encoded.ids, [0] * len(encoded.ids), encoded.token_types

        return await self._run(served, tokenize, receive)

    async def _token_vectors(self, served: ServedModel, texts: list[str], is_query: list[bool], truncate: bool | None,
                             where, field: str, receive):  # fmt: skip
        """A ColBERT model's token vectors of texts (each a query or a document), and their token count; where(i)
        names text i in errors, which `field` of the request holds."""
        model: ColBERT = served.model
        truncate = self.config.auto_truncate if truncate is None else truncate

        def tokenize():
            ids = [None] * len(texts)
            for flag in (True, False):
                chosen = [i for i, q in enumerate(is_query) if q == flag]
                tokenized = model.tokenize([texts[i] for i in chosen], flag) if chosen else None
                for j, i in enumerate(chosen):
                    if tokenized.overflowed[j] and not truncate:
                        limit = model.query_length if flag else model.document_length
                        raise RequestError(413, f"{where(i)} is longer than the model's {'query' if flag else 'document'}_length "
                                                f"of {limit} tokens; shorten it, or send truncate=true (or start the server "
                                                "with --auto-truncate)", field)  # fmt: skip
                    ids[i] = tokenized.ids[j]
            return ids, [0] * len(ids), None

        return await self._run(served, tokenize, receive, is_query=is_query)

    async def _late_interaction_scores(self, served: ServedModel, request: RerankRequest, receive):
        """MaxSim of each (query, document) pair of a request, and the token count; each distinct query is encoded once."""
        self._check_batch_size(len(request.documents), request.field)
        queries = list(dict.fromkeys(request.queries))
        first = len(queries)
        vectors, tokens = await self._token_vectors(served, queries + request.documents,
                                                    [True] * first + [False] * len(request.documents), request.truncate,
                                                    lambda i: request.query_name(request.queries.index(queries[i])) if i < first
                                                    else f"{request.field}[{i - first}]",
                                                    request.field, receive)  # fmt: skip
        row = {text: i for i, text in enumerate(queries)}
        scores = paired_maxsim_scores(vectors[:first], vectors[first:], [row[text] for text in request.queries])
        return scores, tokens

    def _check_batch_size(self, count: int, field: str) -> None:
        limit = self.config.max_client_batch_size
        if count > limit:
            raise RequestError(413, f"{field} holds {count} inputs, more than the limit of {limit} (--max-client-batch-size)", field)

    @staticmethod
    def _prompt(served: ServedModel, prompt_name: str | None) -> str:
        """The prompt text a request asks for by name (None: the model's default prompt, if any)."""
        try:
            return served.model.resolve_prompt(None, prompt_name)
        except KeyError as e:
            raise RequestError(422, e.args[0], "prompt_name") from None

    @staticmethod
    def _dimensions(served: ServedModel, dimensions: int | None) -> int | None:
        """The Matryoshka truncation a request asks for (None: the model's own), checked before any work."""
        try:
            return served.model.resolve_truncate_dim(dimensions)
        except ValueError:
            raise RequestError(422, f"dimensions must be in [1, {served.model.full_dimension}], got {dimensions}", "dimensions") from None

    @staticmethod
    def _finish(vectors: np.ndarray, normalize: bool, dimensions: int | None) -> np.ndarray:
        """Matryoshka truncation, then L2 normalization, as Embedder.encode does them."""
        if dimensions is not None:
            vectors = vectors[:, :dimensions]
        if normalize:
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    # --- embedding routes ------------------------------------------------------------------------------
    async def openai_embeddings(self, body: dict, receive):
        request = parse_openai(body)
        served = self.served(request.model, EMBEDDING)
        dimensions = self._dimensions(served, request.dimensions)
        vectors, tokens = await self._embed(served, request.inputs, None, request.truncate, "right", receive)
        vectors = self._finish(vectors, served.model.spec.normalize, dimensions)
        if request.encoding_format == "base64":
            rows = [base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") for v in vectors]
        else:
            rows = list(vectors)
        data = [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)]
        payload = {"object": "list", "data": data, "model": served.name,
                   "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}  # fmt: skip
        return 200, orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), JSON

    async def tei_embed(self, body: dict, receive):
        request: EmbedRequest = parse_tei_embed(body)
        served = self.served(request.model, EMBEDDING)
        dimensions = self._dimensions(served, request.dimensions)
        vectors, _ = await self._embed(served, request.inputs, request.prompt_name, request.truncate, request.direction, receive)
        vectors = self._finish(vectors, request.normalize, dimensions)
        return 200, orjson.dumps(vectors, option=orjson.OPT_SERIALIZE_NUMPY), JSON

    async def tei_embed_sparse(self, body: dict, receive):
        """TEI's /embed_sparse: per input, its non-zero weights as [{index, value}], by increasing index. `task`
        "query" takes a model's query route: an inference-free model's is a token lookup, done on the tokenizer
        pool without a batch; otherwise the model runs, with its "query" prompt where it has one."""
        request: EmbedRequest = parse_tei_embed(body)
        task = parse_task(body)
        if request.dimensions is not None:
            raise RequestError(422, "dimensions does not apply to sparse vectors (they span the vocabulary)", "dimensions")
        served = self.served(request.model, SPARSE)
        model = served.model
        prompt_name = request.prompt_name
        if prompt_name is None and task in model.spec.prompts and request.inputs.texts is not None:
            prompt_name = task  # the task's prompt, for texts (token ids come as the model reads them)
        if task == "query" and model.query_is_inference_free:
            return await self._inference_free_queries(served, request, prompt_name)
        rows, _ = await self._embed(served, request.inputs, prompt_name, request.truncate, request.direction, receive)
        rows = prune_dense(torch.from_numpy(rows), model.max_active_dims).numpy()  # the model's own cap, as encode
        payload = [[{"index": int(i), "value": float(row[i])} for i in np.flatnonzero(row)] for row in rows]
        return 200, orjson.dumps(payload), JSON

    async def _inference_free_queries(self, served: ServedModel, request: EmbedRequest, prompt_name: str | None):
        """/embed_sparse's query route of an inference-free model: a token lookup on the tokenizer pool, no batch;
        checked as the other routes check their inputs (prompt, length, truncation side)."""
        field, query = request.inputs.field, served.model.spec.query
        if request.inputs.texts is None:
            raise RequestError(422, "task query of an inference-free model takes texts, not token ids", field)
        if request.direction != "right":
            raise RequestError(422, "truncation_direction left does not apply to an inference-free query route: it keeps a "
                                    "query's first tokens", "truncation_direction")  # fmt: skip
        self._check_batch_size(len(request.inputs), field)
        prompt = self._prompt(served, prompt_name)
        truncate = self.config.auto_truncate if request.truncate is None else request.truncate

        def encode():
            vectors, overflowed = query.encode([prompt + t for t in request.inputs.texts])
            if not truncate and any(overflowed):
                raise RequestError(413, f"{field}[{overflowed.index(True)}] is longer than the query route's "
                                        f"{query.tokenizer.max_length} tokens; shorten it, or send truncate=true (or start "
                                        "the server with --auto-truncate)", field)  # fmt: skip
            keep = served.model.max_active_dims
            return vectors if keep is None else vectors.prune(keep)

        vectors = await asyncio.get_running_loop().run_in_executor(self.executor, encode)
        return 200, orjson.dumps([[{"index": int(i), "value": float(v)} for i, v in zip(*row)] for row in vectors]), JSON

    async def tei_embed_all(self, body: dict, receive):
        """TEI's /embed_all: every input's token vectors. For a ColBERT model these are its late-interaction vectors
        (L2-normalized; documents without their skiplist tokens); `task` "query" encodes queries (with expansion)."""
        request: EmbedRequest = parse_tei_embed(body)
        task = parse_task(body) or "document"
        if request.dimensions is not None:
            raise RequestError(422, "dimensions does not apply to token vectors", "dimensions")
        served = self.served(request.model, LATE)
        if request.inputs.texts is None:
            raise RequestError(422, "a ColBERT model takes texts, not token ids (it adds its own markers)", request.inputs.field)
        if request.direction != "right":
            raise RequestError(422, "truncation_direction left does not apply to ColBERT token vectors: a ColBERT model keeps "
                                    "a text's first tokens, as PyLate does", "truncation_direction")  # fmt: skip
        self._check_batch_size(len(request.inputs), request.inputs.field)
        texts = request.inputs.texts
        prompt = self._prompt(served, request.prompt_name)
        if prompt:
            texts = [prompt + t for t in texts]
        field = request.inputs.field
        rows, _ = await self._token_vectors(served, texts, [task == "query"] * len(texts), request.truncate,
                                            lambda i: f"{field}[{i}]", field, receive)  # fmt: skip
        return 200, orjson.dumps(rows, option=orjson.OPT_SERIALIZE_NUMPY), JSON

    async def similarity(self, body: dict, receive):
        request = parse_similarity(body)
        served = self.served(request.model, EMBEDDING)
        inputs = Inputs("inputs.sentences", texts=[request.source, *request.sentences], lead="inputs.source_sentence")
        vectors, _ = await self._embed(served, inputs, request.prompt_name, request.truncate, request.direction, receive)
        vectors = self._finish(vectors, served.model.spec.normalize, self._dimensions(served, None))
        scores = served.model.similarity(vectors[:1], vectors[1:])[0]
        return 200, orjson.dumps(scores.astype(np.float32), option=orjson.OPT_SERIALIZE_NUMPY), JSON

    async def tokenize(self, body: dict, receive):
        request = parse_tokenize(body)
        served = self.served(request.model, EMBEDDING)
        self._check_batch_size(len(request.texts), "inputs")
        prompt = self._prompt(served, request.prompt_name)
        truncate = self.config.auto_truncate if request.truncate is None else request.truncate
        tokens = await asyncio.get_running_loop().run_in_executor(
            self.executor, served.tokenizer.tokenize, request.texts, prompt, request.add_special_tokens, truncate,
            request.direction,
        )  # fmt: skip
        return 200, orjson.dumps(tokens), JSON

    # --- reranking routes ------------------------------------------------------------------------------
    async def _rerank(self, request: RerankRequest, receive):
        """(served model, scores [n] with the model's activation unless raw, order best first, token count). A
        ColBERT model scores each pair by MaxSim of its query's and document's token vectors."""
        served = self.served(request.model, RERANKER, LATE)
        if served.kind == LATE:
            scores, tokens = await self._late_interaction_scores(served, request, receive)
            return served, scores, best_first(scores, request.top_n), tokens
        if served.model.num_labels != 1:
            raise RequestError(422, f"model {served.name!r} has {served.model.num_labels} labels; reranking needs one score per pair: use /predict", "model")
        logits, tokens = await self._score_pairs(served, request, receive)
        scores = served.model.scores(logits, raw_scores=request.raw_scores)
        return served, scores, best_first(scores, request.top_n), tokens

    async def tei_rerank(self, body: dict, receive):
        if "documents" in body and "texts" not in body:  # Cohere's and Jina's body on TEI's path
            return await self.cohere_rerank(body, receive)
        request = parse_tei_rerank(body)
        _, scores, order, _ = await self._rerank(request, receive)
        rows = [{"index": int(i), "score": float(scores[i]), **({"text": request.documents[i]} if request.return_documents else {})}
                for i in order]  # fmt: skip
        return 200, orjson.dumps(rows), JSON

    async def cohere_rerank(self, body: dict, receive):
        request = parse_cohere_rerank(body)
        served, scores, order, tokens = await self._rerank(request, receive)
        results = [{"index": int(i), "relevance_score": float(scores[i]),
                    **({"document": {"text": request.documents[i]}} if request.return_documents else {})} for i in order]  # fmt: skip
        payload = {"id": _request_id("rerank"), "model": served.name, "results": results,
                   "usage": {"total_tokens": tokens}, "meta": {"billed_units": {"search_units": 1}}}  # fmt: skip
        return 200, orjson.dumps(payload), JSON

    async def score(self, body: dict, receive):
        request = parse_score(body)
        served, scores, _, tokens = await self._rerank(request, receive)
        data = [{"index": i, "object": "score", "score": float(s)} for i, s in enumerate(scores)]
        payload = {"id": _request_id("score"), "object": "list", "created": int(time.time()), "model": served.name,
                   "data": data, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}  # fmt: skip
        return 200, orjson.dumps(payload), JSON

    async def predict(self, body: dict, receive):
        """TEI's /predict: every label with its score, best first (softmax over several labels, the model's activation
        for one, logits with raw_scores)."""
        request = parse_predict(body)
        served = self.served(request.model, RERANKER)
        reranker: Reranker = served.model
        single = next((i for i, item in enumerate(request.items) if len(item) == 1), None)
        if reranker.yes_no and single is not None:
            where = "inputs" if request.single else f"inputs[{single}]"
            raise RequestError(422, f"{where} is a single text, but model {served.name!r} scores (query, document) pairs: "
                                    "send [text, text] pairs", "inputs")  # fmt: skip
        self._check_batch_size(len(request.items), "inputs")
        truncate = self.config.auto_truncate if request.truncate is None else request.truncate

        def tokenize():
            try:
                encoded = reranker.encode_inputs(request.items, truncate=truncate)
            except QueryTooLong as e:
                raise RequestError(413, f"inputs[{e.index}] is longer than the model's {reranker.max_length} tokens; "
                                        "shorten it, or send truncate=true (or start the server with --auto-truncate)", "inputs") from None  # fmt: skip
            return encoded.ids, [0] * len(encoded.ids), encoded.token_types

        logits, _ = await self._run(served, tokenize, receive)
        if request.raw_scores:
            scores = logits
        else:
            scores = softmax(logits) if reranker.num_labels > 1 else reranker.scores(logits)[:, None]
        rows = [sorted(({"score": float(v), "label": label} for v, label in zip(row, reranker.labels)), key=lambda r: -r["score"])
                for row in scores]  # fmt: skip
        return 200, orjson.dumps(rows[0] if request.single else rows), JSON

    # --- service routes --------------------------------------------------------------------------------
    async def health(self):
        if not all(m.batcher.alive() for m in self.models.values()):
            raise RequestError(503, "a model worker is not running")
        return 200, b'{"status":"ok"}', JSON

    def _model_info(self, served: ServedModel) -> dict:
        m = served.model
        info = {
            "model_id": served.name,
            "model_path": str(m.spec.path),
            "model_type": m.spec.config.get("model_type"),
            "kind": {RERANKER: "reranker", SPARSE: "sparse", LATE: "late-interaction", EMBEDDING: "embedding"}[served.kind],
            "model_dtype": "int8" if m.int8 else str(m.dtype).removeprefix("torch."),
            "device": str(m.device),
        }
        if served.kind == SPARSE:
            return {**info, "dimension": m.dimension, "max_input_length": m.max_seq_length, "head": m.spec.head,
                    "pooling": m.spec.pooling, "activation": m.spec.activation, "max_active_dims": m.max_active_dims,
                    "inference_free_queries": m.query_is_inference_free, "prompts": m.spec.prompts}  # fmt: skip
        if served.kind == LATE:
            return {**info, "dimension": m.dimension, "max_input_length": m.max_seq_length, "query_length": m.query_length,
                    "document_length": m.document_length, "query_expansion": m.spec.do_query_expansion,
                    "attend_to_expansion_tokens": m.spec.attend_to_expansion_tokens, "similarity_fn_name": "MaxSim",
                    "prompts": m.spec.prompts}  # fmt: skip
        if served.is_reranker:
            return {**info, "max_input_length": m.max_length, "labels": m.labels, "activation": m.activation,
                    "scoring": "yes/no logits" if m.yes_no else "classifier"}  # fmt: skip
        return {**info, "dimension": m.dimension, "full_dimension": m.full_dimension, "max_input_length": m.max_seq_length,
                "pooling": list(m.spec.pooling.modes), "normalize": m.spec.normalize,
                "similarity_fn_name": m.similarity_fn_name, "prompts": m.spec.prompts}  # fmt: skip

    async def info(self):
        """TEI's fields for the first model, then every loaded model under "models"."""
        c = self.config
        models = [self._model_info(m) for m in self.models.values()]
        payload = {
            **models[0],
            "models": models,
            "limits": {
                "max_batch_tokens": c.max_batch_tokens, "max_batch_texts": c.max_batch_texts,
                "max_wait_ms": c.max_wait_ms, "max_concurrent_requests": c.max_concurrent_requests,
                "max_client_batch_size": c.max_client_batch_size, "max_request_bytes": c.max_request_bytes,
                "max_connections": c.max_connections, "header_timeout": c.header_timeout,
                "body_timeout": c.body_timeout, "auto_truncate": c.auto_truncate,
            },  # fmt: skip
            "auth": c.api_key is not None,
            "versions": {"fastembed_rt": __version__, "torch": torch.__version__,
                         "tokenizers": tokenizers.__version__, "python": platform.python_version()},  # fmt: skip
        }
        return 200, orjson.dumps(payload), JSON

    async def metrics_text(self):
        return 200, self.metrics.render().encode(), PROMETHEUS


def _a(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _request_id(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex}"
