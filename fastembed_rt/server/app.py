"""The HTTP API as a plain ASGI application: OpenAI's /v1/embeddings and TEI's routes over one Batcher.

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
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import orjson
import tokenizers
import torch

from .. import __version__
from ..engine import Embedder
from .batcher import Batcher, BatcherClosed, Job
from .config import ServerConfig
from .errors import RequestError
from .inputs import RequestTokenizer
from .metrics import Metrics
from .schemas import EmbedRequest, Inputs, json_type, parse_openai, parse_similarity, parse_tei_embed, parse_tokenize

log = logging.getLogger("fastembed_rt.server")

JSON = b"application/json"
PROMETHEUS = b"text/plain; version=0.0.4; charset=utf-8"


class ClientGone(Exception):
    """The client disconnected before its answer was ready: there is nobody to answer."""


class EmbeddingServer:
    def __init__(self, embedder: Embedder, config: ServerConfig, model_name: str, on_ready=None):
        self.embedder, self.config = embedder, config
        self.model_name = config.served_model_name or model_name
        self.on_ready = on_ready
        self.metrics = Metrics()
        self.tokenizer = RequestTokenizer(embedder)
        self.batcher = Batcher(
            embedder.embed_batch, self.metrics, max_batch_tokens=config.max_batch_tokens,
            max_batch_texts=config.max_batch_texts, max_wait_ms=config.max_wait_ms,
        )  # fmt: skip
        self.executor = ThreadPoolExecutor(config.tokenizer_workers, thread_name_prefix="fastembed-tokenize")
        self.in_flight = 0
        self.metrics.add_gauge("queue_depth", "Texts waiting for a batch.", lambda: self.batcher.queued_texts)
        self.metrics.add_gauge("requests_in_flight", "POST requests being served.", lambda: self.in_flight)
        self.routes = {
            "/v1/embeddings": ("POST", self.openai_embeddings),
            "/embed": ("POST", self.tei_embed),
            "/similarity": ("POST", self.similarity),
            "/tokenize": ("POST", self.tokenize),
            "/health": ("GET", self.health),
            "/info": ("GET", self.info),
            "/metrics": ("GET", self.metrics_text),
        }

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
        try:
            body = orjson.loads(b"".join(chunks))
        except orjson.JSONDecodeError as e:
            raise RequestError(422, f"request body is not valid JSON: {e}") from None
        if not isinstance(body, dict):
            raise RequestError(422, f"request body must be a JSON object, got {json_type(body)}")
        return body

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.batcher.start()
                await send({"type": "lifespan.startup.complete"})
                if self.on_ready is not None:
                    self.on_ready()
            elif message["type"] == "lifespan.shutdown":
                # Connections are drained by now: embed whatever is still queued, then stop the threads.
                await asyncio.get_running_loop().run_in_executor(None, self.batcher.close)
                self.executor.shutdown(wait=True)
                await send({"type": "lifespan.shutdown.complete"})
                return

    # --- embedding through the batcher -----------------------------------------------------------------
    async def _embed(self, inputs: Inputs, prompt_name: str | None, truncate: bool | None, direction: str, receive):
        """Vectors [n, full dimension] before normalization or truncation, in input order, and their token count."""
        self._check_batch_size(len(inputs), inputs.field)
        prompt = self._prompt(prompt_name)
        truncate = self.config.auto_truncate if truncate is None else truncate
        loop = asyncio.get_running_loop()
        disconnected = asyncio.ensure_future(receive())  # completes only when the client goes away
        try:
            self.batcher.announce()
            job = None
            try:
                start = time.perf_counter()
                if inputs.texts is not None:
                    work = (self.tokenizer.texts, inputs.texts, prompt, truncate, direction, inputs.field)
                else:
                    work = (self.tokenizer.token_ids, inputs.ids, truncate, direction, inputs.field)
                ids, skip = await loop.run_in_executor(self.executor, *work)
                self.metrics.tokenize_seconds.observe(time.perf_counter() - start)
                if disconnected.done():  # gone while its texts were tokenized: they never reach the queue
                    self.metrics.cancelled_texts.inc(len(ids))
                    raise ClientGone
                submitted = Job(ids, skip, self.embedder.full_dimension, loop)
                self.batcher.submit(submitted)
                job = submitted  # only now is the announcement consumed
            except BatcherClosed:
                raise RequestError(503, "the server is shutting down") from None
            finally:
                if job is None:
                    self.batcher.withdraw()
            await asyncio.wait((job.future, disconnected), return_when=asyncio.FIRST_COMPLETED)
            if not job.future.done():
                job.cancel()
                job.future.cancel()
                raise ClientGone
            vectors = job.future.result()
            if job.queue_seconds is not None:
                self.metrics.queue_seconds.observe(job.queue_seconds)
            return vectors, job.num_tokens
        finally:
            disconnected.cancel()

    def _check_batch_size(self, count: int, field: str) -> None:
        limit = self.config.max_client_batch_size
        if count > limit:
            raise RequestError(413, f"{field} holds {count} inputs, more than the limit of {limit} (--max-client-batch-size)", field)

    def _prompt(self, prompt_name: str | None) -> str:
        """The prompt text a request asks for by name (None: the model's default prompt, if any)."""
        try:
            return self.embedder.resolve_prompt(None, prompt_name)
        except KeyError as e:
            raise RequestError(422, e.args[0], "prompt_name") from None

    def _dimensions(self, dimensions: int | None) -> int | None:
        """The Matryoshka truncation a request asks for (None: the model's own), checked before any work."""
        try:
            return self.embedder.resolve_truncate_dim(dimensions)
        except ValueError:
            raise RequestError(422, f"dimensions must be in [1, {self.embedder.full_dimension}], got {dimensions}", "dimensions") from None

    @staticmethod
    def _finish(vectors: np.ndarray, normalize: bool, dimensions: int | None) -> np.ndarray:
        """Matryoshka truncation, then L2 normalization, as Embedder.encode does them."""
        if dimensions is not None:
            vectors = vectors[:, :dimensions]
        if normalize:
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    # --- routes ----------------------------------------------------------------------------------------
    async def openai_embeddings(self, body: dict, receive):
        request = parse_openai(body)
        dimensions = self._dimensions(request.dimensions)
        vectors, tokens = await self._embed(request.inputs, None, None, "right", receive)
        vectors = self._finish(vectors, self.embedder.spec.normalize, dimensions)
        if request.encoding_format == "base64":
            rows = [base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") for v in vectors]
        else:
            rows = list(vectors)
        data = [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)]
        payload = {"object": "list", "data": data, "model": self.model_name,
                   "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}  # fmt: skip
        return 200, orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), JSON

    async def tei_embed(self, body: dict, receive):
        request: EmbedRequest = parse_tei_embed(body)
        dimensions = self._dimensions(request.dimensions)
        vectors, _ = await self._embed(request.inputs, request.prompt_name, request.truncate, request.direction, receive)
        vectors = self._finish(vectors, request.normalize, dimensions)
        return 200, orjson.dumps(vectors, option=orjson.OPT_SERIALIZE_NUMPY), JSON

    async def similarity(self, body: dict, receive):
        request = parse_similarity(body)
        inputs = Inputs("inputs.sentences", texts=[request.source, *request.sentences])
        vectors, _ = await self._embed(inputs, request.prompt_name, request.truncate, request.direction, receive)
        vectors = self._finish(vectors, self.embedder.spec.normalize, self._dimensions(None))
        scores = self.embedder.similarity(vectors[:1], vectors[1:])[0]
        return 200, orjson.dumps(scores.astype(np.float32), option=orjson.OPT_SERIALIZE_NUMPY), JSON

    async def tokenize(self, body: dict, receive):
        request = parse_tokenize(body)
        self._check_batch_size(len(request.texts), "inputs")
        prompt = self._prompt(request.prompt_name)
        truncate = self.config.auto_truncate if request.truncate is None else request.truncate
        tokens = await asyncio.get_running_loop().run_in_executor(
            self.executor, self.tokenizer.tokenize, request.texts, prompt, request.add_special_tokens, truncate,
            request.direction,
        )  # fmt: skip
        return 200, orjson.dumps(tokens), JSON

    async def health(self):
        if not self.batcher.alive():
            raise RequestError(503, "the model worker is not running")
        return 200, b'{"status":"ok"}', JSON

    async def info(self):
        e, c = self.embedder, self.config
        payload = {
            "model_id": self.model_name,
            "model_path": str(e.spec.path),
            "model_type": e.spec.config.get("model_type"),
            "model_dtype": "int8" if e.int8 else str(e.dtype).removeprefix("torch."),
            "device": str(e.device),
            "dimension": e.dimension,
            "full_dimension": e.full_dimension,
            "max_input_length": e.max_seq_length,
            "pooling": list(e.spec.pooling.modes),
            "normalize": e.spec.normalize,
            "similarity_fn_name": e.similarity_fn_name,
            "prompts": e.spec.prompts,
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
